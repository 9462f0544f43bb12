"""Distances between two sets of feature vectors: FID, KID, IS, precision/recall,
density/coverage. Plain functions of (N, d) tensors, computed in float64 on the tensors' device.

Why FID is computed here and not with torchmetrics' `FrechetInceptionDistance`: every metric of
one evaluation must come from ONE feature pass over the same N real and N fake images (and the
real features are cached on disk); torchmetrics' FID/KID/IS each run their own extractor and
keep their own states. The matrix square root is taken the numerically careful way:
tr sqrt(S1 S2) = tr sqrt(A S2 A) with A = S1^(1/2), a symmetric PSD matrix whose eigenvalues
(from `eigvalsh`, clamped at 0) are real, instead of the eigenvalues of the non-symmetric
S1 S2, whose tiny negative or complex parts make FID of a set with itself come out non-zero.
The test suite checks these against torchmetrics on the same features.
"""

from __future__ import annotations

import math

import torch

from genlab.utils.errors import GenlabError


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64)


def mean_cov(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of (N, d) features, float64."""
    f = _f64(features)
    if len(f) < 2:
        raise GenlabError(f"FID needs at least 2 images per set, got {len(f)}.")
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    vals, vecs = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor
) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) for two Gaussians."""
    root1 = sqrtm_psd(_f64(cov1))
    middle = root1 @ _f64(cov2) @ root1
    vals = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
    value = (
        (_f64(mu1) - _f64(mu2)).square().sum()
        + torch.trace(_f64(cov1))
        + torch.trace(_f64(cov2))
        - 2 * vals.sqrt().sum()
    )
    return max(float(value), 0.0)


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to (N, d) real and (M, d) fake features."""
    return frechet_distance(*mean_cov(real), *mean_cov(fake))


def kid_subset_size(n_real: int, n_fake: int, subset_size: int) -> int:
    """The KID subset size: `subset_size` capped by the smaller set; an error below 2."""
    size = min(subset_size, n_real, n_fake)
    if size < 2:
        raise GenlabError(
            f"KID needs at least 2 real and 2 fake images, got {n_real} real and {n_fake} fake: "
            "raise the sample budget (n_samples) or drop kid from the metric list."
        )
    return size


def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    subset_size: int = 1000,
    n_subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float, int]:
    """Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD^2 with the cubic
    polynomial kernel k(a, b) = (a.b / d + 1)^3, averaged over random subsets.

    Returns (mean, std over subsets, subset size used). `subset_size` is capped at the
    smaller set, so small sample budgets work; the size used is part of the result.
    """
    real, fake = _f64(real), _f64(fake)
    size = kid_subset_size(len(real), len(fake), subset_size)
    d = real.shape[1]
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(n_subsets):
        a = real[torch.randperm(len(real), generator=gen)[:size].to(real.device)]
        b = fake[torch.randperm(len(fake), generator=gen)[:size].to(fake.device)]
        k_aa = (a @ a.T / d + 1) ** 3
        k_bb = (b @ b.T / d + 1) ** 3
        k_ab = (a @ b.T / d + 1) ** 3
        m = size
        mmd = (
            (k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1))
            + (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
            - 2 * k_ab.mean()
        )
        values.append(float(mmd))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(t) > 1 else 0.0, size


def inception_score(
    logits: torch.Tensor, *, splits: int = 10, seed: int = 0
) -> tuple[float, float]:
    """exp E_x KL(p(y|x) || p(y)) from class logits (N, K), mean and std over `splits` parts.

    The images are shuffled (fixed seed) before splitting: parts of a class-sorted set would
    each hold few classes and give a score near 1."""
    logp = torch.log_softmax(_f64(logits), dim=1)
    logp = logp[torch.randperm(len(logp), generator=torch.Generator().manual_seed(seed))]
    splits = max(1, min(splits, len(logp)))
    scores = []
    for part in logp.chunk(splits):
        p_y = part.exp().mean(0)
        kl = (part.exp() * (part - p_y.clamp_min(1e-30).log())).sum(1).mean()
        scores.append(math.exp(float(kl)))
    t = torch.tensor(scores, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(t) > 1 else 0.0


def _pairwise(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Euclidean distances (len(a), len(b)) in float64, computed in row chunks."""
    return torch.cat([torch.cdist(part, b) for part in a.split(chunk)])


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    f = _f64(features)
    if len(f) <= k:
        raise GenlabError(
            f"k-NN metrics with k={k} need more than {k} images per set, got {len(f)}: raise "
            "n_samples or lower the metrics' nearest_k option."
        )
    dist = _pairwise(f, f)
    # the 0 distance to itself is the smallest, so the k-th neighbour is at index k
    return dist.kthvalue(k + 1, dim=1).values


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius the distance to
    the k-th nearest neighbour. Precision: the fraction of fake points inside the real
    manifold; recall: the fraction of real points inside the fake manifold.
    """
    real, fake = _f64(real), _f64(fake)
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    dist = _pairwise(fake, real)  # (m, n)
    precision = (dist <= r_real[None, :]).any(1).double().mean()
    recall = (r_fake[None, :] >= dist.T).any(1).double().mean()
    return float(precision), float(recall)


def density_coverage(real: torch.Tensor, fake: torch.Tensor, *, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), balls around REAL points only.

    Density: how many real-neighbourhood balls contain each fake point, / k, averaged (≈1
    when the distributions match, above 1 when fakes crowd dense real regions). Coverage: the
    fraction of real points whose ball contains at least one fake point.
    """
    real, fake = _f64(real), _f64(fake)
    r_real = knn_radii(real, k)
    inside = _pairwise(real, fake) <= r_real[:, None]  # (n, m)
    density = inside.double().sum() / (k * len(fake))
    coverage = inside.any(1).double().mean()
    return float(density), float(coverage)
