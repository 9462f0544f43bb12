"""StackGAN's nets (Zhang et al., ICCV 2017): text -> a low-resolution image -> a refined one.

Images at the nets' boundaries are in [-1, 1] (Tanh), as genlab's other GAN nets; the family
module converts from the data's [0, 1]. `text` is a sentence embedding phi_t (B, embed_dim)
from genlab.nets.text_encoders.

- `ConditioningAugmentation`: phi_t -> (mu, log sigma) by one linear layer; c = mu + sigma *
  eps, returned with its KL to N(0, I) per sample (`gaussian_kl`). The paper adds
  lambda * KL to G's loss (lambda = 1 in the paper; the authors' configs use 2.0 with the KL
  averaged over the condition dims instead of summed: `kl / cond_dim`). `augment=False` is
  the "no CA" ablation: c = mu, KL 0.
- `StageIGenerator`: (z, c) -> dense -> (8f, 4, 4) -> nearest-upsample + 3x3 conv blocks
  (BN, ReLU), halving the width each time -> 3x3 conv -> Tanh at `image_size`.
- `StageIIGenerator`: (Stage-I image, c) -> down-sampling encoder to image/4 (width 4f) ->
  c replicated over space and joined by a 3x3 conv -> residual blocks -> up-sampling blocks
  to `scale` x the input size -> Tanh. Its own conditioning augmentation gives its c.
- `MatchingDiscriminator` (`StageIDiscriminator`, `StageIIDiscriminator`): image -> strided
  4x4 convs down to 4x4 (widths doubling up to `max_mult` x f, then 1x1 back to 8f) ->
  concatenated with the text compressed to `cond_dim` (dense + LeakyReLU, replicated 4x4)
  -> 1x1 conv -> 4x4 conv -> one logit (B,).
- `matching_aware_terms`: the matching-aware D's three pairings (real image + its text =
  real; real image + mismatched text and fake image + text = fake), as logits and the
  paper's BCE terms.

Widths follow the authors' code (f = 128 for G, 64 for D; 4 residual blocks); every width
is a keyword so tests use 2-4 channels. The residual blocks are the authors' (3x3 conv, BN,
ReLU, 3x3 conv, BN, + x, ReLU), not SRResNet's (PReLU, no ReLU after the sum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.utils.errors import GenlabError


# --- conditioning augmentation -----------------------------------------------------------------
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per sample (B,), summed over dims:
    0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


class ConditioningAugmentation(nn.Module):
    """phi_t (B, embed_dim) -> (c (B, cond_dim), KL to N(0, I) per sample (B,))."""

    def __init__(self, *, embed_dim: int, cond_dim: int = 128, augment: bool = True) -> None:
        super().__init__()
        self.cond_dim, self.augment = cond_dim, augment
        self.fc = nn.Linear(embed_dim, 2 * cond_dim)

    def distribution(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2), each (B, cond_dim)."""
        mu, logvar = self.fc(text).chunk(2, dim=1)
        return mu, logvar

    def forward(
        self, text: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.distribution(text)
        if not self.augment:
            return mu, torch.zeros(len(mu), device=mu.device, dtype=mu.dtype)
        # drawn where the generator lives (a CPU generator may drive a model on a GPU)
        where = generator.device if generator is not None else mu.device
        eps = torch.randn(mu.shape, generator=generator, device=where, dtype=mu.dtype)
        return mu + (0.5 * logvar).exp() * eps.to(mu.device), gaussian_kl(mu, logvar)


# --- blocks ------------------------------------------------------------------------------------
def _levels(size: int, lowest: int, who: str) -> int:
    """log2(size / lowest), or a GenlabError when size is not lowest * 2^k (k >= 1)."""
    k = round(math.log2(size / lowest)) if size >= lowest else -1
    if k < 1 or lowest * 2**k != size:
        raise GenlabError(
            f"{who} works on images of {lowest} x 2^k pixels (k >= 1: {2 * lowest}, "
            f"{4 * lowest}, {8 * lowest}...), not {size}: set data.image_size accordingly."
        )
    return k


def _up(c_in: int, c_out: int) -> nn.Sequential:
    """x2 nearest upsampling, 3x3 conv, BN, ReLU (the authors' replacement of deconvs)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(True),
    )


def _up_stack(widths: list[int]) -> nn.Sequential:
    return nn.Sequential(*[_up(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)])


class StackResidual(nn.Module):
    """relu(x + BN(conv(relu(BN(conv(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _init(module: nn.Module) -> None:
    """DCGAN's init (weights N(0, 0.02), BN scales N(1, 0.02)), as the authors'."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# --- generators --------------------------------------------------------------------------------
class StageIGenerator(nn.Module):
    """(z (B, latent_dim), c (B, cond_dim)) -> image (B, channels, image_size, image_size) in
    [-1, 1]; image_size = 4 * 2^k (16, 32, 64 as in the paper)."""

    def __init__(
        self,
        *,
        latent_dim: int = 100,
        cond_dim: int = 128,
        channels: int = 3,
        image_size: int = 64,
        base_channels: int = 128,
    ) -> None:
        super().__init__()
        self.latent_dim, self.cond_dim, self.image_size = latent_dim, cond_dim, image_size
        ups = _levels(image_size, 4, "StageIGenerator")
        widths = [max(1, base_channels * 8 >> k) for k in range(ups + 1)]  # 4x4 -> image_size
        self.start = widths[0]
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, widths[0] * 16, bias=False),
            nn.BatchNorm1d(widths[0] * 16),
            nn.ReLU(True),
        )
        self.ups = nn.Sequential(
            *[_up(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.out = nn.Sequential(nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh())
        _init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, c], dim=1)).view(len(z), self.start, 4, 4)  # (b, 8f, 4, 4)
        return self.out(self.ups(h))  # (b, channels, s, s)


class StageIIGenerator(nn.Module):
    """(Stage-I image (B, channels, s, s) in [-1, 1], c (B, cond_dim)) -> image (B, channels,
    scale * s, scale * s) in [-1, 1]: encode to s/4 (width 4f), join c, residual blocks,
    upsample log2(scale) + 2 times."""

    def __init__(
        self,
        *,
        cond_dim: int = 128,
        channels: int = 3,
        low_size: int = 64,
        scale: int = 4,
        base_channels: int = 128,
        residual_blocks: int = 4,
    ) -> None:
        super().__init__()
        _levels(low_size, 4, "StageIIGenerator (its input, the Stage-I image)")
        if scale not in (2, 4, 8):
            raise GenlabError(f"StageIIGenerator scale={scale}: use 2, 4 (the paper) or 8.")
        f = base_channels
        self.low_size, self.scale, self.cond_dim = low_size, scale, cond_dim
        self.encode = nn.Sequential(  # (b, c, s, s) -> (b, 4f, s/4, s/4)
            nn.Conv2d(channels, f, 3, 1, 1),
            nn.ReLU(True),
            nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * f),
            nn.ReLU(True),
            nn.Conv2d(2 * f, 4 * f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(4 * f),
            nn.ReLU(True),
        )
        self.joint = nn.Sequential(
            nn.Conv2d(4 * f + cond_dim, 4 * f, 3, 1, 1, bias=False),
            nn.BatchNorm2d(4 * f),
            nn.ReLU(True),
        )
        self.residual = nn.Sequential(*[StackResidual(4 * f) for _ in range(residual_blocks)])
        ups = 2 + int(math.log2(scale))
        widths = [max(1, (4 * f) >> k) for k in range(ups + 1)]  # 4f, 2f, f, f/2, ...
        self.ups = nn.Sequential(
            *[_up(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.out = nn.Sequential(nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh())
        _init(self)

    def forward(self, low: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if low.shape[-1] != self.low_size or low.shape[-2] != self.low_size:
            raise GenlabError(
                f"StageIIGenerator refines {self.low_size}x{self.low_size} images, got "
                f"{tuple(low.shape[-2:])}."
            )
        h = self.encode(low)  # (b, 4f, s/4, s/4)
        cond = c[:, :, None, None].expand(-1, -1, *h.shape[2:])
        h = self.residual(self.joint(torch.cat([h, cond], dim=1)))
        return self.out(self.ups(h))  # (b, channels, scale * s, scale * s)


# --- discriminators ----------------------------------------------------------------------------
class MatchingDiscriminator(nn.Module):
    """(image (B, channels, s, s) in [-1, 1], text (B, embed_dim)) -> logit (B,): whether the
    image is real AND matches the text. s = 4 * 2^k."""

    def __init__(
        self,
        *,
        channels: int = 3,
        image_size: int = 64,
        embed_dim: int = 1024,
        cond_dim: int = 128,
        base_channels: int = 64,
        max_mult: int = 8,
    ) -> None:
        super().__init__()
        downs = _levels(image_size, 4, type(self).__name__)
        f = base_channels
        widths = [f * min(2**k, max_mult) for k in range(downs)]
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b)]
            layers.append(nn.LeakyReLU(0.2, True))
        if widths[-1] != 8 * f:  # deep Stage-II encoders come back to 8f with 1x1 convs
            layers += [nn.Conv2d(widths[-1], 8 * f, 1, bias=False), nn.BatchNorm2d(8 * f)]
            layers.append(nn.LeakyReLU(0.2, True))
        self.image = nn.Sequential(*layers)  # (b, c, s, s) -> (b, 8f, 4, 4)
        self.text = nn.Sequential(nn.Linear(embed_dim, cond_dim), nn.LeakyReLU(0.2, True))
        self.joint = nn.Sequential(
            nn.Conv2d(8 * f + cond_dim, 8 * f, 1, bias=False),
            nn.BatchNorm2d(8 * f),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(8 * f, 1, 4),  # (b, 1, 1, 1)
        )
        _init(self)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.image(x)  # (b, 8f, 4, 4)
        t = self.text(text)[:, :, None, None].expand(-1, -1, *h.shape[2:])  # (b, cond, 4, 4)
        return self.joint(torch.cat([h, t], dim=1)).flatten()  # (b,)


class StageIDiscriminator(MatchingDiscriminator):
    """Stage-I's matching-aware D (64 -> 4 in four steps, widths f ... 8f)."""


class StageIIDiscriminator(MatchingDiscriminator):
    """Stage-II's matching-aware D: a deeper encoder (widths up to 32f, as the authors'
    256-pixel D, then 1x1 convs back to 8f)."""

    def __init__(self, *, max_mult: int = 32, **kwargs) -> None:
        super().__init__(max_mult=max_mult, **kwargs)


# --- the matching-aware discriminator's pairings -----------------------------------------------
@dataclass
class MatchingTerms:
    """D's logits on the three pairings and the paper's BCE terms (means over the batch):
    real + matching text -> 1; real + mismatched text -> 0; fake + matching text -> 0. `loss`
    = real + (wrong + fake) / 2, the authors' weighting."""

    real_logits: torch.Tensor
    wrong_logits: torch.Tensor
    fake_logits: torch.Tensor
    real: torch.Tensor
    wrong: torch.Tensor
    fake: torch.Tensor
    loss: torch.Tensor


def matching_aware_terms(
    d: nn.Module,
    images: torch.Tensor,
    fakes: torch.Tensor,
    text: torch.Tensor,
    mismatched_text: torch.Tensor,
    *,
    wrong_weight: float = 0.5,
) -> MatchingTerms:
    """The matching-aware D's terms: D(images, text) is real; D(images, mismatched_text) and
    D(fakes, text) are fake. `fakes` are used as given (detach them for D's step).
    `wrong_weight` = 0.5 weighs wrong and fake as the authors' code; 0 is the plain
    conditional D (the "no matching-aware D" ablation: its wrong term is still reported)."""
    real_logits = d(images, text)
    wrong_logits = d(images, mismatched_text)
    fake_logits = d(fakes, text)
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    wrong = F.binary_cross_entropy_with_logits(wrong_logits, torch.zeros_like(wrong_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    loss = real + wrong_weight * wrong + (1.0 - wrong_weight) * fake
    return MatchingTerms(real_logits, wrong_logits, fake_logits, real, wrong, fake, loss)


def mismatch_index(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A permutation of range(n) with no fixed point (n >= 2): item i is paired with
    another item's text. A random cycle: shuffle, then each takes the next one's. Drawn on
    the generator's device (no copy to the host: usable inside a training step)."""
    if n < 2:
        raise GenlabError("mismatched text needs a batch of at least 2 samples.")
    device = generator.device if generator is not None else None
    order = torch.randperm(n, generator=generator, device=device)
    out = torch.empty(n, dtype=torch.long, device=order.device)
    out[order] = order.roll(-1)
    return out


# --- the stacked nets, as the adversarial loop sees them -----------------------------------------
@dataclass
class StackOutput:
    """What the stacked generator makes of a batch of captions: the Stage-I image (B, C, s, s),
    the Stage-II image (B, C, scale * s, ...) or None for one stage, and the KL to N(0, I) of
    the conditioning augmentations that train, per sample (B,)."""

    low: torch.Tensor
    high: torch.Tensor | None
    kl: torch.Tensor


class StackGenerator(nn.Module):
    """StackGAN's generator side as one module (so the adversarial loop's G optimizer, EMA
    and DDP see one net): a text encoder giving phi_t, Stage-I's conditioning augmentation
    and G, and optionally Stage-II's own conditioning augmentation and G reading phi_t again.

    `freeze_stage1`: the text encoder, Stage-I's CA and Stage-I's G take no gradient and stay
    in eval mode (the paper's Stage-II training on a trained Stage-I); their KL is not
    counted. Otherwise (one stage, or both trained jointly as StackGAN++) the KL of every CA
    is summed, and Stage-II's loss reaches Stage-I through its input image."""

    def __init__(
        self,
        *,
        text_encoder: nn.Module,
        ca1: ConditioningAugmentation,
        stage1: nn.Module,
        ca2: ConditioningAugmentation | None = None,
        stage2: nn.Module | None = None,
        freeze_stage1: bool = False,
    ) -> None:
        super().__init__()
        if (ca2 is None) != (stage2 is None) or (freeze_stage1 and stage2 is None):
            raise GenlabError(
                "StackGenerator: Stage-II needs both its CA and its G; freezing Stage-I needs "
                "a Stage-II to train."
            )
        self.text_encoder, self.ca1, self.stage1 = text_encoder, ca1, stage1
        self.ca2, self.stage2 = ca2, stage2
        self.freeze_stage1 = freeze_stage1
        if freeze_stage1:
            for part in self.stage1_parts():
                part.requires_grad_(False).train(False)

    def stage1_parts(self) -> list[nn.Module]:
        """What Stage-I is made of (and what a Stage-I checkpoint gives Stage-II)."""
        return [self.text_encoder, self.ca1, self.stage1]

    def train(self, mode: bool = True) -> StackGenerator:
        super().train(mode)
        if self.freeze_stage1:
            for part in self.stage1_parts():
                part.train(False)
        return self

    def forward(
        self, tokens: torch.Tensor, z: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> StackOutput:
        """tokens (B, L), z (B, latent_dim) -> StackOutput; the CAs draw from `generator`."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_stage1):
            phi = self.text_encoder(tokens)  # (b, embed_dim)
            c1, kl = self.ca1(phi, generator=generator)
            low = self.stage1(z, c1)  # (b, c, s, s)
        if self.freeze_stage1:
            kl = torch.zeros_like(kl)
        if self.stage2 is None:
            return StackOutput(low, None, kl)
        assert self.ca2 is not None
        c2, kl2 = self.ca2(phi, generator=generator)
        return StackOutput(low, self.stage2(low, c2), kl + kl2)


class StackDiscriminator(nn.Module):
    """StackGAN's discriminator side as one module: a text encoder of its own (D learns what
    a matching caption looks like from its own gradient) and a matching-aware D per stage
    that is trained: `stage1` on Stage-I's resolution, `stage2` on Stage-II's."""

    def __init__(
        self,
        *,
        text_encoder: nn.Module,
        stage1: nn.Module | None = None,
        stage2: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if stage1 is None and stage2 is None:
            raise GenlabError("StackDiscriminator needs a Stage-I or a Stage-II D.")
        self.text_encoder, self.stage1, self.stage2 = text_encoder, stage1, stage2

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, level: str) -> torch.Tensor:
        """Images (B, C, s, s) in [-1, 1] and captions (B, L) -> one logit each (B,), from the
        D of `level` (`stage1` or `stage2`)."""
        d = self.stage1 if level == "stage1" else self.stage2
        if d is None:
            raise GenlabError(f"this StackDiscriminator has no {level} D.")
        return d(x, self.text_encoder(tokens))
