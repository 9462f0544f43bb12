"""The PatchGAN discriminator of pix2pix (Isola et al. 2017): a fully convolutional net whose
output is a grid of logits, each judging one N x N patch of the image (its receptive field),
so D models high-frequency structure and leaves low frequencies to the L1 term. Conditional:
D sees the source concatenated to the image (real target or G's output), so it judges
whether the output fits the input, not only whether it looks real.

Layout (f = `base_channels`), `n_layers` = 3 in the paper (70x70 patches):

    C64 (no norm) - C128 - C256 (stride 2) - C512 (stride 1) - 1-channel conv (stride 1)

all 4x4 kernels, padding 1, leaky ReLU 0.2. Each stride-2 layer doubles the receptive field:
n_layers = 1, 2, 3, 4, 5 give 16, 34, 70, 142, 286 pixels (`receptive_field`). At 256 px,
n_layers = 3 gives a 30x30 grid of patch logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.nets.dcgan import dcgan_init
from genlab.nets.gan_mlp import apply_spectral_norm
from genlab.nets.unet import norm2d
from genlab.utils.errors import GenlabError


def with_source(x: torch.Tensor, source: torch.Tensor | None, channels: int) -> torch.Tensor:
    """The discriminator input: the source (resized to x's size, nearest, when smaller, as in
    super-resolution) stacked before the image; x alone for an unconditional D."""
    if not channels:
        return x
    if source is None:
        raise GenlabError(
            "this discriminator is conditioned on the source image (source_channels > 0) but "
            "was called without one."
        )
    if source.shape[-2:] != x.shape[-2:]:
        source = F.interpolate(source, size=x.shape[-2:], mode="nearest")
    return torch.cat([source.to(x.dtype), x], 1)


def conv_stack_output(size: int, layers: list[tuple[int, int, int]]) -> int:
    """Output side of stacked convs given (kernel, stride, padding) each."""
    for k, s, p in layers:
        size = (size + 2 * p - k) // s + 1
    return size


class PatchGAN(nn.Module):
    """Image (B, channels, H, W) in [-1, 1] [+ source (B, source_channels, h, w)] -> patch
    logits (B, 1, H', W')."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        source_channels: int = 0,
        base_channels: int = 64,
        n_layers: int = 3,
        max_mult: int = 8,
        norm: str = "batch",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise GenlabError(f"model.discriminator.n_layers={n_layers} must be at least 1.")
        self.channels, self.source_channels, self.n_layers = channels, source_channels, n_layers
        self.kernels = [(4, 2, 1)] * n_layers + [(4, 1, 1), (4, 1, 1)]
        out = conv_stack_output(image_size, self.kernels)
        if out < 1:
            raise GenlabError(
                f"a PatchGAN with model.discriminator.n_layers={n_layers} needs images larger "
                f"than data.image_size={image_size}: lower n_layers (its receptive field is "
                f"{self.receptive_field} px)."
            )
        self.output_size = out
        bias = norm == "none"  # a conv followed by a norm needs no bias
        f = base_channels
        layers: list[nn.Module] = [
            nn.Conv2d(channels + source_channels, f, 4, 2, 1),
            nn.LeakyReLU(0.2, True),  # no norm on D's input layer
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, max_mult)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(f * prev, f * mult, 4, stride, 1, bias=bias),
                norm2d(norm, f * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(f * mult, 1, 4, 1, 1))
        self.body = nn.Sequential(*layers)
        dcgan_init(self)
        if spectral_norm:
            apply_spectral_norm(self.body)

    @property
    def receptive_field(self) -> int:
        """The side, in input pixels, of the patch each output logit sees."""
        r = 1
        for k, s, _ in reversed(self.kernels):
            r = r * s + (k - s)
        return r

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(with_source(x, source, self.source_channels))  # (b, 1, h', w')
