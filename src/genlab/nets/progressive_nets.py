"""Progressive GAN generator and discriminator (Karras et al. 2018, "Progressive Growing of GANs
for Improved Quality, Stability, and Variation").

Both nets hold every level from the start, 4x4 up to `resolution` (the smallest power of two
>= `image_size`), and run the levels up to `level` (0 = 4x4, 1 = 8x8, ...). While a level fades
in (`alpha` < 1) the output of the new level is blended with the previous level's:

    G: image = lerp(upsample(to_rgb[k-1](h)), to_rgb[k](block[k](h)), alpha)
    D: feat  = lerp(from_rgb[k-1](downsample(x)), block[k](from_rgb[k](x)), alpha)

so alpha = 0 is exactly the previous stage (G's image upsampled, D on the downsampled input)
and alpha = 1 is the new stage alone. The training loop sets `level` and `alpha` with
`set_progress` (models/progressive_gan.py); plain Python attributes, so a forward pass costs no
device sync.

The paper's components, each switchable:
- equalized learning rate (`equalized_lr`): weights ~ N(0, 1), multiplied at run time by He's
  constant gain / sqrt(fan_in), so Adam's step is the same relative size for every layer;
  off = the same constant baked into the initial weights (plain He init);
- pixelwise feature normalization in G (`pixel_norm`): each pixel's feature vector divided by
  its RMS over channels, after every conv (and on z);
- minibatch standard deviation in D (`mbstd_group_size`, 0 = off): the mean standard deviation
  of the features over a group of samples, appended as one more feature map before D's last
  block, so D can see a lack of variety.

Layout (c(r) = min(max_channels, channel_base // r); the paper: channel_base 16384, max 512):

    G: z -> dense 4x4 -> conv3 | [up2, conv3, conv3] per level | to_rgb: conv1, linear output
    D: from_rgb: conv1 + lrelu | [conv3, conv3, avgpool2] per level | mbstd, conv3, dense, dense
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.utils.errors import GenlabError


@dataclass(frozen=True)
class Progress:
    """Where the schedule stands: `level` (0 = 4x4), the new level's weight `alpha` (1 outside
    fade-ins) and the phase index (0: 4x4 stable, 2k - 1: level k fading in, 2k: level k
    stable)."""

    level: int
    alpha: float
    phase: int

    @property
    def resolution(self) -> int:
        return 4 * 2**self.level


HE_GAIN = math.sqrt(2.0)  # for leaky ReLU(0.2) the paper keeps ReLU's gain


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean over channels (dim 1) of x^2 + eps): each feature vector to unit RMS."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, eps: float = 1e-8) -> torch.Tensor:
    """Append one feature map: per group of samples, the standard deviation of every feature
    over the group (population, + eps inside the root), averaged over channels and pixels.

    x (b, c, h, w) -> (b, c + 1, h, w). Sample i belongs to group i mod (b / g), where g, the
    group size, is the largest divisor of b not above `group_size` (the paper requires b to be
    a multiple of it; this also takes evaluation batches of any size).
    """
    b, c, h, w = x.shape
    g = min(group_size, b)
    while b % g:
        g -= 1
    y = x.float().reshape(g, b // g, c, h, w)  # y[j, m] = x[j * (b // g) + m]
    std = (y.var(dim=0, unbiased=False) + eps).sqrt()  # (b // g, c, h, w)
    feat = std.mean(dim=(1, 2, 3)).to(x.dtype).repeat(g)  # (b,): sample i -> group i % (b//g)
    return torch.cat([x, feat[:, None, None, None].expand(b, 1, h, w)], dim=1)


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Box filter: the mean of each factor x factor block. (b, c, h, w) -> (b, c, h/f, w/f)."""
    return F.avg_pool2d(x, factor) if factor > 1 else x


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest neighbour: each pixel becomes a factor x factor block of copies."""
    return F.interpolate(x, scale_factor=factor, mode="nearest") if factor > 1 else x


def stage_reals(x: torch.Tensor, resolution: int, alpha: float) -> torch.Tensor:
    """Real images (b, c, R, R), R a power of two, as D sees them at a stage: box-filtered down to
    `resolution` and, while that resolution fades in (alpha < 1), blended with the coarser
    level upsampled, lerp(up(down(x_r)), x_r, alpha), the same blend G's output gets."""
    x = downsample(x, x.shape[-1] // resolution)  # (b, c, r, r)
    if alpha < 1.0 and resolution > 4:
        x = torch.lerp(upsample(downsample(x, 2), 2), x, alpha)
    return x


def power_of_two_above(size: int) -> int:
    """The smallest power of two >= size (and >= 4)."""
    return max(4, 1 << (size - 1).bit_length())


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad images (b, c, h, h) to (size, size) by repeating the border pixels (for 28-pixel
    MNIST: 2 black pixels on every side, exactly the LeNet-5 32x32 input); `crop_to` undoes it."""
    extra = size - x.shape[-1]
    if extra == 0:
        return x
    lo = extra // 2
    return F.pad(x, (lo, extra - lo, lo, extra - lo), mode="replicate")


def crop_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central (size, size) window of (b, c, H, H) images, the region `pad_to` padded."""
    if x.shape[-1] == size:
        return x
    lo = (x.shape[-1] - size) // 2
    return x[..., lo : lo + size, lo : lo + size]


class ScaledConv2d(nn.Module):
    """A 'same' convolution with He-scaled weights: with `equalized` the stored weights are
    N(0, 1) and multiplied by gain / sqrt(fan_in) in every forward pass (equalized learning
    rate); without, the stored weights are N(0, (gain / sqrt(fan_in))^2) (He init). Bias 0."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, *, gain: float = HE_GAIN, equalized: bool = True
    ) -> None:
        super().__init__()
        self.he_std = gain / math.sqrt(c_in * kernel * kernel)
        self.scale = self.he_std if equalized else 1.0
        init = torch.randn(c_out, c_in, kernel, kernel)
        self.weight = nn.Parameter(init if equalized else init * self.he_std)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class ScaledLinear(nn.Module):
    """A dense layer with He-scaled weights, equalized or not (see `ScaledConv2d`)."""

    def __init__(
        self, d_in: int, d_out: int, *, gain: float = HE_GAIN, equalized: bool = True
    ) -> None:
        super().__init__()
        self.he_std = gain / math.sqrt(d_in)
        self.scale = self.he_std if equalized else 1.0
        init = torch.randn(d_out, d_in)
        self.weight = nn.Parameter(init if equalized else init * self.he_std)
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def channel_widths(resolution: int, channel_base: int, max_channels: int) -> dict[int, int]:
    """{4: c(4), 8: c(8), ..., resolution: c(resolution)} with c(r) = min(max, base // r)."""
    widths, r = {}, 4
    while r <= resolution:
        widths[r] = max(1, min(max_channels, channel_base // r))
        r *= 2
    return widths


def _check(image_size: int, num_classes: int, who: str) -> int:
    if num_classes:
        raise GenlabError(
            f"{who} is unconditional, but model.num_classes={num_classes}: set "
            "model.num_classes=0 (class-conditional progressive GANs are not implemented)."
        )
    if image_size < 4:
        raise GenlabError(f"{who}: data.image_size={image_size} must be at least 4.")
    return power_of_two_above(image_size)


class _Progressive(nn.Module):
    """What both nets share: the level/alpha state and its validation."""

    levels: int

    def __init__(self) -> None:
        super().__init__()
        self.level, self.alpha = 0, 1.0

    def set_progress(self, level: int, alpha: float) -> None:
        """Run levels 0..`level` (resolution 4 * 2**level), the newest with weight `alpha`."""
        if not 0 <= level < self.levels or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"level {level} of {self.levels}, alpha {alpha} in [0, 1]")
        self.level, self.alpha = int(level), float(alpha)

    @property
    def current_resolution(self) -> int:
        return 4 * 2**self.level


class _GeneratorBlock(nn.Module):
    """Upsample x2, then two 3x3 convs with leaky ReLU (and pixel norm): one level of G."""

    def __init__(self, c_in: int, c_out: int, *, equalized: bool, norm: bool) -> None:
        super().__init__()
        self.conv1 = ScaledConv2d(c_in, c_out, 3, equalized=equalized)
        self.conv2 = ScaledConv2d(c_out, c_out, 3, equalized=equalized)
        self.norm = norm

    def _n(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x) if self.norm else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = upsample(x, 2)  # (b, c_in, 2h, 2w)
        x = self._n(_act(self.conv1(x)))
        return self._n(_act(self.conv2(x)))  # (b, c_out, 2h, 2w)


class _GeneratorStart(nn.Module):
    """z -> dense -> 4x4 maps -> 3x3 conv (the 4x4 level of G)."""

    def __init__(self, latent_dim: int, c: int, *, equalized: bool, norm: bool) -> None:
        super().__init__()
        # the paper's gain sqrt(2)/4 for this layer (kept from its Theano original)
        self.dense = ScaledLinear(latent_dim, c * 16, gain=HE_GAIN / 4, equalized=equalized)
        self.conv = ScaledConv2d(c, c, 3, equalized=equalized)
        self.norm, self.c = norm, c

    def _n(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x) if self.norm else x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.dense(self._n(z)).view(len(z), self.c, 4, 4)  # (b, c, 4, 4)
        x = self._n(_act(x))
        return self._n(_act(self.conv(x)))


class ProgressiveGenerator(_Progressive):
    """z (B, latent_dim) -> image (B, channels, r, r), r = 4 * 2**level, values around [-1, 1]
    (a linear output, as in the paper; samples are clamped)."""

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        image_size: int,
        channel_base: int = 16384,
        max_channels: int = 512,
        equalized_lr: bool = True,
        pixel_norm: bool = True,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.resolution = _check(image_size, num_classes, "ProgressiveGenerator (model.generator)")
        self.latent_dim, self.channels, self.image_size = latent_dim, channels, image_size
        self.num_classes = 0
        widths = list(channel_widths(self.resolution, channel_base, max_channels).values())
        self.levels = len(widths)
        kw = {"equalized": equalized_lr, "norm": pixel_norm}
        self.blocks = nn.ModuleList(
            [_GeneratorStart(latent_dim, widths[0], **kw)]
            + [_GeneratorBlock(a, b, **kw) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.to_rgb = nn.ModuleList(
            [ScaledConv2d(c, channels, 1, gain=1.0, equalized=equalized_lr) for c in widths]
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        k, alpha = self.level, self.alpha
        h = self.blocks[0](z)  # (b, c(4), 4, 4)
        for block in self.blocks[1:k]:
            h = block(h)
        if k == 0:
            return self.to_rgb[0](h)  # (b, channels, 4, 4)
        new = self.to_rgb[k](self.blocks[k](h))  # (b, channels, r, r)
        if alpha >= 1.0:
            return new
        old = upsample(self.to_rgb[k - 1](h), 2)  # the previous stage's image
        return torch.lerp(old, new, alpha)  # exact at both ends


class _DiscriminatorBlock(nn.Module):
    """Two 3x3 convs with leaky ReLU, then a 2x box downsample: one level of D."""

    def __init__(self, c_in: int, c_out: int, *, equalized: bool) -> None:
        super().__init__()
        self.conv1 = ScaledConv2d(c_in, c_in, 3, equalized=equalized)
        self.conv2 = ScaledConv2d(c_in, c_out, 3, equalized=equalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _act(self.conv2(_act(self.conv1(x))))
        return downsample(x, 2)  # (b, c_out, h/2, w/2)


class _DiscriminatorEnd(nn.Module):
    """[minibatch stddev], 3x3 conv, dense, dense -> one score (the 4x4 level of D)."""

    def __init__(self, c: int, *, group_size: int, equalized: bool) -> None:
        super().__init__()
        self.group_size = group_size
        extra = 1 if group_size > 0 else 0
        self.conv = ScaledConv2d(c + extra, c, 3, equalized=equalized)
        self.dense = ScaledLinear(c * 16, c, equalized=equalized)
        self.out = ScaledLinear(c, 1, gain=1.0, equalized=equalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.group_size > 0:
            x = minibatch_stddev(x, self.group_size)  # (b, c + 1, 4, 4)
        x = _act(self.conv(x)).flatten(1)  # (b, c * 16)
        return self.out(_act(self.dense(x))).flatten()  # (b,)


class ProgressiveDiscriminator(_Progressive):
    """Image (B, channels, r, r) at the current stage's resolution r -> one score (B,)."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        channel_base: int = 16384,
        max_channels: int = 512,
        equalized_lr: bool = True,
        mbstd_group_size: int = 4,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        who = "ProgressiveDiscriminator (model.discriminator)"
        self.resolution = _check(image_size, num_classes, who)
        if mbstd_group_size < 0 or mbstd_group_size == 1:
            raise GenlabError(
                f"model.discriminator.mbstd_group_size={mbstd_group_size}: use 0 (off) or a "
                "group size >= 2 (the paper: 4)."
            )
        self.channels, self.image_size, self.num_classes = channels, image_size, 0
        widths = list(channel_widths(self.resolution, channel_base, max_channels).values())
        self.levels = len(widths)
        self.from_rgb = nn.ModuleList(
            [ScaledConv2d(channels, c, 1, equalized=equalized_lr) for c in widths]
        )
        # blocks[k] takes level k's maps down to level k - 1's; blocks[0] scores the 4x4 maps
        self.blocks = nn.ModuleList(
            [_DiscriminatorEnd(widths[0], group_size=mbstd_group_size, equalized=equalized_lr)]
            + [
                _DiscriminatorBlock(widths[k], widths[k - 1], equalized=equalized_lr)
                for k in range(1, self.levels)
            ]
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        k, alpha = self.level, self.alpha
        if x.shape[-1] != self.current_resolution or x.shape[-2] != self.current_resolution:
            raise ValueError(
                f"ProgressiveDiscriminator at stage {self.current_resolution}x"
                f"{self.current_resolution} got images of {tuple(x.shape[-2:])}"
            )
        h = _act(self.from_rgb[k](x))  # (b, c(r), r, r)
        if k > 0:
            h = self.blocks[k](h)  # (b, c(r/2), r/2, r/2)
            if alpha < 1.0:
                old = _act(self.from_rgb[k - 1](downsample(x, 2)))  # the previous stage's input
                h = torch.lerp(old, h, alpha)
        for block in reversed(self.blocks[1:k]):
            h = block(h)
        return self.blocks[0](h)  # (b,)
