"""DCGAN generator and discriminator (Radford et al. 2015), for 64x64, 32x32 and 28x28 images.

Paper rules: strided (transposed) convolutions, no pooling or hidden linear layers; batch norm
everywhere except G's output and D's input; ReLU in G with a Tanh output; LeakyReLU(0.2) in D;
weights N(0, 0.02), batch-norm scales N(1, 0.02). The depth follows the image size:

    64: z -> 4x4 (8f) -> 8 (4f) -> 16 (2f) -> 32 (f) -> 64     (the paper's CelebA/LSUN net)
    32: z -> 4x4 (4f) -> 8 (2f) -> 16 (f) -> 32
    28: z -> 7x7 (2f) -> 14 (f) -> 28                         (MNIST without resizing)

with f = `base_channels` (64 in the paper); D mirrors G.
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.nets.conditional import label_vector
from genlab.nets.gan_mlp import apply_spectral_norm
from genlab.utils.errors import GenlabError

# image size -> (size of the first feature map, channel multipliers from coarse to fine)
LAYOUTS: dict[int, tuple[int, tuple[int, ...]]] = {
    64: (4, (8, 4, 2, 1)),
    32: (4, (4, 2, 1)),
    28: (7, (2, 1)),
}


def layout(image_size: int, who: str) -> tuple[int, tuple[int, ...]]:
    if image_size not in LAYOUTS:
        raise GenlabError(
            f"{who} is built for data.image_size 64 (the paper), 32 or 28, but it is "
            f"{image_size}. Set data.image_size=64 (or 32/28) so the images are resized, or use "
            "the MLP nets (model=gan), which take any size."
        )
    return LAYOUTS[image_size]


def dcgan_init(module: nn.Module) -> None:
    """The paper's init: conv weights N(0, 0.02), batch-norm weight N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """z (B, latent_dim) [+ one-hot class] -> transposed convs -> Tanh image (B, C, H, W)."""

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        image_size: int,
        base_channels: int = 64,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        start, mults = layout(image_size, "DCGANGenerator (model.generator)")
        widths = [m * base_channels for m in mults]
        layers: list[nn.Module] = [
            # (latent + classes, 1, 1) -> (widths[0], start, start)
            nn.ConvTranspose2d(latent_dim + num_classes, widths[0], start, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat(
                [z, label_vector(y, self.num_classes, check=not self.training).to(z)], dim=1
            )
        return self.body(z[:, :, None, None])  # (b, c, h, w) in [-1, 1]


class DCGANDiscriminator(nn.Module):
    """Image (B, C, H, W) in [-1, 1] [+ class maps] -> strided convs -> one logit (B,).

    `batch_norm=false` drops the norms (recommended with `loss=wgan_gp`, whose penalty is per
    example); `spectral_norm=true` normalises every conv.
    """

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        base_channels: int = 64,
        batch_norm: bool = True,
        spectral_norm: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        start, mults = layout(image_size, "DCGANDiscriminator (model.discriminator)")
        widths = [m * base_channels for m in reversed(mults)]  # fine -> coarse
        layers: list[nn.Module] = [
            nn.Conv2d(channels + num_classes, widths[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),  # no batch norm on D's input layer
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, True))
        layers.append(nn.Conv2d(widths[-1], 1, start, 1, 0, bias=False))  # -> (1, 1, 1)
        self.body = nn.Sequential(*layers)
        dcgan_init(self)
        if spectral_norm:
            apply_spectral_norm(self.body)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            maps = label_vector(y, self.num_classes, check=not self.training).to(x)[
                :, :, None, None
            ]
            x = torch.cat([x, maps.expand(-1, -1, *x.shape[2:])], dim=1)
        return self.body(x).flatten()  # (b,)
