"""A small convolutional classifier: the domain feature network for generation metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from genlab.nets.layers import activation as make_activation
from genlab.utils.errors import GenlabError


class ConvClassifier(nn.Module):
    """Image (B, C, H, W) in [0, 1] -> conv blocks -> pool -> feature (B, feature_dim) -> class
    logits (B, num_classes).

    Each block is `convs_per_block` 3x3 convolutions then a 2x2 max-pool; an adaptive pool to
    2x2 makes any image size of at least 2**len(hidden_channels) pixels work. `features(x)` is
    the penultimate layer, the embedding used by `fid_domain` and friends.
    """

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        num_classes: int,
        hidden_channels: Sequence[int] = (32, 64, 128),
        feature_dim: int = 128,
        convs_per_block: int = 1,
        activation: str = "relu",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if image_size < 2 ** len(hidden_channels):
            raise GenlabError(
                f"ConvClassifier pools the image {len(hidden_channels)} times, so data.image_size "
                f"must be at least {2 ** len(hidden_channels)}, but it is {image_size}. Use fewer "
                "layers (model.net.hidden_channels) or larger images."
            )
        self.channels, self.image_size = channels, image_size
        self.num_classes, self.feature_dim = num_classes, feature_dim
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in hidden_channels:
            for _ in range(convs_per_block):
                layers += [
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    make_activation(activation),
                ]
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(c_in * 4, feature_dim), make_activation(activation))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x))  # (b, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (b, num_classes) logits
