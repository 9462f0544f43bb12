"""KL divergences between diagonal Gaussians, in closed form (nats, summed over latent dims)."""

from __future__ import annotations

import torch


def kl_std_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per example: (B, d) -> (B,), summed over d.

    = 0.5 * sum_j (mean_j^2 + var_j - 1 - logvar_j)  (Kingma & Welling 2014, appendix B).
    """
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def kl_diag_normals(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) for diagonal Gaussians: (B, d) -> (B,)."""
    return 0.5 * (
        logvar2 - logvar1 + (logvar1.exp() + (mean1 - mean2).pow(2)) / logvar2.exp() - 1.0
    ).sum(-1)
