"""Fully-connected (stacked) encoder and decoder for images of any size."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from genlab.nets.layers import activation as make_activation


def mlp(
    dims: Sequence[int], act: str, *, batch_norm: bool = False, dropout: float = 0.0
) -> nn.Sequential:
    """Linear layers dims[0] -> ... -> dims[-1], each followed by the activation."""
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
        layers.append(nn.Linear(d_in, d_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(make_activation(act))
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flattened image (B, C, H, W) -> hidden layers -> code (B, out_dim).

    `out_activation` shapes the code (e.g. `sigmoid` for a KL-sparse autoencoder); None keeps
    it linear.
    """

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        out_dim: int,
        hidden_dims: Sequence[int] = (512, 256),
        activation: str = "relu",
        out_activation: str | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        in_dim = channels * image_size * image_size
        self.body = mlp([in_dim, *hidden_dims], activation, batch_norm=batch_norm, dropout=dropout)
        self.head = nn.Linear(([in_dim, *hidden_dims])[-1], out_dim)
        self.out_act = make_activation(out_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.head(self.body(x.flatten(1))))  # (b, out_dim)


class MLPDecoder(nn.Module):
    """Code (B, in_dim) -> hidden layers -> image logits (B, C, H, W)."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        in_dim: int,
        hidden_dims: Sequence[int] = (256, 512),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_shape = (channels, image_size, image_size)
        self.body = mlp([in_dim, *hidden_dims], activation, batch_norm=batch_norm, dropout=dropout)
        self.head = nn.Linear(([in_dim, *hidden_dims])[-1], channels * image_size * image_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z)).view(-1, *self.out_shape)  # (b, c, h, w) logits
