"""The capability contracts: what callbacks, evaluation tasks and CLIs may ask of a model.

Callers test a capability with `isinstance(model, CanSample)` (the protocols are
runtime-checkable) and then call it; they never branch on other model attributes. Adding a
model family therefore needs no edit in callbacks/, evaluation/ or the CLIs: implement the
methods below and every tool that needs them picks the model up (docs/architecture.md).

Conventions shared by every protocol:

- a sample is what the data's `modality` says (genlab.data.modality): images are floats in
  [0, 1], shape (B, C, H, W); clips (B, T, C, H, W) in [0, 1]; waveforms (B, C, L) in
  [-1, 1]; voxel grids (B, 1, D, H, W) in [0, 1]. Callers never assume images: they write
  what a model returns with the modality's writer (genlab.writers);
- `y` is the condition, as the data's `condition` says: class indices (B,), attribute vectors
  (B, K), token sequences (B, L), images or clips. Every capability method takes `y=None`
  whether or not the model uses it. Callers pass the data's conditions whenever they have
  them (`datamodule.grid_conditions(n)` for grids); unconditional models ignore `y`; a
  class-conditional model given no `y` decodes and samples with `default_labels(n)`, and
  raises a GenlabError where labels cannot be made up (encoding or scoring real images, or
  a condition such as a caption that only the data can give).

Every genlab model is a `genlab.models.genlab_module.GenlabModule`, which adds two answers to
these:
`num_classes` (how many classes or attributes the model is conditioned on; 0 = none) and
`default_labels(n)` (the labels used when a conditional model gets `y=None`: classes
0, 1, ..., K-1, 0, 1, ... round-robin; None for unconditional models).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from genlab.nets.progressive_nets import Progress


@runtime_checkable
class CanEncode(Protocol):
    """Models with an encoder: images -> a deterministic code (an AE's code, a VAE's
    posterior mean, a WAE's code)."""

    latent_dim: int

    def encode_latent(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) -> codes (B, latent_dim)."""
        ...


@runtime_checkable
class CanDecode(Protocol):
    """Models with a decoder or generator: codes -> images."""

    latent_dim: int

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, latent_dim) -> images (B, C, H, W) in [0, 1]."""
        ...


@runtime_checkable
class CanSample(Protocol):
    """Generative models: draw samples (as the data's modality says), conditioned on `y`
    where the model is (a class-conditional model without `y` draws its default labels)."""

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """n samples (n, ...); for latent models `decode(sample_latent(n, ...), y)`."""
        ...


@runtime_checkable
class HasPrior(CanDecode, Protocol):
    """Latent-variable models with a prior to draw codes from (VAEs, GANs): codes can be
    drawn, walked between and decoded (prior interpolations, latent arithmetic)."""

    def sample_latent(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Prior draws scaled by `temperature`: (n, latent_dim), on the model's device."""
        ...


@runtime_checkable
class CanReconstruct(Protocol):
    """Autoencoders: images -> their reconstructions."""

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) -> reconstructions (B, C, H, W) in [0, 1]."""
        ...


@runtime_checkable
class HasLikelihood(Protocol):
    """Models that define p(x) and can score it (the density and ood tasks).

    `likelihood` names the observation model; under `"bernoulli"`, log p(x) is a normalized
    density only for binary images (the density task says so in its result).
    """

    likelihood: str

    def elbo_terms(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One-sample negative ELBO terms per image, nats: at least `nelbo` (B,)."""
        ...

    def log_importance_weights(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        k: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for k draws z_i ~ q(z | x): (k, B), nats."""
        ...


@runtime_checkable
class CanTranslate(Protocol):
    """Image-to-image models (pix2pix, super-resolution, inpainting): a source image -> an
    image. The model is conditioned on the source image; `y` is a class condition on top of
    it (None for every translation model genlab has).

    `source_shape` is the (C, H, W) of the sources the model was trained on (a masked source
    carries its hole as the last channel; genlab.data.pairing says how sources are made).
    """

    source_shape: tuple[int, int, int]

    def translate(self, source: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sources (B, C_s, H_s, W_s) in [0, 1] -> outputs (B, C, H, W) in [0, 1]."""
        ...


@runtime_checkable
class CanGenerate(Protocol):
    """Models that generate samples from a condition the data gives (a source image, the
    context frames of a clip, a caption, a 2.5D sketch): `y` -> samples, several per
    condition for stochastic models."""

    def generate(
        self, y: torch.Tensor, *, generator: torch.Generator | None = None, samples: int = 1
    ) -> torch.Tensor:
        """Conditions (B, ...) -> samples (B, ...) as the data's modality says; with
        `samples` > 1, (samples, B, ...): several draws per condition."""
        ...


@runtime_checkable
class CanReconstruct3D(Protocol):
    """Single-view 3D reconstruction (ShapeHD's completion): one view of an object, as the
    data's image condition says (a 2.5D sketch, depth + silhouette, or an RGB render) -> the
    occupancy of its voxel grid (genlab.reconstruct3d)."""

    def reconstruct3d(self, views: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Views (B, C, H, W) in [0, 1] -> occupancy (B, 1, N, N, N) in [0, 1]."""
        ...


@runtime_checkable
class Grows(Protocol):
    """Models trained on a resolution schedule (the progressive GAN): the stage
    (genlab.nets.progressive_nets.Progress) of an iteration, for callbacks."""

    def progress_at_step(self, step: int) -> Progress: ...


class SampleFromPrior:
    """Mixin: `sample` as `decode(sample_latent(...), y)`, for models that sample by decoding
    prior draws (the VAE and WAE, GANs). They implement `sample_latent` and `decode`."""

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """n images decoded from prior draws scaled by `temperature`; a conditional model
        without `y` decodes its `default_labels`."""
        z = self.sample_latent(n, generator=generator, temperature=temperature)  # type: ignore[attr-defined]
        return self.decode(z, y)  # type: ignore[attr-defined]
