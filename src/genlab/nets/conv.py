"""Convolutional encoder and decoder: stride-2 convolutions, sized from the image shape."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from genlab.nets.layers import activation as make_activation
from genlab.utils.errors import GenlabError


def bottom_size(image_size: int, n_layers: int, who: str) -> int:
    """Spatial size after `n_layers` halvings; a clear error if the image size forbids it."""
    factor = 2**n_layers
    if image_size % factor or image_size // factor < 1:
        fits = [s for s in range(image_size - 8, image_size + 9) if s > 0 and s % factor == 0]
        raise GenlabError(
            f"{who} halves the image {n_layers} times (one per entry of hidden_channels), so "
            f"data.image_size must be a multiple of {factor}, but it is {image_size}. Use fewer "
            f"layers (model.*.hidden_channels) or another image size (e.g. data.image_size="
            f"{fits[0] if fits else factor})."
        )
    return image_size // factor


class ConvEncoder(nn.Module):
    """Image (B, C, H, W) -> stride-2 convolutions -> flatten -> code (B, out_dim)."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        out_dim: int,
        hidden_channels: Sequence[int] = (32, 64),
        activation: str = "leaky_relu",
        out_activation: str | None = None,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        size = bottom_size(image_size, len(hidden_channels), "ConvEncoder")
        layers: list[nn.Module] = []
        c_in = channels
        for i, c_out in enumerate(hidden_channels):
            layers.append(
                nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not batch_norm or i == 0)
            )
            if batch_norm and i > 0:  # no norm on the input layer (DCGAN practice)
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(make_activation(activation))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * size * size, out_dim)
        self.out_act = make_activation(out_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.head(self.body(x).flatten(1)))  # (b, out_dim)


class ConvDecoder(nn.Module):
    """Code (B, in_dim) -> linear -> transposed stride-2 convolutions -> logits (B, C, H, W)."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        in_dim: int,
        hidden_channels: Sequence[int] = (64, 32),
        activation: str = "relu",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.size = bottom_size(image_size, len(hidden_channels), "ConvDecoder")
        self.c0 = hidden_channels[0]
        self.stem = nn.Sequential(
            nn.Linear(in_dim, self.c0 * self.size * self.size), make_activation(activation)
        )
        layers: list[nn.Module] = []
        for c_in, c_out in zip(hidden_channels[:-1], hidden_channels[1:], strict=True):
            layers.append(
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=not batch_norm)
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(make_activation(activation))
        layers.append(nn.ConvTranspose2d(hidden_channels[-1], channels, 4, stride=2, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stem(z).view(-1, self.c0, self.size, self.size)  # (b, c0, s, s)
        return self.body(h)  # (b, c, h, w) logits
