"""Generative adversarial networks from a prior: the original GAN, DCGAN and class-conditional
GANs, on the one adversarial loop (genlab.models.adversarial), with the nets, the game and the
stabilisers from config.

G maps z ~ N(0, I) (and a class, when conditional) to an image in [-1, 1] (Tanh); D scores
images (and the class). Data arrive in [0, 1] and are mapped to G's range; `decode` / `sample`
return [0, 1] images like every genlab model (`CanSample`). Each D step draws fresh z from the
iteration's noise (with one D step, its fakes are reused by the G step).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genlab.models.adversarial import COLLAPSE_HINTS, AdversarialModule, Critic, frozen
from genlab.models.protocols import SampleFromPrior
from genlab.utils.errors import GenlabError

# kept importable from here: the loop's pieces were written for the GAN first
__all__ = ["COLLAPSE_HINTS", "GAN", "frozen"]


class GAN(SampleFromPrior, AdversarialModule):
    """Generator G: z -> image in [-1, 1]; discriminator D: image -> score (B,).

    Options beyond the loop's (genlab.models.adversarial.AdversarialModule: `loss`,
    `n_critic`, `label_smoothing`, `gp_weight`, `drift_weight`, `penalties`, `ema_decay`,
    clipping, schedulers, `seed`): `latent_dim` (default: G's), `num_classes` > 0 makes G and D
    conditional on the class label (the nets must be built with the same `num_classes`).

    Logs the loop's scalars, and under `val/` and `test/` the same losses and D outputs on
    fakes from the sampling G with seeded noise.
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        latent_dim: int | None = None,
        num_classes: int = 0,
        **loop: Any,
    ) -> None:
        for name, net in (("generator", generator), ("discriminator", discriminator)):
            if getattr(net, "num_classes", 0) != num_classes:
                raise GenlabError(
                    f"model.num_classes={num_classes} but model.{name} was built with "
                    f"num_classes={getattr(net, 'num_classes', 0)}; set the nets' num_classes "
                    "to ${model.num_classes}."
                )
        super().__init__(generator=generator, discriminator=discriminator, **loop)
        self.latent_dim = int(latent_dim if latent_dim is not None else generator.latent_dim)
        self.num_classes = num_classes

    # --- sampling (CanSample) -------------------------------------------------------------
    def sample_latent(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        truncation: float | None = None,
    ) -> torch.Tensor:
        """z ~ N(0, I) scaled by `temperature`: (n, latent_dim).

        `truncation` = psi > 0: the truncation trick of BigGAN (Brock et al. 2019), each
        component drawn from N(0, 1) truncated to [-psi, psi] -- what resampling every
        |z_i| > psi until none is left gives, drawn here in one pass by the inverse CDF (so
        the noise used does not depend on how many draws were rejected). StyleGAN's
        truncation pulls w towards the mean of its mapping network's outputs; genlab's GANs
        have no mapping network, and pulling z towards its mean (0) is scaling it, which
        `temperature` already does. Smaller psi: more typical, less varied samples."""
        where = generator.device if generator is not None else self.device
        if truncation is None:
            z = torch.randn(n, self.latent_dim, generator=generator, device=where)
            return z.to(self.device) * temperature
        if not truncation > 0:
            raise GenlabError(f"truncation={truncation} must be > 0 (or null: no truncation).")
        u = torch.rand(n, self.latent_dim, generator=generator, device=where, dtype=torch.float64)
        # uniform between Phi(-psi) and Phi(psi), through Phi^-1 (in float64: Phi(psi) is not
        # 1 in float64 up to psi ~ 8; beyond, the truncated normal is the normal)
        edge = torch.special.ndtr(torch.tensor(-float(truncation), dtype=torch.float64))
        z = torch.special.ndtri(edge + u * (1.0 - 2.0 * edge))
        z = z.clamp(-float(truncation), float(truncation)).float()
        return z.to(self.device) * temperature

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        y: torch.Tensor | None = None,
        truncation: float | None = None,
    ) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1] from prior draws (`sample_latent`: `temperature`,
        `truncation`); a conditional GAN without `y` draws its `default_labels`."""
        z = self.sample_latent(
            n, generator=generator, temperature=temperature, truncation=truncation
        )
        return self.decode(z, y)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (n, latent_dim) -> images (n, C, H, W) in [0, 1] from the sampling G; a
        conditional G without `y` draws `default_labels`."""
        if y is None:
            y = self.default_labels(len(z))
        x = self._to_data_size(self.sampling_generator(z.to(self.device), self._labels(y)))
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(z, y)

    def invert(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        steps: int = 200,
        lr: float = 0.05,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A code z with decode(z) close to the images x (B, C, H, W) in [0, 1]: Adam on z from
        a prior draw, minimising the pixel MSE (GAN inversion, Zhu et al. 2016). The GAN's
        stand-in for an encoder, e.g. to average the codes of real exemplars of an attribute
        for latent arithmetic. Deliberately not named `encode_latent`: it costs `steps`
        forward/backward passes, so callers opt in. Returns (B, latent_dim)."""
        net = self.sampling_generator
        target = x.to(self.device).float() * 2.0 - 1.0
        labels = self._labels(y if y is not None else self.default_labels(len(x)))
        with torch.enable_grad(), frozen(net):
            z = self.sample_latent(len(x), generator=generator).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                x_hat = self._to_data_size(net(z, labels)).float()
                loss = (x_hat - target).pow(2).flatten(1).mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return z.detach()

    # --- helpers --------------------------------------------------------------------------
    def _labels(self, y: Any) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        if not isinstance(y, torch.Tensor) or y.ndim != 1:
            raise GenlabError(
                f"model.num_classes={self.num_classes} makes the GAN class-conditional, which "
                "needs one integer class label per image; this data gives "
                f"{type(y).__name__}{tuple(y.shape) if isinstance(y, torch.Tensor) else ''}. "
                "Use labelled data (e.g. data=mnist_5k) or an unconditional model (model=gan)."
            )
        return y.to(self.device).long()

    def _to_data_size(self, x: torch.Tensor) -> torch.Tensor:
        """G's output -> images at the data's size, still in [-1, 1]: the identity here; a
        progressive G at a coarse stage is upsampled (models/progressive_gan.py)."""
        return x

    # --- the family's part of the loop -----------------------------------------------------
    def prepare_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = batch
        return x * 2.0 - 1.0, self._labels(y)  # (b, c, h, w) in [-1, 1]

    def make_fake(self, cond: Any, n: int, noise: torch.Generator) -> torch.Tensor:
        return self.generator(self.sample_latent(n, generator=noise), cond)

    def critic(self, cond: Any) -> Critic:
        return lambda x: self.discriminator(x, cond)  # (b,)

    def eval_scalars(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        real, y = self.prepare_batch(batch)
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 7_919 + batch_idx)
        fake = self.sampling_generator(self.sample_latent(len(real), generator=gen), y)
        return self.objective.evaluate(
            self.discriminator(real, y).float(), self.discriminator(fake, y).float()
        )
