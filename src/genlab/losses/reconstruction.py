"""Reconstruction losses, summed over pixels: one value per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genlab.utils.errors import GenlabError

KINDS = ("mse", "bce")


def reconstruction_loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """Per-image reconstruction loss (B,), summed over all pixels and channels.

    `logits` are the decoder's raw outputs (B, C, H, W); the reconstruction is
    sigmoid(logits) in [0, 1]. `mse`: squared error of the reconstruction; `bce`: binary
    cross-entropy (the Bernoulli negative log-likelihood in nats), computed from the logits
    for numerical stability.
    """
    if kind == "mse":
        return (torch.sigmoid(logits) - target).pow(2).flatten(1).sum(1)
    if kind == "bce":
        return (
            F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
        )
    raise GenlabError(f"model.reconstruction={kind!r} is not a loss: use one of {KINDS}.")
