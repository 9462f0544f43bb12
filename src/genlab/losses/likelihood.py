"""Negative log-likelihoods -log p(x|z) of decoder outputs, summed over pixels: (B,) in nats."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(x; sigmoid(logits)) summed over pixels: (B, C, H, W) -> (B,).

    For binary x this is a log-likelihood in nats; for continuous x in [0, 1] it is the
    cross-entropy the classic VAE recipe trains on (not a normalized density).
    """
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_nll(mean: torch.Tensor, x: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, sigma^2) summed over pixels: (B, C, H, W) -> (B,).

    `log_sigma` broadcasts against x: a scalar (one sigma for all pixels) or per pixel.
    """
    log_sigma = log_sigma.expand_as(x)
    nll = 0.5 * ((x - mean) * torch.exp(-log_sigma)).pow(2) + log_sigma + 0.5 * LOG_2PI
    return nll.flatten(1).sum(1)


def bits_per_dim(nats: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a negative log-likelihood per example in nats to bits per dimension."""
    return nats / (num_dims * math.log(2))
