"""What a GAN's discriminator sees of every image in training, real or fake: differentiable
augmentations for small data (the adversarial loop's `model.augment`).

- `DiffAugment` (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
  Training"): a fixed policy of `color` (brightness, saturation, contrast), `translation`
  (integer shifts up to 1/8 of the side, zeros shifted in) and `cutout` (a square of half the
  side set to zero), applied to every image D sees: the real batch and the fakes in D's step,
  and the fakes in G's step, so G's gradient passes through the same transforms.
- `AdaptiveAugment` (ADA; Karras et al. 2020, "Training Generative Adversarial Networks with
  Limited Data"): each transform of a pipeline applied to each image with probability p, and p
  adapted from how sure D is of the reals: r_t = E[sign(D(x_real))] over `interval` D steps;
  p += sign(r_t - target) * (images in those steps) / `speed_images`, clipped to [0, 1]. The
  paper's target is 0.6 and its speed lets p go from 0 to 1 in 500k images.

Both take images in D's units (G's range, [-1, 1] for genlab's GANs), shape (B, C, H, W), and
the iteration's seeded noise generator (`forward(x, generator=...)`): every random parameter is
drawn from it, one independent draw per image, so a resumed run augments exactly as an
uninterrupted one. Colour transforms act on the first `colour_channels` channels (all by
default) and geometric ones on every channel: a conditional D's source image stacked after
the image moves with it (genlab.models.translation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genlab.utils.errors import GenlabError

DIFF_POLICIES = ("color", "translation", "cutout")
ADA_OPS = (
    "xflip",
    "rotate90",
    "xint",
    "scale",
    "rotate",
    "aniso",
    "xfrac",
    "brightness",
    "contrast",
    "saturation",
)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor):
    """U[0, 1) draws from `generator` (on its device), moved to `like`'s device, float32."""
    where = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=where).to(like.device)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor):
    where = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=where).to(like.device)


def _split_colour(x: torch.Tensor, colour_channels: int | None) -> tuple[torch.Tensor, ...]:
    """(the channels colour transforms act on, the rest)."""
    if colour_channels is None or colour_channels >= x.shape[1]:
        return x, x[:, :0]
    return x[:, :colour_channels], x[:, colour_channels:]


class DiffAugment(nn.Module):
    """DiffAugment's policy (Zhao et al. 2020, §3): `policy` a subset of color, translation,
    cutout, applied in that order to every image, each image with its own random parameters:

    - color: x + U(-0.5, 0.5) (brightness); (x - mean_c) * U(0, 2) + mean_c (saturation, the
      mean over channels: the identity for one channel); (x - mean) * U(0.5, 1.5) + mean
      (contrast, the mean over the image);
    - translation: a shift of up to round(`translation_ratio` * side) pixels along each axis,
      uniform over the integers, zeros shifted in;
    - cutout: a square of round(`cutout_ratio` * side) pixels centred anywhere in the image
      (clipped at the borders) set to zero.

    Zero is D's units (mid-grey for images in [-1, 1]), as in the paper's code. Every op is a
    gather or an affine map of the pixels, so gradients pass to the input.
    """

    def __init__(
        self,
        *,
        policy: Sequence[str] | str = DIFF_POLICIES,
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        names = [p.strip() for p in policy.split(",")] if isinstance(policy, str) else policy
        names = [str(p) for p in names if str(p)]
        bad = [p for p in names if p not in DIFF_POLICIES]
        if bad or not names:
            raise GenlabError(
                f"model.augment.policy={list(names)}: use one or more of {list(DIFF_POLICIES)} "
                "(DiffAugment's colour, translation and cutout)."
            )
        for name, ratio in (
            ("translation_ratio", translation_ratio),
            ("cutout_ratio", cutout_ratio),
        ):
            if not 0.0 <= ratio <= 1.0:
                raise GenlabError(f"model.augment.{name}={ratio} must be in [0, 1].")
        self.policy = tuple(p for p in DIFF_POLICIES if p in names)  # the paper's order
        self.translation_ratio, self.cutout_ratio = float(translation_ratio), float(cutout_ratio)

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy)}"

    def forward(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        colour_channels: int | None = None,
    ) -> torch.Tensor:
        """Images (B, C, H, W) -> augmented images of the same shape."""
        if "color" in self.policy:
            x = self.colour(x, generator, colour_channels)
        if "translation" in self.policy:
            x = self.translation(x, generator)
        if "cutout" in self.policy:
            x = self.cutout(x, generator)
        return x

    @staticmethod
    def colour(
        x: torch.Tensor, generator: torch.Generator | None, colour_channels: int | None = None
    ) -> torch.Tensor:
        b = len(x)
        brightness, saturation, contrast = _rand((3, b, 1, 1, 1), generator, x).to(x.dtype)
        c, rest = _split_colour(x, colour_channels)
        c = c + (brightness - 0.5)
        mean_c = c.mean(dim=1, keepdim=True)
        c = (c - mean_c) * (saturation * 2.0) + mean_c
        mean = c.mean(dim=(1, 2, 3), keepdim=True)
        c = (c - mean) * (contrast + 0.5) + mean
        return torch.cat([c, rest], 1) if rest.shape[1] else c

    def translation(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, ch, h, w = x.shape
        sh, sw = int(h * self.translation_ratio + 0.5), int(w * self.translation_ratio + 0.5)
        u = _rand((2, b), generator, x)
        # uniform integers in [-s, s]: floor of U[0, 1) * (2s + 1)
        dy = (u[0] * (2 * sh + 1)).floor().long() - sh  # (b,)
        dx = (u[1] * (2 * sw + 1)).floor().long() - sw
        rows = torch.arange(h, device=x.device)[None, :] - dy[:, None]  # (b, h) source rows
        cols = torch.arange(w, device=x.device)[None, :] - dx[:, None]  # (b, w)
        # index into the image padded by one zero pixel all round: out of range -> the padding
        rows = (rows + 1).clamp(0, h + 1)
        cols = (cols + 1).clamp(0, w + 1)
        index = (rows[:, :, None] * (w + 2) + cols[:, None, :]).reshape(b, 1, h * w)
        padded = F.pad(x, (1, 1, 1, 1)).reshape(b, ch, (h + 2) * (w + 2))
        return padded.gather(2, index.expand(b, ch, h * w)).reshape(b, ch, h, w)

    def cutout(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = x.shape
        sh, sw = int(h * self.cutout_ratio + 0.5), int(w * self.cutout_ratio + 0.5)
        u = _rand((2, b), generator, x)
        # the square's centre: any pixel (one more position for an even side, as the paper)
        cy = (u[0] * (h + 1 - sh % 2)).floor().long()
        cx = (u[1] * (w + 1 - sw % 2)).floor().long()
        top, left = cy - sh // 2, cx - sw // 2  # (b,)
        rows = torch.arange(h, device=x.device)[None, :]
        cols = torch.arange(w, device=x.device)[None, :]
        in_r = (rows >= top[:, None]) & (rows < (top + sh)[:, None])  # (b, h)
        in_c = (cols >= left[:, None]) & (cols < (left + sw)[:, None])  # (b, w)
        keep = ~(in_r[:, :, None] & in_c[:, None, :])  # (b, h, w)
        return x * keep[:, None].to(x.dtype)


class AdaptiveAugment(nn.Module):
    """ADA (Karras et al. 2020): a pipeline of transforms, each applied to each image with
    probability `p`, with p adapted during training (module doc). Buffers, so they are saved
    in checkpoints and a resumed run continues exactly: `p`, and the sums of the current
    adjustment interval (`signs`, `images`, `steps`).

    The pipeline (`ops`, in this order; the paper's "bgc" without luma flip and hue):
    xflip, rotate90 (a random multiple of 90 degrees), xint (integer translation up to
    `xint_max` of the side), scale (isotropic, log2-normal with std `scale_std`), rotate
    (uniform in +-`rotate_max` x 180 degrees, applied twice with probability 1 - sqrt(1 - p)
    each, as the paper), aniso (anisotropic, log2-normal `aniso_std`), xfrac (fractional
    translation, normal with std `xfrac_std` of the side): composed into one affine map per
    image and resampled once (bilinear, reflected at the borders; the paper uses a wavelet
    filter against aliasing); then brightness (+ N(0, `brightness_std`)), contrast
    (x log2-normal `contrast_std`, about 0) and saturation (about the channel mean: RGB only).
    An image no transform was drawn for is returned unchanged, bit for bit.

    `observe(real_scores)` is called by the loop after each D step with D's raw scores of the
    (augmented) reals: r_t reads their sign, so 0 must be D's decision boundary (true for the
    bce, hinge and wgan_gp games, not for `ls`). `adapt=false` keeps p at `p` (fixed-p ADA,
    the paper's ablation). `scalars()` gives p and the last r_t as device tensors, for logging.
    """

    def __init__(
        self,
        *,
        p: float = 0.0,
        target: float = 0.6,
        speed_images: int = 500_000,
        interval: int = 4,
        adapt: bool = True,
        ops: Sequence[str] = ADA_OPS,
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1.0,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        saturation_std: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise GenlabError(f"model.augment.p={p} must be in [0, 1].")
        if not -1.0 <= target <= 1.0:
            raise GenlabError(
                f"model.augment.target={target}: r_t = E[sign D(x)] lies in [-1, 1] (0.6 in "
                "the paper)."
            )
        if speed_images <= 0 or interval < 1:
            raise GenlabError(
                f"model.augment.speed_images={speed_images} must be > 0 and "
                f"model.augment.interval={interval} >= 1."
            )
        bad = [o for o in ops if o not in ADA_OPS]
        if bad:
            raise GenlabError(f"model.augment.ops: {bad} unknown; use some of {list(ADA_OPS)}.")
        self.ops = tuple(o for o in ADA_OPS if o in ops)
        self.target, self.speed_images = float(target), int(speed_images)
        self.interval, self.adapt = int(interval), bool(adapt)
        self.xint_max, self.scale_std, self.rotate_max = xint_max, scale_std, rotate_max
        self.aniso_std, self.xfrac_std = aniso_std, xfrac_std
        self.brightness_std, self.contrast_std = brightness_std, contrast_std
        self.saturation_std = saturation_std
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("rt", torch.tensor(0.0))  # the last interval's E[sign D(x)]
        self.register_buffer("signs", torch.tensor(0.0))
        self.register_buffer("images", torch.tensor(0.0))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"ops={','.join(self.ops)}, target={self.target}, adapt={self.adapt}"

    # --- adapting p -------------------------------------------------------------------------
    @torch.no_grad()
    def observe(self, real_scores: torch.Tensor) -> None:
        """Accumulate sign(D(x_real)) of one D step (scores (B, ...): per image, the mean sign
        of its scores); every `interval` steps move p by sign(r_t - target) times the images
        seen over `speed_images`, and clip it to [0, 1]. Device ops only: no host sync."""
        if not self.adapt:
            return
        signs = real_scores.detach().float().reshape(len(real_scores), -1).sign().mean(1)
        self.signs += signs.sum()
        self.images += len(signs)
        self.steps += 1
        due = (self.steps % self.interval) == 0
        rt = self.signs / self.images.clamp_min(1.0)
        moved = (self.p + torch.sign(rt - self.target) * self.images / self.speed_images).clamp(
            0.0, 1.0
        )
        self.p.copy_(torch.where(due, moved, self.p))
        self.rt.copy_(torch.where(due, rt, self.rt))
        self.signs.copy_(torch.where(due, torch.zeros_like(self.signs), self.signs))
        self.images.copy_(torch.where(due, torch.zeros_like(self.images), self.images))

    def scalars(self) -> dict[str, torch.Tensor]:
        """What to log: `ada_p` and `ada_rt` (device tensors, read without a sync)."""
        return {"ada_p": self.p.detach().clone(), "ada_rt": self.rt.detach().clone()}

    # --- augmenting -------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        colour_channels: int | None = None,
    ) -> torch.Tensor:
        """Images (B, C, H, W) -> augmented images of the same shape. The same number of
        random values is drawn whatever p is, so the noise stream never depends on p."""
        x = self.geometric(x, generator)
        return self.colour(x, generator, colour_channels)

    def _chosen(self, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return (u < p).to(torch.float32)

    def geometric(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = x.shape
        # per image: 7 Bernoulli draws, 2 for the double rotation, 10 parameters
        u = _rand((9, b), generator, x)
        n = _randn((5, b), generator, x)
        v = _rand((6, b), generator, x)
        p = self.p.to(x.device).float()
        p_rot = 1.0 - torch.sqrt((1.0 - p).clamp_min(0.0))
        eye = torch.eye(3, device=x.device).expand(b, 3, 3)
        m = eye.clone()  # maps output pixel coordinates (centred) to input ones
        any_op = torch.zeros(b, device=x.device)

        def then(op: torch.Tensor, chosen: torch.Tensor) -> None:
            nonlocal m, any_op
            op = torch.where(chosen[:, None, None] > 0, op, eye)
            m = m @ op
            any_op = torch.maximum(any_op, chosen)

        def mat(a, b_, c, d, tx, ty) -> torch.Tensor:  # (b,) entries -> (b, 3, 3)
            zero, one = torch.zeros_like(a), torch.ones_like(a)
            rows = [torch.stack([a, b_, tx], 1), torch.stack([c, d, ty], 1)]
            rows.append(torch.stack([zero, zero, one], 1))
            return torch.stack(rows, 1)

        zero, one = torch.zeros(b, device=x.device), torch.ones(b, device=x.device)
        if "xflip" in self.ops:
            flip = 1.0 - 2.0 * (v[0] < 0.5).float()
            then(mat(flip, zero, zero, one, zero, zero), self._chosen(u[0], p))
        if "rotate90" in self.ops:
            k = (v[1] * 4).floor()
            angle = k * (math.pi / 2)
            cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
            then(mat(cos, -sin, sin, cos, zero, zero), self._chosen(u[1], p))
        if "xint" in self.ops:
            tx = ((v[2] * 2 - 1) * self.xint_max * w).round()
            ty = ((v[3] * 2 - 1) * self.xint_max * h).round()
            then(mat(one, zero, zero, one, tx, ty), self._chosen(u[2], p))
        if "scale" in self.ops:
            s = torch.exp2(n[0] * self.scale_std)
            then(mat(1 / s, zero, zero, 1 / s, zero, zero), self._chosen(u[3], p))
        if "rotate" in self.ops:
            angle = (v[4] * 2 - 1) * math.pi * self.rotate_max
            cos, sin = torch.cos(angle), torch.sin(angle)
            then(mat(cos, sin, -sin, cos, zero, zero), self._chosen(u[4], p_rot))
        if "aniso" in self.ops:
            s = torch.exp2(n[1] * self.aniso_std)
            then(mat(1 / s, zero, zero, s, zero, zero), self._chosen(u[5], p))
        if "rotate" in self.ops:
            angle = (v[5] * 2 - 1) * math.pi * self.rotate_max
            cos, sin = torch.cos(angle), torch.sin(angle)
            then(mat(cos, sin, -sin, cos, zero, zero), self._chosen(u[6], p_rot))
        if "xfrac" in self.ops:
            tx, ty = n[2] * self.xfrac_std * w, n[3] * self.xfrac_std * h
            then(mat(one, zero, zero, one, tx, ty), self._chosen(u[7], p))
        # centred pixel coordinates -> grid_sample's normalised ones (align_corners=False):
        # diag(2/w, 2/h, 1) @ m @ diag(w/2, h/2, 1), by Python scalars (no host-to-device copy)
        theta = m[:, :2].clone()
        theta[:, 0, 1] *= h / w
        theta[:, 1, 0] *= w / h
        theta[:, 0, 2] *= 2.0 / w
        theta[:, 1, 2] *= 2.0 / h
        theta = theta.to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        warped = F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
        return torch.where(any_op[:, None, None, None] > 0, warped, x)

    def colour(
        self, x: torch.Tensor, generator: torch.Generator | None, colour_channels: int | None
    ) -> torch.Tensor:
        b = len(x)
        u = _rand((3, b, 1, 1, 1), generator, x)
        n = _randn((3, b, 1, 1, 1), generator, x)
        p = self.p.to(x.device).float()
        c, rest = _split_colour(x, colour_channels)
        out = c
        if "brightness" in self.ops:
            shift = n[0] * self.brightness_std * self._chosen(u[0], p)
            out = out + shift.to(x.dtype)
        if "contrast" in self.ops:
            gain = torch.where(
                u[1] < p, torch.exp2(n[1] * self.contrast_std), torch.ones_like(n[1])
            )
            out = out * gain.to(x.dtype)
        if "saturation" in self.ops and c.shape[1] == 3:
            gain = torch.exp2(n[2] * self.saturation_std).to(x.dtype)
            mean = out.mean(dim=1, keepdim=True)
            out = torch.where(u[2] < p, mean + (out - mean) * gain, out)
        return torch.cat([out, rest], 1) if rest.shape[1] else out
