"""Measures of predicted and generated voxel shapes, and the baselines they are judged
against.

Definitions (grids (B, 1, N, N, N) or (B, N, N, N); predictions are occupancy probabilities,
targets in {0, 1}):

- IoU at threshold t: |{p >= t} & {x = 1}| / |{p >= t} | {x = 1}| per shape (1 when both are
  empty), averaged over shapes; `iou_sweep` gives it at each threshold of THRESHOLDS and the
  best one.
- Chamfer distance: the surface voxels of a grid are its filled voxels with at least one of
  their 6 neighbours empty (or outside the grid); their points are the voxel centres in units
  of the grid's side, ((i, j, k) + 0.5) / N in [0, 1]^3. For point sets P (prediction) and
  Q (truth): CD = (mean_{p in P} min_{q in Q} |p - q| + mean_{q in Q} min_{p in P} |q - p|) / 2,
  Euclidean distances (not squared). An empty prediction of a non-empty shape (or the reverse)
  scores EMPTY_CHAMFER = sqrt(3), the cube's diagonal, the largest distance there is; two
  empty grids score 0.
- Baselines: `mean_shape` (the mean training grid, the same prediction for every input) and
  the visual hull of the one silhouette (genlab.data.voxel_render.visual_hull).
- Memorisation: the nearest training shape of a sample by IoU (`nearest_iou`); a sample whose
  nearest IoU is >= `copy_iou` counts as a copy.
- Category coverage: the categories a small 3D classifier (`train_shape_classifier`) assigns
  to samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from genlab.data.voxel_render import visual_hull
from genlab.nets.voxel_nets import ShapeClassifier3D

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
EMPTY_CHAMFER = math.sqrt(3)


def _grids(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, N, N, N) or (B, N, N, N) -> (B, N, N, N)."""
    return x[:, 0] if x.ndim == 5 else x


def iou(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-shape IoU (B,) of `pred >= threshold` and `target > 0.5`."""
    p = (_grids(pred) >= threshold).flatten(1)
    t = (_grids(target) > 0.5).flatten(1)
    inter = (p & t).sum(1).float()
    union = (p | t).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def iou_sweep(
    pred: torch.Tensor, target: torch.Tensor, thresholds: tuple[float, ...] = THRESHOLDS
) -> dict[str, float]:
    """Mean IoU at each threshold (`iou@0.3`, ...), the best (`iou_best`) and where
    (`iou_best_threshold`)."""
    out = {f"iou@{t:g}": iou(pred, target, t).mean().item() for t in thresholds}
    best = max(thresholds, key=lambda t: out[f"iou@{t:g}"])
    out["iou_best"], out["iou_best_threshold"] = out[f"iou@{best:g}"], float(best)
    return out


def surface(grid: torch.Tensor) -> torch.Tensor:
    """Filled voxels (N, N, N) bool with at least one empty 6-neighbour (outside counts as
    empty): (N, N, N) bool."""
    g = grid.bool()
    padded = F.pad(g[None, None].float(), (1, 1, 1, 1, 1, 1))[0, 0] > 0
    inner = torch.ones_like(g)
    n = g.shape[0]
    for axis in range(3):
        for shift in (0, 2):
            inner &= (
                padded.narrow(axis, shift, n)
                .narrow((axis + 1) % 3, 1, n)
                .narrow((axis + 2) % 3, 1, n)
            )
    return g & ~inner


def surface_points(grid: torch.Tensor) -> torch.Tensor:
    """The centres of the surface voxels of a grid (N, N, N), (P, 3) in units of the side."""
    n = grid.shape[0]
    return (surface(grid).nonzero().float() + 0.5) / n


def chamfer(pred: torch.Tensor, target: torch.Tensor) -> float:
    """The Chamfer distance (module docstring) between two bool grids (N, N, N)."""
    p, q = surface_points(pred), surface_points(target)
    if len(p) == 0 or len(q) == 0:
        return 0.0 if len(p) == len(q) else EMPTY_CHAMFER
    d = torch.cdist(p, q)  # (|p|, |q|)
    return 0.5 * (d.min(1).values.mean() + d.min(0).values.mean()).item()


def chamfer_batch(
    pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5
) -> torch.Tensor:
    """Per-shape Chamfer distances (B,) of `pred >= threshold` and `target > 0.5`."""
    p, t = _grids(pred) >= threshold, _grids(target) > 0.5
    return torch.tensor([chamfer(a, b) for a, b in zip(p, t, strict=True)])


def shape_scores(
    pred: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.5
) -> dict[str, float]:
    """The IoU sweep and the Chamfer distance at `threshold`, averaged over shapes."""
    out = iou_sweep(pred, target)
    out["chamfer"] = chamfer_batch(pred, target, threshold).mean().item()
    return out


def mean_shape(train: torch.Tensor) -> torch.Tensor:
    """The mean-shape baseline: the voxel-wise mean of the training grids (1, 1, N, N, N)."""
    g = _grids(train).float()
    return g.mean(0)[None, None]


def nearest_iou(
    samples: torch.Tensor, train: torch.Tensor, *, threshold: float = 0.5, chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sample, the IoU with its nearest training shape and that shape's index, (M,)
    each: intersections as one matrix product per chunk of samples."""
    a = (_grids(samples) >= threshold).flatten(1).float()
    b = (_grids(train) > 0.5).flatten(1).float()
    size_b = b.sum(1)
    best, index = [], []
    for s in range(0, len(a), chunk):
        part = a[s : s + chunk]
        inter = part @ b.T  # (m, t)
        union = part.sum(1, keepdim=True) + size_b[None] - inter
        scores = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        value, at = scores.max(1)
        best.append(value)
        index.append(at)
    return torch.cat(best), torch.cat(index)


def memorisation(
    samples: torch.Tensor,
    train: torch.Tensor,
    *,
    reference: torch.Tensor | None = None,
    copy_iou: float = 0.95,
) -> dict[str, float]:
    """Nearest-training-shape IoU of samples (`nearest_iou_mean`) and the fraction of copies
    (`copy_fraction`); with `reference` (held-out real shapes) the same for them, the level a
    model that generalises should show rather than exceed."""
    near, _ = nearest_iou(samples, train)
    out = {
        "nearest_iou_mean": near.mean().item(),
        "copy_fraction": (near >= copy_iou).float().mean().item(),
    }
    if reference is not None:
        ref, _ = nearest_iou(reference, train)
        out["reference_nearest_iou_mean"] = ref.mean().item()
        out["reference_copy_fraction"] = (ref >= copy_iou).float().mean().item()
    return out


@torch.no_grad()
def completion_table(
    predict: Callable[[torch.Tensor], torch.Tensor],
    datamodule: Any,
    *,
    split: str = "test",
    choose_on: str = "val",
    thresholds: tuple[float, ...] = THRESHOLDS,
    batch_size: int = 64,
) -> dict[str, dict[str, float]]:
    """Single-view completion against its baselines on the views of `split` of a voxel
    datamodule with a view condition (genlab.data.voxel_shapes): `predict` (views (B, C, H, W)
    -> occupancy (B, 1, N, N, N), e.g. a ShapeCompletion's `reconstruct3d`), the mean training
    shape, and the visual hull of each view's silhouette seen with its camera. Each row:
    `threshold` chosen on the `choose_on` split (the best IoU there), `iou` and `chamfer` on
    `split` at that threshold, and `iou_best` (the best threshold of `split` itself, an
    optimistic figure)."""
    train = datamodule.arrays("train")["x"]
    mean = mean_shape(train)

    def hull(data: dict[str, torch.Tensor]) -> torch.Tensor:
        sil = data["y"][:, -1] if data["y"].shape[1] == 2 else (data["y"] < 1).any(1)
        size = data["x"].shape[-1]
        return visual_hull(sil, data["cameras"], size=size, projection=datamodule.projection)[
            :, None
        ].float()

    def model(data: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([predict(v).float().cpu() for v in data["y"].split(batch_size)])

    predictors = {
        "model": model,
        "mean_shape": lambda data: mean.expand_as(data["x"]),
        "visual_hull": hull,
    }
    chosen, evaluated = datamodule.arrays(choose_on), datamodule.arrays(split)
    table = {}
    for name, fn in predictors.items():
        on_val = iou_sweep(fn(chosen), chosen["x"], thresholds)
        t = on_val["iou_best_threshold"]
        pred = fn(evaluated)
        row = iou_sweep(pred, evaluated["x"], thresholds)
        table[name] = {
            "threshold": t,
            "iou": iou(pred, evaluated["x"], t).mean().item(),
            "chamfer": chamfer_batch(pred, evaluated["x"], t).mean().item(),
            "iou_best": row["iou_best"],
        }
    return table


def train_shape_classifier(
    voxels: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    base_channels: int = 8,
) -> ShapeClassifier3D:
    """A small 3D classifier of shape categories trained on (voxels, labels) with Adam; seeded
    (init and batches), returned in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ShapeClassifier3D(
            num_classes=num_classes, size=voxels.shape[-1], base_channels=base_channels
        )
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x = voxels if voxels.ndim == 5 else voxels[:, None]
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)
        loss = F.cross_entropy(net(x[idx].float()), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def category_coverage(
    classifier: torch.nn.Module, samples: torch.Tensor, num_classes: int, *, threshold: float = 0.5
) -> dict[str, float]:
    """Which categories the classifier sees in samples (thresholded at `threshold`):
    `categories_hit` (the fraction of categories given at least one sample), `coverage` (the
    fraction given at least a quarter of an even share, n / (4 K)) and `class_entropy` (the
    entropy of the predicted categories over log K: 1 when even)."""
    x = (samples if samples.ndim == 5 else samples[:, None]) >= threshold
    pred = torch.cat([classifier(c.float()).argmax(1) for c in x.split(64)])
    counts = torch.bincount(pred, minlength=num_classes).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum() / math.log(num_classes)
    return {
        "categories_hit": (counts > 0).float().mean().item(),
        "coverage": (counts >= len(pred) / (4 * num_classes)).float().mean().item(),
        "class_entropy": entropy.item(),
    }
