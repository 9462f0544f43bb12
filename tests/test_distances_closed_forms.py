"""The generation metrics' distances written out by hand on small sets: the defaults the docs
state (k=3, k=5, KID's subsets), ball boundaries (a point on a ball's surface is inside),
the subset draws of KID and the splits of IS (seeded), and the exact refusals."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from genlab.metrics import distances as D
from genlab.utils.errors import GenlabError


def kid_by_hand(real, fake, size, n_subsets, seed):
    real, fake = real.double(), fake.double()
    d, gen, values = real.shape[1], torch.Generator().manual_seed(seed), []
    for _ in range(n_subsets):
        a = real[torch.randperm(len(real), generator=gen)[:size]].tolist()
        b = fake[torch.randperm(len(fake), generator=gen)[:size]].tolist()

        def k(u, v):
            return (sum(x * y for x, y in zip(u, v, strict=True)) / d + 1) ** 3

        m = size
        aa = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        bb = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        ab = sum(k(u, v) for u in a for v in b) / (m * m)
        values.append(aa + bb - 2 * ab)
    return values


def test_kid_by_hand_with_its_defaults():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(6, 2, generator=gen), torch.randn(7, 2, generator=gen) + 0.5
    values = kid_by_hand(real, fake, 6, 100, seed=0)  # subset capped at the smaller set
    mean, std, size = D.kid(real, fake)
    assert size == 6
    assert mean == pytest.approx(statistics.mean(values), rel=1e-12)
    assert std == pytest.approx(statistics.stdev(values), rel=1e-9)
    values = kid_by_hand(real, fake, 4, 2, seed=3)
    mean, std, size = D.kid(real, fake, subset_size=4, n_subsets=2, seed=3)
    assert (mean, size) == (pytest.approx(statistics.mean(values), rel=1e-12), 4)
    assert std == pytest.approx(statistics.stdev(values), rel=1e-9)
    one = D.kid(real, fake, subset_size=4, n_subsets=1, seed=3)
    assert one == (pytest.approx(values[0], rel=1e-12), 0.0, 4)
    big = torch.randn(1001, 1, generator=gen)
    assert D.kid(big, big, n_subsets=1)[2] == 1000  # the default subset size


def test_kid_subset_size_caps_and_refuses():
    assert D.kid_subset_size(50, 60, 10) == 10
    assert D.kid_subset_size(50, 8, 100) == 8 and D.kid_subset_size(8, 50, 100) == 8
    assert D.kid_subset_size(2, 5, 10) == 2
    with pytest.raises(GenlabError) as err:
        D.kid_subset_size(1, 5, 10)
    assert str(err.value) == (
        "KID needs at least 2 real and 2 fake images, got 1 real and 5 fake: raise the sample "
        "budget (n_samples) or drop kid from the metric list."
    )


def is_by_hand(logits, splits, seed):
    p = torch.softmax(logits.double(), 1)[torch.randperm(len(logits), generator=seed)].tolist()
    size = math.ceil(len(p) / splits)
    scores = []
    for start in range(0, len(p), size):
        part = p[start : start + size]
        marginal = [sum(col) / len(part) for col in zip(*part, strict=True)]
        kl = [sum(q * math.log(q / m) for q, m in zip(row, marginal, strict=True)) for row in part]
        scores.append(math.exp(sum(kl) / len(kl)))
    return scores


def test_inception_score_by_hand_with_its_defaults():
    logits = torch.randn(40, 4, generator=torch.Generator().manual_seed(1)) * 3
    scores = is_by_hand(logits, 10, torch.Generator().manual_seed(0))
    mean, std = D.inception_score(logits)
    assert mean == pytest.approx(statistics.mean(scores), rel=1e-9)
    assert std == pytest.approx(statistics.stdev(scores), rel=1e-7)
    mean, std = D.inception_score(logits, splits=1)
    assert (mean, std) == (pytest.approx(is_by_hand(logits, 1, torch.Generator())[0]), 0.0)
    # 11 images in the default 10 splits: parts of 2 (6 parts); with 2 splits, a std of two
    scores = is_by_hand(logits[:11], 10, torch.Generator().manual_seed(0))
    assert len(scores) == 6
    assert D.inception_score(logits[:11])[0] == pytest.approx(statistics.mean(scores), rel=1e-9)
    scores = is_by_hand(logits, 2, torch.Generator().manual_seed(0))
    assert D.inception_score(logits, splits=2)[1] == pytest.approx(
        statistics.stdev(scores), rel=1e-7
    )
    scores = is_by_hand(logits, 3, torch.Generator().manual_seed(5))
    assert D.inception_score(logits, splits=3, seed=5)[1] == pytest.approx(
        statistics.stdev(scores), rel=1e-7
    )


def test_knn_radii_and_the_manifold_metrics_on_a_line():
    line = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    assert D.knn_radii(line, 1).tolist() == [1.0, 1.0, 2.0, 3.0, 4.0]
    assert D.knn_radii(line, 2).tolist() == [3.0, 2.0, 3.0, 4.0, 7.0]
    with pytest.raises(GenlabError) as err:
        D.knn_radii(line, 5)
    assert str(err.value) == (
        "k-NN metrics with k=5 need more than 5 images per set, got 5: raise n_samples or "
        "lower the metrics' nearest_k option."
    )
    # real balls (k=1) [-1, 1], [0, 2], [1, 5], [3, 9], [6, 14]: a fake point on a surface is
    # inside; -2 and 20 are outside
    fake = torch.tensor([[-1.0], [-2.0], [20.0], [14.0]])
    precision, _ = D.precision_recall(line, fake, k=1)
    assert precision == 0.5
    density, coverage = D.density_coverage(line, fake, k=1)
    assert (density, coverage) == (0.5, 0.4)  # 2 ball memberships / (1 * 4); balls 1 and 5
    # recall: fake balls (k=1) around -2, -1, 14, 20 with radii 1, 1, 6, 6 hold 0 and 10
    assert D.precision_recall(line, fake, k=1)[1] == pytest.approx(2 / 5)


def test_manifold_metric_defaults():
    gen = torch.Generator().manual_seed(2)
    real, fake = torch.randn(30, 3, generator=gen), torch.randn(25, 3, generator=gen) * 1.5
    assert D.precision_recall(real, fake) == D.precision_recall(real, fake, k=3)
    assert D.precision_recall(real, fake) != D.precision_recall(real, fake, k=4)
    assert D.density_coverage(real, fake) == D.density_coverage(real, fake, k=5)
    assert D.density_coverage(real, fake) != D.density_coverage(real, fake, k=6)


def test_fid_of_narrow_gaussians_and_its_refusal():
    """Equal covariances cancel, whatever their size: FID = |mu1 - mu2|^2 (also for
    eigenvalues far below 1)."""
    cov = torch.diag(torch.tensor([1e-4, 4e-2, 0.5]))
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.5, 1.0, 0.0])
    assert D.frechet_distance(mu1, cov, mu2, cov) == pytest.approx(4.25, rel=1e-9)
    # S1 = I, S2 = 4 I in d = 2: tr(I + 4I - 2 * 2I) = 2
    eye = torch.eye(2)
    assert D.frechet_distance(mu1[:2], eye, mu1[:2], 4 * eye) == pytest.approx(2.0)
    two = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    mu, c = D.mean_cov(two)
    assert mu.tolist() == [1.0, 2.0] and c.tolist() == [[2.0, 2.0], [2.0, 2.0]]
    with pytest.raises(GenlabError) as err:
        D.mean_cov(two[:1])
    assert str(err.value) == "FID needs at least 2 images per set, got 1."
