"""The conditional adversarial autoencoder (CAAE, Zhang, Song & Qi 2017, "Age Progression /
Regression by Conditional Adversarial Autoencoder"), on the one adversarial loop.

An encoder E maps an image to a code z in [-1, 1]^d (Tanh); a generator G maps (z, condition)
back to an image; two discriminators judge: D_z tells E's codes from draws of the uniform
prior on [-1, 1]^d (so the codes fill the prior and carry little of the condition), and
D_img tells real (image, condition) pairs from (G(E(x), condition), condition). Face aging is
then: encode a face, decode it with another age group. Any attribute vector works as the
condition (the digits' thickness, CelebA's attributes).

Why this fits the one loop, which has one G and one D: E and G are one network pair updated
together by one loss (the loop's "generator", an `nn.ModuleDict` {encoder, decoder}, with one
optimizer and one EMA copy), and D_z and D_img share no parameters, so one optimizer on both
with the sum of their losses takes exactly the steps two optimizers with the same settings
would (Adam is per parameter). The family supplies its pieces:

- `make_fake`: G(E(x), y) for the batch's own images and conditions (one pass, reused by the
  D steps: `fresh_fakes = False`); the codes E(x) are kept for the two hooks below;
- `discriminator_loss`: the objective's D loss on images, plus the same game on codes (prior
  draws from the iteration's noise = real, E(x) = fake);
- `extra_generator_terms`: the reconstruction (`recon_weight`, L1 or L2 in the nets' units,
  per pixel), E's adversarial term through D_z (`latent_adv_weight`), total variation
  (`tv_weight`); the loop adds G's image term (`adv_weight`) through D_img.

D is frozen during the G step, noise comes from the iteration's seeded generator (so a resume
is exact), and the host never waits between logging steps: all as every adversarial family.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genlab.models.adversarial import AdversarialModule, Critic
from genlab.utils.errors import GenlabError

RECON = ("l1", "l2")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (B, C, H, W) -> scalar."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


class CAAE(AdversarialModule):
    """Encoder (image -> z in [-1, 1]^latent_dim), generator ((z, y) -> image in [-1, 1]),
    image discriminator ((image, y) -> score) and code discriminator (z -> score).

    Options beyond the loop's (genlab.models.adversarial: `loss`, `n_critic`, `adv_weight`
    (G's term through D_img), `ema_decay`, clipping, schedulers, `seed`): `num_classes` (the
    condition's size: attributes, or classes one-hot), `latent_dim`, `recon_weight` and
    `recon_loss` (`l1` | `l2`), `latent_adv_weight` (E's term through D_z), `tv_weight`.
    `adv_weight=0` with `latent_adv_weight=0` is the conditional autoencoder without
    discriminators (the ablation); D_z cannot train without D_img (the loop runs D steps only
    when adv_weight > 0).

    Capabilities: `encode_latent` (E; the condition is not an input of E), `decode(z, y)`,
    `reconstruct(x, y)` (needs the images' conditions), `sample_latent` (the uniform prior) and
    `sample`. Logs the loop's scalars, `train/dz_real`, `train/dz_fake` (D_z's outputs), and
    under val/test `recon_l1` ([0, 1] units) and D_img's view of reconstructions.
    """

    fresh_fakes = False  # one E/G pass per iteration, reused by every D step

    def __init__(
        self,
        *,
        encoder: nn.Module,
        generator: nn.Module,
        discriminator: nn.Module,
        latent_discriminator: nn.Module,
        num_classes: int,
        latent_dim: int | None = None,
        recon_weight: float = 1.0,
        recon_loss: str = "l1",
        latent_adv_weight: float = 1e-2,
        tv_weight: float = 0.0,
        **loop: Any,
    ) -> None:
        if num_classes < 1:
            raise GenlabError(
                f"model.num_classes={num_classes}: the CAAE is conditional; set it to the size of "
                "the data's condition (data.num_classes: the attributes, e.g. 1 for "
                "data.attributes=[thickness])."
            )
        for name, net in (("generator", generator), ("discriminator", discriminator)):
            if getattr(net, "num_classes", num_classes) != num_classes:
                raise GenlabError(
                    f"model.num_classes={num_classes} but model.{name} was built with "
                    f"num_classes={net.num_classes}; set it to ${{model.num_classes}}."
                )
        if recon_loss not in RECON:
            raise GenlabError(f"model.recon_loss={recon_loss!r}: use one of {RECON}.")
        for option, value in (
            ("recon_weight", recon_weight),
            ("latent_adv_weight", latent_adv_weight),
            ("tv_weight", tv_weight),
        ):
            if value < 0:
                raise GenlabError(f"model.{option}={value} must be >= 0.")
        if latent_adv_weight > 0 and loop.get("adv_weight", 1.0) == 0:
            raise GenlabError(
                f"model.latent_adv_weight={latent_adv_weight} with model.adv_weight=0: the loop "
                "trains the discriminators only when adv_weight > 0, so D_z would never learn. "
                "Set model.latent_adv_weight=0 too (a conditional autoencoder), or adv_weight > 0."
            )
        nets = nn.ModuleDict({"encoder": encoder, "decoder": generator})
        critics = nn.ModuleDict({"image": discriminator, "latent": latent_discriminator})
        super().__init__(generator=nets, discriminator=critics, **loop)
        self.num_classes = int(num_classes)
        self.latent_dim = int(
            latent_dim if latent_dim is not None else getattr(encoder, "out_dim", 0)
        )
        self.recon_weight, self.recon_loss = float(recon_weight), recon_loss
        self.latent_adv_weight, self.tv_weight = float(latent_adv_weight), float(tv_weight)
        self._codes: torch.Tensor | None = None  # E(x) of the iteration's batch
        self._dz_scores: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- capabilities -----------------------------------------------------------------------
    def sample_latent(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Draws of the uniform prior on [-1, 1]^latent_dim scaled by `temperature`."""
        where = generator.device if generator is not None else self.device
        z = torch.rand(n, self.latent_dim, generator=generator, device=where) * 2.0 - 1.0
        return z.to(self.device) * temperature

    def encode_latent(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] -> codes (B, latent_dim) from the sampling encoder;
        the condition is not an input of E (`y` is ignored)."""
        return self.sampling_generator["encoder"](x.to(self.device).float() * 2.0 - 1.0)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, latent_dim) and conditions -> images (B, C, H, W) in [0, 1]; without `y`
        the model's `default_labels` (each attribute in turn set to 1)."""
        if y is None:
            y = self.default_labels(len(z))
        x = self.sampling_generator["decoder"](z.to(self.device), self._labels(y))
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images decoded from their codes with their own conditions `y` (required)."""
        if y is None:
            raise GenlabError(
                "the CAAE reconstructs an image from its code and its condition: pass y, the "
                "images' attribute vectors (B, num_classes) or classes (B,)."
            )
        return self.decode(self.encode_latent(x), y)

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """n images decoded from uniform prior draws with the conditions `y`."""
        return self.decode(self.sample_latent(n, generator=generator, temperature=temperature), y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.reconstruct(x, y)

    def _labels(self, y: Any) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or y.ndim not in (1, 2):
            raise GenlabError(
                "the CAAE is conditioned on an attribute vector (B, num_classes) or a class "
                f"(B,) per image; this data gives {type(y).__name__}"
                f"{tuple(y.shape) if isinstance(y, torch.Tensor) else ''}. Use data with "
                "attributes (data=morpho_digits, utkface, celeba with data.num_classes=40)."
            )
        y = y.to(self.device)
        return y.float() if y.ndim == 2 or torch.is_floating_point(y) else y.long()

    # --- the family's part of the loop ------------------------------------------------------
    def prepare_batch(self, batch: Any) -> tuple[torch.Tensor, Any]:
        x, y = batch
        real = x * 2.0 - 1.0  # (b, c, h, w) in [-1, 1]
        return real, (real, self._labels(y))

    def make_fake(self, cond: Any, n: int, noise: torch.Generator) -> torch.Tensor:
        real, labels = cond
        self._codes = self.generator["encoder"](real)  # (b, d) in [-1, 1]
        return self.generator["decoder"](self._codes, labels)

    def critic(self, cond: Any) -> Critic:
        _, labels = cond
        return lambda x: self.discriminator["image"](x, labels)  # (b,)

    def latent_critic(self) -> Critic:
        return lambda z: self.discriminator["latent"](z)  # (b,)

    def discriminator_loss(
        self,
        critic: Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        cond: Any,
        noise: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D_img's loss (the objective's, with its penalties) plus D_z's: prior draws real,
        the batch's codes fake."""
        loss, logs = self.objective.discriminator_loss(critic, real, fake, noise)
        codes = self._codes.detach()
        prior = torch.rand(codes.shape, generator=noise, device=codes.device) * 2.0 - 1.0
        loss_z, logs_z = self.objective.discriminator_loss(
            self.latent_critic(), prior.to(codes.dtype), codes, noise
        )
        self._dz_scores = (logs_z["real_scores"].detach(), logs_z["fake_scores"].detach())
        return loss + loss_z, logs

    def extra_generator_terms(
        self, fake: torch.Tensor, real: torch.Tensor, cond: Any
    ) -> dict[str, tuple[float, torch.Tensor]]:
        diff = fake.float() - real.float()
        recon = diff.abs().mean() if self.recon_loss == "l1" else diff.pow(2).mean()
        terms = {"recon": (self.recon_weight, recon)}
        if self.adversarial and self.latent_adv_weight:
            terms["latent_adv"] = (
                self.latent_adv_weight,
                self.objective.generator_loss(self.latent_critic(), self._codes),
            )
        if self.tv_weight:
            terms["tv"] = (self.tv_weight, total_variation(fake.float()))
        return terms

    def _log_iteration(self, b, loss_d, loss_g, d_logs, terms) -> None:  # noqa: ANN001
        super()._log_iteration(b, loss_d, loss_g, d_logs, terms)
        if self.adversarial and self._dz_scores is not None:
            real_s, fake_s = self._dz_scores
            readable = self.objective.readable
            scalars = {"dz_real": readable(real_s).mean(), "dz_fake": readable(fake_s).mean()}
            self.log_scalars("train", scalars, batch_size=b)

    def eval_scalars(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        real, (_, labels) = self.prepare_batch(batch)
        nets = self.sampling_generator
        fake = nets["decoder"](nets["encoder"](real), labels)
        scalars = {"recon_l1": (fake.float() - real.float()).abs().mean() / 2.0}
        scores = self.objective.evaluate(
            self.discriminator["image"](real, labels).float(),
            self.discriminator["image"](fake, labels).float(),
        )
        return {**scalars, **scores}
