"""Shape metrics (genlab.metrics.shape_metrics) against hand-computed cases.

Broken variants seen failing (in a scratch copy): Chamfer as the sum of the two directed means
instead of their mean (the 2-vs-1 case gives 7/16, not 7/32); squared distances (the
single-voxel case); surface voxels taken as all filled voxels (the 3^3 cube's count 27, and
its Chamfer to the 2-voxel-larger cube); IoU of two empty grids 0; nearest_iou with the union
not subtracting the intersection; coverage counting categories with >= 1 sample.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.data.procedural_shapes import generate
from genlab.metrics.shape_metrics import (
    EMPTY_CHAMFER,
    category_coverage,
    chamfer,
    iou,
    iou_sweep,
    mean_shape,
    memorisation,
    nearest_iou,
    surface,
    train_shape_classifier,
)


def grid(n: int, *cells: tuple[int, int, int]) -> torch.Tensor:
    g = torch.zeros(n, n, n, dtype=torch.bool)
    for c in cells:
        g[c] = True
    return g


def test_iou_by_hand_and_over_thresholds():
    target = grid(4, (0, 0, 0), (1, 0, 0), (2, 0, 0))
    pred = torch.zeros(4, 4, 4)
    pred[0, 0, 0], pred[1, 0, 0], pred[3, 3, 3] = 0.9, 0.4, 0.6
    both = torch.stack([pred, pred])[:, None]
    t = torch.stack([target, target]).float()[:, None]
    # at 0.5: {000, 333} vs {000, 100, 200}: 1 / 4; at 0.3: {000, 100, 333}: 2 / 4; at 0.7: 1 / 3
    assert torch.allclose(iou(both, t, 0.5), torch.tensor([0.25, 0.25]))
    sweep = iou_sweep(both, t, thresholds=(0.3, 0.5, 0.7))
    assert sweep["iou@0.3"] == 0.5 and sweep["iou@0.5"] == 0.25
    assert math.isclose(sweep["iou@0.7"], 1 / 3, rel_tol=1e-6)
    assert sweep["iou_best"] == 0.5 and sweep["iou_best_threshold"] == 0.3
    empty = torch.zeros(1, 1, 4, 4, 4)
    assert iou(empty, empty).item() == 1.0  # nothing to find, nothing found


def test_surface_voxels_have_an_empty_neighbour():
    cube = torch.zeros(5, 5, 5, dtype=torch.bool)
    cube[1:4, 1:4, 1:4] = True
    s = surface(cube)
    assert s.sum() == 26 and not s[2, 2, 2]  # all but the centre
    full = torch.ones(3, 3, 3, dtype=torch.bool)
    assert surface(full).sum() == 26  # the grid's outside counts as empty


def test_chamfer_by_hand():
    n = 8
    # one voxel each, 3 apart along x and 4 along y: distance 5 voxels = 5/8 of the side
    assert math.isclose(chamfer(grid(n, (0, 0, 0)), grid(n, (3, 4, 0))), 5 / 8, rel_tol=1e-6)
    # P = {(0,0,0), (2,0,0)}, Q = {(0,0,0)}: P->Q mean (0 + 2)/2 = 1, Q->P 0: CD = 1/2 voxel
    cd = chamfer(grid(n, (0, 0, 0), (2, 0, 0)), grid(n, (0, 0, 0)))
    assert math.isclose(cd, 0.5 / n, rel_tol=1e-6)
    # symmetric, zero on itself
    a, b = grid(n, (1, 2, 3), (5, 5, 5)), grid(n, (0, 0, 0))
    assert math.isclose(chamfer(a, b), chamfer(b, a), rel_tol=1e-6) and chamfer(a, a) == 0.0
    # the empty cases
    assert chamfer(grid(n), a) == EMPTY_CHAMFER == math.sqrt(3)
    assert chamfer(grid(n), grid(n)) == 0.0
    # solids are compared by their surfaces: a 3^3 cube's centre voxel plays no part
    small = torch.zeros(n, n, n, dtype=torch.bool)
    small[2:5, 2:5, 2:5] = True
    big = torch.zeros(n, n, n, dtype=torch.bool)
    big[1:6, 1:6, 1:6] = True
    # every surface voxel of the small cube is 1 voxel from the big one's surface (straight
    # out); the big one's: faces 1, edges sqrt(2), corners sqrt(3) voxels from the small one
    faces, edges, corners = 6 * 9, 12 * 3, 8
    big_to_small = (faces * 1 + edges * math.sqrt(2) + corners * math.sqrt(3)) / 98
    assert math.isclose(chamfer(small, big), (1 + big_to_small) / 2 / n, rel_tol=1e-5)


def test_mean_shape_and_nearest_training_shape():
    train, _ = generate(["chair", "table", "box"], 4, size=16, seed=0)
    m = mean_shape(train.float())
    assert m.shape == (1, 1, 16, 16, 16) and torch.allclose(m[0, 0], train.float().mean(0))
    # a copy of training shape 5 and a shifted shape
    shifted = torch.roll(train[2], 1, dims=0)
    samples = torch.stack([train[5], shifted]).float()[:, None]
    near, index = nearest_iou(samples, train.float()[:, None])
    assert near[0] == 1.0 and index[0] == 5
    overlap = (shifted & train.bool()).flatten(1).sum(1) / (shifted | train.bool()).flatten(1).sum(
        1
    )
    assert torch.isclose(near[1], overlap.max()) and near[1] < 1
    mem = memorisation(samples, train.float(), reference=train[:2].float())
    assert mem["copy_fraction"] == 0.5 and mem["reference_nearest_iou_mean"] == 1.0


class ByFill(nn.Module):
    """A rule-based 'classifier': class = number of filled voxels mod 3 (a real module, so
    the coverage computation is exercised as with a trained one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.flatten(1).sum(1).long() % 3
        return nn.functional.one_hot(k, 3).float()


def test_category_coverage_by_hand():
    def fills(*counts: int) -> torch.Tensor:
        """counts[k] grids of k + 3 * j filled voxels (ByFill's class k)."""
        out = []
        for k, c in enumerate(counts):
            for _ in range(c):
                g = torch.zeros(1, 4, 4, 4)
                g.view(-1)[: k + 3] = 1
                out.append(g)
        return torch.stack(out)

    # 24 samples, 3 categories: a quarter of an even share is 2 samples
    cov = category_coverage(ByFill(), fills(22, 1, 1), 3)
    assert cov["categories_hit"] == 1.0 and cov["coverage"] == pytest.approx(1 / 3)
    p = torch.tensor([22, 1, 1]) / 24
    assert cov["class_entropy"] == pytest.approx(float(-(p * p.log()).sum() / math.log(3)))
    cov = category_coverage(ByFill(), fills(20, 4, 0), 3)
    assert cov["categories_hit"] == pytest.approx(2 / 3) and cov["coverage"] == pytest.approx(
        2 / 3
    )
    assert category_coverage(ByFill(), fills(8, 8, 8), 3)["class_entropy"] == pytest.approx(1.0)


def test_a_small_classifier_learns_the_categories():
    cats = ["box", "sphere", "chair", "lamp"]
    x, y = generate(cats, 16, size=16, seed=0)
    held, hy = generate(cats, 8, size=16, seed=1)
    net = train_shape_classifier(x.float(), y, len(cats), steps=100, seed=0)
    with torch.no_grad():
        acc = (net(held.float()[:, None]).argmax(1) == hy).float().mean().item()
    # chance is 0.25; measured 0.84-0.97 over classifier seeds 0-5
    assert acc >= 0.7, acc
