"""WaveGAN's nets (Donahue et al. 2019): DCGAN flattened to one dimension for raw audio.

- Generator: z -> dense -> (base_length, d·2^(n-1)) -> n transposed convolutions (kernel 25,
  stride 4), ReLU between them, tanh out: base_length·4^n samples (16 · 4^5 = 16384 in the
  paper, d = 64, n = 5).
- Discriminator: n strided convolutions (kernel 25, stride 4) with LeakyReLU(0.2) and phase
  shuffle (each clip's activations shifted by a random -r..r samples, reflected at the ends,
  so D cannot judge by the periodic artefacts of transposed convolutions) after all but the
  last, then a dense score.
- Class conditioning (num_classes > 0): G gets a learned label embedding beside z; D adds the
  projection term <embed(y), features> (Miyato & Koyama 2018) to its score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.utils.errors import GenlabError


def wavegan_layers(length: int, base_length: int, stride: int) -> int:
    """n with base_length · stride^n = length, or a GenlabError saying which lengths work."""
    n, size = 0, base_length
    while size < length:
        size, n = size * stride, n + 1
    if size != length or n < 1:
        options = ", ".join(str(base_length * stride**k) for k in range(1, 7))
        raise GenlabError(
            f"WaveGAN makes clips of base_length·{stride}^n samples; {length} is not one "
            f"(with base_length={base_length}: {options}): set data.length to one of them."
        )
    return n


def phase_shuffle(
    x: torch.Tensor, radius: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each clip of x (b, c, l) by its own random k in [-radius, radius] samples,
    filling the gap by reflection (Donahue et al. 2019, section 3.3): out[i, :, t] =
    x[i, :, t - k_i], with x[-j] = x[j] and x[l - 1 + j] = x[l - 1 - j] at the ends. The shifts
    are drawn from `generator` (on its device; the global generator when None), so a run
    that seeds it per iteration shuffles the same way when resumed."""
    if radius <= 0:
        return x
    where = generator.device if generator is not None else x.device
    shifts = torch.randint(-radius, radius + 1, (len(x),), generator=generator, device=where)
    padded = F.pad(x, (radius, radius), mode="reflect")
    length = x.shape[-1]
    # clip i takes the window starting at radius - k_i of its padded copy
    start = (radius - shifts).to(x.device)
    idx = start[:, None] + torch.arange(length, device=x.device)[None]  # (b, l)
    return padded.gather(2, idx[:, None, :].expand(-1, x.shape[1], -1))


class WaveGANGenerator(nn.Module):
    """z (B, latent_dim) [, y (B,)] -> waveforms (B, channels, length) in [-1, 1]."""

    def __init__(
        self,
        *,
        length: int = 16384,
        latent_dim: int = 100,
        model_size: int = 64,
        channels: int = 1,
        kernel_size: int = 25,
        stride: int = 4,
        base_length: int = 16,
        num_classes: int = 0,
        label_dim: int = 16,
    ) -> None:
        super().__init__()
        n = wavegan_layers(length, base_length, stride)
        self.length, self.latent_dim, self.num_classes = length, latent_dim, num_classes
        self.base_length, self.base_channels = base_length, model_size * 2 ** (n - 1)
        self.label = nn.Embedding(num_classes, label_dim) if num_classes else None
        in_dim = latent_dim + (label_dim if num_classes else 0)
        self.dense = nn.Linear(in_dim, base_length * self.base_channels)
        layers: list[nn.Module] = []
        ch = self.base_channels
        for i in range(n):
            out = channels if i == n - 1 else ch // 2
            pad = (kernel_size - stride + 1) // 2
            layers.append(
                nn.ConvTranspose1d(
                    ch,
                    out,
                    kernel_size,
                    stride,
                    padding=pad,
                    output_padding=stride - (kernel_size - 2 * pad),
                )
            )
            layers.append(nn.Tanh() if i == n - 1 else nn.ReLU())
            ch = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            if y is None:
                raise GenlabError("this WaveGAN generator is class-conditional: pass y.")
            z = torch.cat([z, self.label(y.long())], dim=1)
        h = F.relu(self.dense(z)).view(len(z), self.base_channels, self.base_length)
        return self.net(h)  # (b, channels, length)


class WaveGANDiscriminator(nn.Module):
    """Waveforms (B, channels, length) [, y (B,)] -> scores (B,)."""

    def __init__(
        self,
        *,
        length: int = 16384,
        model_size: int = 64,
        channels: int = 1,
        kernel_size: int = 25,
        stride: int = 4,
        base_length: int = 16,
        phase_shuffle: int = 2,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        n = wavegan_layers(length, base_length, stride)
        self.radius, self.num_classes = phase_shuffle, num_classes
        pad = (kernel_size - stride + 1) // 2
        widths = [channels] + [model_size * 2**i for i in range(n)]
        self.convs = nn.ModuleList(
            nn.Conv1d(widths[i], widths[i + 1], kernel_size, stride, padding=pad) for i in range(n)
        )
        self.feature_dim = widths[-1] * base_length
        self.score = nn.Linear(self.feature_dim, 1)
        self.project = nn.Embedding(num_classes, self.feature_dim) if num_classes else None

    def features(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(b, feature_dim); phase shuffle (in training mode only) draws from `generator`."""
        h = x
        for i, conv in enumerate(self.convs):
            h = F.leaky_relu(conv(h), 0.2)
            if self.training and i < len(self.convs) - 1:
                h = phase_shuffle(h, self.radius, generator)
        return h.flatten(1)  # (b, feature_dim)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        f = self.features(x, generator)
        out = self.score(f)[:, 0]
        if self.project is not None:
            if y is None:
                raise GenlabError("this WaveGAN discriminator is class-conditional: pass y.")
            out = out + (self.project(y.long()) * f).sum(1)
        return out
