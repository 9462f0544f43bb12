"""What the VAE and the WAE share: encoder and decoder nets whose codes follow the prior
N(0, I), so that decoding prior draws generates images; optional label conditioning (CVAE).
The two models are siblings on this base and differ only in their training loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from genlab.models.genlab_module import OptimizerFactory, SchedulerFactory, StepModule
from genlab.models.protocols import SampleFromPrior
from genlab.nets.conditional import ConditionalDecoder, ConditionalEncoder
from genlab.utils.errors import GenlabError


def _build(net: Any, **resize: int) -> nn.Module:
    """A built net, or a partial (`_partial_: true` config) called with `resize` overrides."""
    if isinstance(net, nn.Module):
        return net
    keywords = getattr(net, "keywords", {})
    return net(**{k: keywords.get(k, 0) + v for k, v in resize.items()})


class GenerativeAutoEncoder(SampleFromPrior, StepModule):
    """Encoder -> code z (latent_dim) -> decoder -> logits (B, C, H, W); z ~ N(0, I) generates.

    - `encoder` outputs `codes_per_latent * latent_dim` numbers per image (the VAE: mean and
      log-variance; the WAE: the code itself); `decoder` maps z to logits.
    - `conditional=true` (CVAE): encoder and decoder also see the label (one-hot, or the
      attribute vector), `num_classes` of them; give the nets as `_partial_` configs and they
      are built with one extra input channel (a learned label plane) / num_classes extra z dims.

    Subclasses implement `encode_latent` and the training `step`; images are
    `image_from_logits(decoder output)`, sigmoid unless overridden.
    """

    codes_per_latent = 1

    def __init__(
        self,
        *,
        encoder: nn.Module | Callable[..., nn.Module],
        decoder: nn.Module | Callable[..., nn.Module],
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        latent_dim: int,
        conditional: bool = False,
        num_classes: int | None = None,
        monitor: str,
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        if conditional:
            if not num_classes:
                raise GenlabError(
                    "model=cvae needs the number of classes (or attributes) to condition on, "
                    "but model.num_classes is empty (data.num_classes is null for this data). "
                    "Set model.num_classes, e.g. model.num_classes=40 for CelebA attributes."
                )
            if isinstance(encoder, nn.Module) or isinstance(decoder, nn.Module):
                raise GenlabError(
                    "a conditional VAE builds its nets with the label inputs added: give the "
                    "encoder and decoder as `_partial_: true` configs (as model/cvae.yaml does)."
                )
            image_size = int(encoder.keywords["image_size"])  # type: ignore[union-attr]
            self.encoder: nn.Module = ConditionalEncoder(
                _build(encoder, channels=1), num_classes, image_size
            )
            self.decoder: nn.Module = ConditionalDecoder(
                _build(decoder, in_dim=num_classes), num_classes
            )
        else:
            self.encoder, self.decoder = _build(encoder), _build(decoder)
        # the conditioning contract (GenlabModule): 0 unless the nets see labels
        self.num_classes = int(num_classes) if conditional else 0
        self.check_encoder_size()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.monitor, self.monitor_mode = monitor, monitor_mode

    def check_encoder_size(self) -> None:
        out_dim = getattr(self.encoder, "out_dim", None)
        want = self.codes_per_latent * self.latent_dim
        if out_dim is not None and out_dim != want:
            raise GenlabError(
                f"the encoder outputs {out_dim} numbers per image but this model needs {want} "
                f"({self.codes_per_latent} x model.latent_dim={self.latent_dim}). Leave "
                "model.encoder.out_dim at its default in the model config."
            )

    # --- nets -----------------------------------------------------------------------------
    def encoder_output(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The encoder's numbers per image, (B, codes_per_latent * latent_dim)."""
        if self.num_classes:
            if y is None:
                raise GenlabError(
                    "this conditional model needs the labels y of the images it encodes "
                    "(pass y=...)."
                )
            return self.encoder(x, y)
        return self.encoder(x)

    def decoder_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (..., B, d) -> decoder outputs (..., B, C, H, W); leading sample dims allowed."""
        lead = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])
        if self.num_classes:
            if y is None:
                raise GenlabError("this conditional model needs labels y to decode (pass y=...).")
            reps = flat.shape[0] // y.shape[0]
            out = self.decoder(flat, y.repeat(reps, *([1] * (y.ndim - 1))))
        else:
            out = self.decoder(flat)
        return out.reshape(*lead, *out.shape[1:])

    def image_from_logits(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder outputs -> images in [0, 1]."""
        return torch.sigmoid(out)

    # --- capabilities (genlab.models.protocols) -------------------------------------------
    def encode_latent(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, d) -> images in [0, 1]; a conditional model without `y` decodes
        `default_labels`."""
        y = y if y is not None else self.default_labels(len(z))
        return self.image_from_logits(self.decoder_logits(z, y))

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode_latent(x, y), y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.reconstruct(x, y)

    def sample_latent(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Prior draws z ~ N(0, temperature^2 I): (n, latent_dim)."""
        return temperature * torch.randn(
            n, self.latent_dim, generator=generator, device=self.device
        )
