"""Maximum mean discrepancy between two samples (the WAE-MMD penalty, Tolstikhin et al. 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genlab.utils.errors import GenlabError

KERNELS = ("imq", "rbf")


def kernel_matrix(
    a: torch.Tensor, b: torch.Tensor, kind: str, scales: Sequence[float], prior_var: float = 1.0
) -> torch.Tensor:
    """Sum over `scales` of k(a_i, b_j): (n, d), (m, d) -> (n, m).

    Both kernels use the bandwidth C = 2 * d * prior_var * scale:
    `imq` k = C / (C + |a - b|^2) (inverse multiquadratic, the WAE paper's choice);
    `rbf` k = exp(-|a - b|^2 / C).
    """
    if kind not in KERNELS:
        raise GenlabError(f"model.kernel={kind!r} is not a kernel: use one of {KERNELS}.")
    d2 = torch.cdist(a, b).pow(2)  # (n, m)
    base = 2.0 * a.shape[-1] * prior_var
    out = torch.zeros_like(d2)
    for s in scales:
        c = base * s
        out = out + (c / (c + d2) if kind == "imq" else torch.exp(-d2 / c))
    return out


def mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    kind: str = "imq",
    scales: Sequence[float] = (1.0,),
    prior_var: float = 1.0,
) -> torch.Tensor:
    """Unbiased estimate of MMD^2 between samples x (n, d) and y (m, d): a scalar (batch-level).

    The U-statistic: off-diagonal means of k(x, x) and k(y, y) minus twice the mean of k(x, y).
    """
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise GenlabError(
            "the MMD penalty needs at least 2 codes per batch: raise data.batch_size."
        )
    kxx = kernel_matrix(x, x, kind, scales, prior_var)
    kyy = kernel_matrix(y, y, kind, scales, prior_var)
    kxy = kernel_matrix(x, y, kind, scales, prior_var)
    off_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    off_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return off_x + off_y - 2.0 * kxy.mean()
