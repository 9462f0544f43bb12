"""The U-Net generator of pix2pix (Isola et al. 2017): an encoder of stride-2 convolutions
down to a 1x1 bottleneck, a mirrored decoder of transposed convolutions, and skip connections
that concatenate each encoder feature map to the decoder map of the same size, so low-level
detail (edges, positions) goes straight across. Dropout in the first decoder layers is the
generator's only noise (pix2pix has no z).

Layout (f = `base_channels`, widths f * min(2^i, max_mult)), for 256x256 (the paper):

    encoder  C64 - C128 - C256 - C512 - C512 - C512 - C512 - C512      (256 -> 1)
    decoder  CD512 - CD512 - CD512 - C512 - C256 - C128 - C64 -> Tanh   (1 -> 256, skips)

(C: conv, norm, leaky ReLU 0.2 in the encoder, ReLU in the decoder; D: dropout 0.5; no norm on
the first encoder layer or the bottleneck.) The depth follows the image size: the input is
padded (replicating its border) to the next multiple of 2^depth and the output cropped back,
with depth = ceil(log2(image_size)) by default, so every size reaches a 1x1 bottleneck: 28-px
MNIST is padded to 32 and gets the 32-px net (5 levels), 64 -> 6 levels, 256 -> 8 levels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab.nets.dcgan import dcgan_init
from genlab.utils.errors import GenlabError

NORMS = ("batch", "instance", "none")


def norm2d(kind: str, channels: int) -> nn.Module:
    """`batch`, `instance` (no affine, no running statistics: pix2pix's instance norm, which is
    batch norm at batch size 1) or `none`."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise GenlabError(f"norm={kind!r} is not a normalisation: use one of {NORMS}.")


class UNet(nn.Module):
    """Source image (B, in_channels, H, W) in [-1, 1] -> image (B, out_channels, H, W) in
    [-1, 1] (Tanh); any H, W (padded to a multiple of 2^depth inside).

    `dropout` (probability) is applied in the first `dropout_layers` decoder layers, counted
    from the bottleneck (the paper's three CD512 layers); it is active in training mode only.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        image_size: int,
        base_channels: int = 64,
        max_mult: int = 8,
        depth: int | None = None,
        norm: str = "batch",
        dropout: float = 0.5,
        dropout_layers: int = 3,
    ) -> None:
        super().__init__()
        if depth is None:
            depth = max(1, math.ceil(math.log2(image_size)))
        if depth < 1:
            raise GenlabError(f"model.generator.depth={depth} must be at least 1.")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.image_size, self.depth = image_size, depth
        widths = [base_channels * min(2**i, max_mult) for i in range(depth)]
        bias = norm == "none"  # a conv followed by a norm needs no bias
        self.down = nn.ModuleList()
        for i in range(depth):
            if i == 0:
                self.down.append(nn.Conv2d(in_channels, widths[0], 4, 2, 1))
                continue
            innermost = i == depth - 1
            self.down.append(
                nn.Sequential(
                    nn.LeakyReLU(0.2, True),
                    nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1, bias=bias or innermost),
                    nn.Identity() if innermost else norm2d(norm, widths[i]),
                )
            )
        self.up = nn.ModuleList()  # up[i] maps level i + 1 to level i; applied from i = depth - 1
        for i in range(depth):
            c_in = (
                widths[i] if i == depth - 1 else 2 * widths[i]
            )  # + the skip below the bottleneck
            if i == 0:
                self.up.append(
                    nn.Sequential(
                        nn.ReLU(True), nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()
                    )
                )
                continue
            noisy = depth - 1 - i < dropout_layers and dropout > 0
            self.up.append(
                nn.Sequential(
                    nn.ReLU(True),
                    nn.ConvTranspose2d(c_in, widths[i - 1], 4, 2, 1, bias=bias),
                    norm2d(norm, widths[i - 1]),
                    nn.Dropout(dropout) if noisy else nn.Identity(),
                )
            )
        dcgan_init(self)  # N(0, 0.02), as pix2pix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        unit = 2**self.depth
        ph, pw = -h % unit, -w % unit
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        if ph or pw:
            x = F.pad(x, pad, mode="replicate")  # (b, c, h', w'), multiples of 2^depth
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = skips.pop()  # the 1x1 bottleneck (at the default depth)
        for i in reversed(range(self.depth)):
            x = self.up[i](x)
            if i:
                x = torch.cat([x, skips.pop()], 1)  # (b, 2 * widths[i - 1], ...)
        return x[..., pad[2] : pad[2] + h, pad[0] : pad[0] + w]  # (b, out, h, w)
