"""WaveGAN (Donahue et al. 2019) as a genlab model: the GAN on the one adversarial loop
(genlab.models.adversarial), with WaveGAN's one-dimensional nets (genlab.nets.wavegan), on
waveforms.

What differs from the image GAN (genlab.models.gan) is the data's units and D's phase
shuffle; the loop is the same (D steps, D frozen in the G step, EMA, seeded noise per
iteration, exact resume, health checks):

- waveforms arrive in [-1, 1], G's range (tanh), so they go to D as they are, and `decode` /
  `sample` give (n, 1, length) waveforms in [-1, 1] (the waveform modality), not [0, 1] images;
- phase shuffle (D shifts each clip's activations by up to ±radius samples after each but its
  last convolution) draws its shifts from the iteration's seeded noise during training, so a
  resumed run shuffles as the uninterrupted one did; D scores without shuffling outside
  training (eval mode);
- conditioning on the digit (`num_classes` > 0): G takes a label embedding beside z, D adds a
  projection term (Miyato & Koyama 2018), the loop's class-condition contract (y (B,) digits;
  a conditional model without y speaks the digits 0, 1, ..., 9, 0, ...).

The paper trains with WGAN-GP (`loss=wgan_gp`, `n_critic=5`, Adam 1e-4, betas (0.5, 0.9));
any objective of the loop works by config.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genlab.models.adversarial import Critic
from genlab.models.gan import GAN
from genlab.utils.errors import GenlabError


class WaveGAN(GAN):
    """Generator G: z (and the digit) -> waveform (B, 1, length) in [-1, 1]; discriminator D:
    waveform (and the digit) -> score (B,).

    Options beyond the GAN's (genlab.models.gan.GAN: `latent_dim`, `num_classes` and the
    loop's `loss`, `n_critic`, `gp_weight`, `ema_decay`, clipping, schedulers, `seed`):
    `sample_rate` and `length`, the data's (G must be built for `length` samples).
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        sample_rate: int | None = 16000,
        length: int | None = 16384,
        **gan: Any,
    ) -> None:
        if sample_rate is None or length is None:
            raise GenlabError(
                "model=wavegan generates waveforms, and this data config has no sample_rate "
                "and length (it is not audio): add data=spoken_digits (synthesised offline), "
                "data=fsdd or data=sc09, or use experiment=wavegan_digits."
            )
        made = getattr(generator, "length", None)
        if made != length:
            raise GenlabError(
                f"model.generator makes clips of {made} samples but the data's clips have "
                f"{length} (data.length): set model.generator.length and "
                "model.discriminator.length to ${data.length}."
            )
        super().__init__(generator=generator, discriminator=discriminator, **gan)
        self.sample_rate, self.length = int(sample_rate), int(length)

    # --- waveforms in, waveforms out -----------------------------------------------------------
    def prepare_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = batch  # (b, 1, l) in [-1, 1]: G's range already
        return x, self._labels(y)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (n, latent_dim) -> waveforms (n, 1, length) in [-1, 1] from the sampling G; a
        conditional G without `y` speaks `default_labels`."""
        if y is None:
            y = self.default_labels(len(z))
        x = self.sampling_generator(z.to(self.device), self._labels(y))
        return x.float().clamp(-1.0, 1.0)

    def invert(self, x: torch.Tensor, y: torch.Tensor | None = None, **options: Any):
        """A code z with decode(z) close to the waveforms x (B, 1, L) in [-1, 1] (the GAN's
        inversion, GAN.invert, on the waveform's units)."""
        return super().invert((x + 1.0) / 2.0, y, **options)  # GAN.invert maps [0, 1] back

    # --- D as training sees it -----------------------------------------------------------------
    def training_critic(self, cond: Any, noise: torch.Generator) -> Critic:
        """D with phase shuffle drawn from the iteration's noise (module doc)."""

        def critic(x: torch.Tensor) -> torch.Tensor:
            return self.discriminator(x, cond, generator=noise)

        if self.augment is None:
            return critic
        return lambda x: critic(self.augment(x, generator=noise))
