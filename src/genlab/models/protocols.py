"""What callbacks, evaluation tasks and CLIs may ask of a model (duck-typed, checked with
`isinstance(model, CanSample)` etc.). Images are always floats in [0, 1], (B, C, H, W)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class CanReconstruct(Protocol):
    """Autoencoders: x -> x_hat."""

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class CanEncode(Protocol):
    """Models with an encoder: x -> a deterministic code z (an AE's code, a VAE's posterior
    mean). `y` are labels for conditional models, else ignored."""

    latent_dim: int

    def encode_latent(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class CanSample(Protocol):
    """Generative models: draw z from the prior and decode it.

    `sample_latent(n, generator=, temperature=)` returns prior draws (n, latent_dim) scaled by
    `temperature`; `decode(z, y=None)` maps codes to images; `sample(n, ...)` does both.
    """

    latent_dim: int

    def sample_latent(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor: ...
