"""Nets over voxel grids (B, 1, N, N, N) and the 2D nets of single-view 3D reconstruction.

- `VoxelGenerator` / `VoxelDiscriminator`: 3D-GAN (Wu et al. 2016): z -> a transposed 3D
  conv to 4^3 -> transposed convs (kernel 4, stride 2) doubling to N^3, batch norm and ReLU
  between, sigmoid occupancy out; D mirrors it with strided 3D convs and LeakyReLU(0.2) down to
  4^3 and a 4^3 conv to one score. The paper's widths at 64^3 are 512-256-128-64 (base 64);
  `norm: none` (or `layer`) in D for WGAN-GP (ShapeHD trains its prior that way), where batch
  norm would couple the samples the gradient penalty treats one by one.
- `VoxelEncoder` / `VoxelDecoder`: the voxel VAE's nets (the same 3D convs, a linear head).
- `SketchEncoder` + `VoxelDecoder` = `SketchToVoxel`: ShapeHD's completion step, a 2.5D
  sketch (depth + silhouette, (B, 2, H, W)) -> latent -> voxel logits.
- `DepthEstimator`: a small U-Net-like RGB -> 2.5D sketch net (MarrNet/ShapeHD's first step).
- `ShapeClassifier3D`: 3D convs -> category logits (the coverage metric's classifier).

Sizes N (and H) are powers of two >= 8; nets start or end at 4^3 (4^2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genlab.utils.errors import GenlabError

NORMS = ("batch", "layer", "none")


def _levels(size: int, who: str) -> int:
    """Number of x2 steps between 4 and `size`."""
    if size < 8 or size & (size - 1):
        raise GenlabError(f"{who}: size {size} must be a power of two >= 8 (e.g. 32 or 64).")
    return int(math.log2(size // 4))


def _norm3d(kind: str, channels: int, spatial: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "layer":  # per-sample normalisation over channels and space (WGAN-GP safe)
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise GenlabError(f"norm={kind!r}: use one of {', '.join(NORMS)}.")


def _widths(levels: int, base: int) -> list[int]:
    """Channels from coarse (4^3) to fine: base * 2^(levels - 1), ..., base."""
    return [base * 2 ** (levels - 1 - i) for i in range(levels)]


def gan_init(module: nn.Module) -> None:
    """Conv weights N(0, 0.02), norm weights N(1, 0.02), biases 0 (DCGAN/3D-GAN)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class VoxelDecoder(nn.Module):
    """z (B, in_dim) -> logits (B, 1, N, N, N): a transposed conv to 4^3, then transposed
    convs doubling the grid, batch norm + ReLU between, no activation at the end."""

    def __init__(self, *, in_dim: int, size: int = 32, base_channels: int = 32) -> None:
        super().__init__()
        levels = _levels(size, "VoxelDecoder")
        widths = _widths(levels, base_channels)
        layers: list[nn.Module] = [
            nn.ConvTranspose3d(in_dim, widths[0], 4, 1, 0, bias=False),  # (w0, 4, 4, 4)
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose3d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm3d(c_out),
                nn.ReLU(True),
            ]
        layers.append(nn.ConvTranspose3d(widths[-1], 1, 4, 2, 1))  # (1, size, size, size)
        self.net = nn.Sequential(*layers)
        self.in_dim, self.size = in_dim, size

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(len(z), self.in_dim, 1, 1, 1))


class VoxelGenerator(nn.Module):
    """3D-GAN's generator: z (B, latent_dim) -> occupancy (B, 1, N, N, N) in [0, 1] (sigmoid),
    or logits with `output: logits`."""

    def __init__(
        self,
        *,
        latent_dim: int = 200,
        size: int = 32,
        base_channels: int = 32,
        output: str = "sigmoid",
    ) -> None:
        super().__init__()
        if output not in ("sigmoid", "logits"):
            raise GenlabError(f"VoxelGenerator output={output!r}: use sigmoid or logits.")
        self.decoder = VoxelDecoder(in_dim=latent_dim, size=size, base_channels=base_channels)
        self.latent_dim, self.size, self.output = latent_dim, size, output
        gan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(z)
        return torch.sigmoid(logits) if self.output == "sigmoid" else logits


class VoxelFeatures(nn.Module):
    """(B, 1, N, N, N) -> (B, C, 4, 4, 4): strided 3D convs (kernel 4, stride 2), norm and
    LeakyReLU(0.2) between (none after the first, as DCGAN)."""

    def __init__(self, *, size: int, base_channels: int, norm: str = "batch") -> None:
        super().__init__()
        levels = _levels(size, "VoxelFeatures")
        widths = _widths(levels, base_channels)[::-1]  # fine -> coarse
        layers: list[nn.Module] = []
        c_in, spatial = 1, size
        for i, c_out in enumerate(widths):
            spatial //= 2
            layers.append(nn.Conv3d(c_in, c_out, 4, 2, 1, bias=norm == "none" or i == 0))
            if i > 0:
                layers.append(_norm3d(norm, c_out, spatial))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VoxelDiscriminator(nn.Module):
    """3D-GAN's discriminator: (B, 1, N, N, N) -> a score (B,) (a logit, or a critic value
    under WGAN-GP). `norm`: batch (the paper), layer or none (WGAN-GP)."""

    def __init__(self, *, size: int = 32, base_channels: int = 32, norm: str = "none") -> None:
        super().__init__()
        self.features = VoxelFeatures(size=size, base_channels=base_channels, norm=norm)
        self.head = nn.Conv3d(self.features.out_channels, 1, 4, 1, 0)  # (1, 1, 1, 1)
        self.size, self.norm = size, norm
        gan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).reshape(len(x))


class VoxelEncoder(nn.Module):
    """(B, 1, N, N, N) -> (B, out_dim): strided 3D convs to 4^3 and a linear layer."""

    def __init__(
        self, *, out_dim: int, size: int = 32, base_channels: int = 16, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.features = VoxelFeatures(size=size, base_channels=base_channels, norm=norm)
        self.head = nn.Linear(self.features.out_channels * 64, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class ShapeClassifier3D(nn.Module):
    """(B, 1, N, N, N) -> category logits (B, num_classes); `features(x)` (B, feature_dim)."""

    def __init__(
        self, *, num_classes: int, size: int = 32, base_channels: int = 8, feature_dim: int = 64
    ) -> None:
        super().__init__()
        self.encoder = VoxelEncoder(out_dim=feature_dim, size=size, base_channels=base_channels)
        self.out = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class SketchEncoder(nn.Module):
    """Images (B, in_channels, H, H) -> (B, out_dim): strided 2D convs (kernel 4, stride 2)
    with batch norm and LeakyReLU(0.2) down to 4^2, then a linear layer."""

    def __init__(
        self,
        *,
        out_dim: int,
        in_channels: int = 2,
        image_size: int = 64,
        base_channels: int = 16,
        max_channels: int = 256,
    ) -> None:
        super().__init__()
        levels = _levels(image_size, "SketchEncoder")
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(levels):
            c_out = min(base_channels * 2**i, max_channels)
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0),
                nn.BatchNorm2d(c_out) if i > 0 else nn.Identity(),
                nn.LeakyReLU(0.2, True),
            ]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * 16, out_dim)
        self.in_channels, self.out_dim = in_channels, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x).flatten(1))


class SketchToVoxel(nn.Module):
    """ShapeHD's completion net: a 2.5D sketch (B, in_channels, H, H) -> a latent code
    (B, latent_dim), linear (a ReLU there can leave every unit dead, and the decoder then
    draws the mean shape whatever the sketch) -> voxel logits (B, 1, N, N, N)."""

    def __init__(
        self,
        *,
        size: int = 32,
        image_size: int = 64,
        in_channels: int = 2,
        latent_dim: int = 128,
        encoder_channels: int = 16,
        decoder_channels: int = 16,
    ) -> None:
        super().__init__()
        self.encoder = SketchEncoder(
            out_dim=latent_dim,
            in_channels=in_channels,
            image_size=image_size,
            base_channels=encoder_channels,
        )
        self.decoder = VoxelDecoder(in_dim=latent_dim, size=size, base_channels=decoder_channels)
        self.latent_dim, self.size, self.in_channels = latent_dim, size, in_channels

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(sketch))  # a linear code: no unit can die


class DepthEstimator(nn.Module):
    """RGB (B, 3, H, H) -> 2.5D sketch logits (B, 2, H, H): channel 0 the depth in [0, 1]
    after a sigmoid, channel 1 the silhouette's logit. A small U-Net: `depth` strided conv
    levels down, transposed convs up, each level's features concatenated on the way up."""

    def __init__(self, *, image_size: int = 64, base_channels: int = 16, depth: int = 3) -> None:
        super().__init__()
        if image_size % (2**depth):
            raise GenlabError(
                f"DepthEstimator: image_size {image_size} is not divisible by 2^{depth}."
            )
        widths = [base_channels * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        c_in = 3
        for c in widths:
            self.down.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 4, 2, 1), nn.BatchNorm2d(c), nn.LeakyReLU(0.2, True)
                )
            )
            c_in = c
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            c_out = widths[i - 1] if i > 0 else base_channels
            c_skip = widths[i] if i < depth - 1 else 0
            self.up.append(
                nn.Sequential(
                    nn.ConvTranspose2d(widths[i] + c_skip, c_out, 4, 2, 1),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(True),
                )
            )
        self.out = nn.Conv2d(base_channels + 3, 2, 3, 1, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        skips, h = [], rgb
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        for i, layer in enumerate(self.up):
            if i > 0:
                h = torch.cat([h, skips[-1 - i]], dim=1)
            h = layer(h)
        return self.out(torch.cat([h, rgb], dim=1))

    @staticmethod
    def to_sketch(logits: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2, H, W) -> a sketch in [0, 1] as genlab.data.voxel_render.sketch makes
        (depth set to 1 off the estimated silhouette)."""
        depth, sil = torch.sigmoid(logits[:, :1]), torch.sigmoid(logits[:, 1:])
        return torch.cat([depth * sil + (1 - sil), sil], dim=1)
