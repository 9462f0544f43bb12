"""Fully-connected generator and discriminator: the original GAN (Goodfellow et al. 2014)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genlab.nets.conditional import label_vector
from genlab.nets.layers import activation as make_activation


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every linear and conv layer of `module`."""
    for name, child in module.named_children():
        if isinstance(child, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            setattr(module, name, _spectral_norm(child))
        else:
            apply_spectral_norm(child)
    return module


class MLPGenerator(nn.Module):
    """z (B, latent_dim) [+ one-hot class] -> hidden layers -> Tanh image (B, C, H, W)."""

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        image_size: int,
        hidden_dims: Sequence[int] = (256, 512, 1024),
        activation: str = "relu",
        batch_norm: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.out_shape = (channels, image_size, image_size)
        dims = [latent_dim + num_classes, *hidden_dims]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(d_in, d_out)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(make_activation(activation))
        layers += [nn.Linear(dims[-1], channels * image_size * image_size), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat(
                [z, label_vector(y, self.num_classes, check=not self.training).to(z)], dim=1
            )
        return self.body(z).view(-1, *self.out_shape)  # (b, c, h, w) in [-1, 1]


class MLPDiscriminator(nn.Module):
    """Image (B, C, H, W) in [-1, 1] [+ one-hot class] -> hidden layers -> one score (B,).

    Class-conditional (`num_classes` > 0): the one-hot label joins the input and a projection
    term <embed(y), features> joins the score."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        hidden_dims: Sequence[int] = (512, 256),
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        spectral_norm: bool = False,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        dims = [channels * image_size * image_size + num_classes, *hidden_dims]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(d_in, d_out), make_activation(activation)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], 1)
        # projection discriminator (Miyato & Koyama 2018): + <embed(y), features>, a much
        # stronger class signal than the one-hot input alone
        self.embed = nn.Embedding(num_classes, dims[-1]) if num_classes else None
        if spectral_norm:
            apply_spectral_norm(self.body)
            self.head = _spectral_norm(self.head)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.num_classes:
            h = torch.cat(
                [h, label_vector(y, self.num_classes, check=not self.training).to(h)], dim=1
            )
        h = self.body(h)  # (b, features)
        out = self.head(h).squeeze(1)  # (b,)
        if self.embed is not None:
            out = out + (self.embed(y.long()) * h).sum(1)
        return out
