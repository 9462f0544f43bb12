"""Super-resolution nets of SRGAN (Ledig et al. 2017).

`SRResNet`, the generator: a 9x9 conv, residual blocks (conv-BN-PReLU-conv-BN plus the
identity) at the input resolution, a long skip around them, then one sub-pixel convolution
(conv to r^2 times the channels, pixel shuffle) per factor r of the scale (x2 twice for x4),
and a 9x9 conv out. The paper: 16 blocks, 64 channels.

`SRGANDiscriminator`, a global D: eight 3x3 convs (64 -> 512 channels, stride 2 every other
one, BN and leaky ReLU 0.2), then dense 1024 and one logit. The paper's 96-px crops end at
6x6; here the last map is average-pooled to at most `pool_size` (6) per side, so the dense
layer stays that size whatever the image size (28-px MNIST ends at 2x2).
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.nets.gan_mlp import apply_spectral_norm
from genlab.nets.patchgan import conv_stack_output, with_source
from genlab.nets.unet import norm2d
from genlab.utils.errors import GenlabError


def scale_factors(scale: int) -> list[int]:
    """Sub-pixel steps for an upscaling factor: 2, 4, 8 ... as x2 steps; 3 as one x3 step."""
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * (scale.bit_length() - 1)
    raise GenlabError(f"super-resolution scale {scale}: use 2, 3, 4 or 8.")


class ResidualBlock(nn.Module):
    """x + BN(conv(PReLU(BN(conv(x)))))."""

    def __init__(self, channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=norm == "none"),
            norm2d(norm, channels),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=norm == "none"),
            norm2d(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """Low-resolution image (B, in_channels, h, w) in [-1, 1] -> (B, out_channels, scale * h,
    scale * w) in [-1, 1] (Tanh); fully convolutional."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        scale: int = 4,
        base_channels: int = 64,
        n_blocks: int = 16,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        f = base_channels
        self.head = nn.Sequential(nn.Conv2d(in_channels, f, 9, 1, 4), nn.PReLU(f))
        self.blocks = nn.Sequential(*[ResidualBlock(f, norm) for _ in range(n_blocks)])
        self.fuse = nn.Sequential(nn.Conv2d(f, f, 3, 1, 1, bias=norm == "none"), norm2d(norm, f))
        ups: list[nn.Module] = []
        for r in scale_factors(scale):
            ups += [nn.Conv2d(f, f * r * r, 3, 1, 1), nn.PixelShuffle(r), nn.PReLU(f)]
        self.upsample = nn.Sequential(*ups)
        self.tail = nn.Sequential(nn.Conv2d(f, out_channels, 9, 1, 4), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)  # (b, f, h, w)
        h = h + self.fuse(self.blocks(h))  # the long skip
        return self.tail(self.upsample(h))  # (b, c, scale * h, scale * w)


class SRGANDiscriminator(nn.Module):
    """Image (B, channels, H, W) in [-1, 1] [+ source, when `source_channels` > 0] -> one
    logit per image (B,)."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        source_channels: int = 0,
        base_channels: int = 64,
        dense: int = 1024,
        pool_size: int = 6,
        norm: str = "batch",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.channels, self.source_channels = channels, source_channels
        f = base_channels
        widths = [f, f, 2 * f, 2 * f, 4 * f, 4 * f, 8 * f, 8 * f]
        layers: list[nn.Module] = []
        c_in = channels + source_channels
        kernels = []
        for i, width in enumerate(widths):
            stride = 2 if i % 2 else 1
            kernels.append((3, stride, 1))
            layers.append(nn.Conv2d(c_in, width, 3, stride, 1, bias=i == 0 or norm == "none"))
            if i:  # no norm on the input layer
                layers.append(norm2d(norm, width))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in = width
        side = conv_stack_output(image_size, kernels)
        pooled = min(side, pool_size)
        layers += [
            nn.AdaptiveAvgPool2d(pooled),
            nn.Flatten(),
            nn.Linear(widths[-1] * pooled * pooled, dense),
            nn.LeakyReLU(0.2, True),
            nn.Linear(dense, 1),
        ]
        self.body = nn.Sequential(*layers)
        if spectral_norm:
            apply_spectral_norm(self.body)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(with_source(x, source, self.source_channels)).flatten()  # (b,)
