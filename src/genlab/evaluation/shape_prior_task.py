"""The `shape_prior` task: what a voxel shape prior (a model that samples voxel grids: the voxel
GAN, the voxel VAE) draws, seen three ways.

    python -m genlab.eval ckpt_path=RUN/checkpoints/last.ckpt tasks=[shape_prior]

- **Renders from several views**: the first `n_render` samples, each a row of `views`
  (azimuth, elevation) ray casts (`shape_prior_views.png`), and the voxels writer's files
  (`shape_prior_samples.png`, turntables, `.binvox`);
- **memorisation**: each sample's IoU with its nearest training shape (`nearest_iou_mean`,
  and `copy_fraction`, the share at or above `copy_iou`), beside the same numbers for the real
  shapes of `reference_split`, the level a prior that generalises shows rather than exceeds
  (genlab.metrics.shape_metrics.memorisation); `shape_prior_nearest.png` shows samples next
  to their nearest training shapes, four pairs a row;
- **category coverage**: a small 3D classifier trained on the training shapes' categories
  (`classifier_steps` Adam steps, seeded; its accuracy on `reference_split` is reported) names
  the category of each sample: the share of categories hit, those given at least a quarter of
  an even share (`coverage`), the entropy of the predicted categories over log K, the count
  per category; the same for the reference shapes.

Writes shape_prior.json and the images above; returns the numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from genlab.data.modality import voxels
from genlab.evaluation.context import EvalContext, accepts
from genlab.metrics.shape_metrics import (
    category_coverage,
    memorisation,
    nearest_iou,
    train_shape_classifier,
)
from genlab.models.protocols import CanSample
from genlab.utils.errors import GenlabError
from genlab.utils.run import write_json
from genlab.writers import voxels_writer

log = logging.getLogger(__name__)


def _views(views: Sequence[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    out = tuple((float(v[0]), float(v[1])) for v in views)
    if not out or any(not -89.9 < el < 89.9 for _, el in out):
        raise GenlabError(
            f"tasks.shape_prior.views={views!r}: give [azimuth, elevation] pairs in degrees, "
            "elevations inside (-89.9, 89.9)."
        )
    return out


@torch.no_grad()
def draw(model: Any, n: int, *, seed: int, batch_size: int, device: str) -> torch.Tensor:
    """n samples of a CanSample model (n, 1, N, N, N) on the CPU, seeded."""
    gen = torch.Generator(device=device).manual_seed(seed)
    parts = [
        model.sample(min(batch_size, n - i), generator=gen).float().cpu()
        for i in range(0, n, batch_size)
    ]
    return torch.cat(parts)


def view_grid(
    x: torch.Tensor, views: tuple[tuple[float, float], ...], image_size: int = 64
) -> torch.Tensor:
    """One row per shape of x (B, 1, N, N, N), one column per view: (3, H, W)."""
    r = voxels_writer.renders(x, views, image_size=image_size)  # (b, v, 3, h, w)
    return make_grid(r.flatten(0, 1), nrow=len(views), padding=2, pad_value=0.5)


@accepts("voxels")
def shape_prior(
    ctx: EvalContext,
    *,
    n_samples: int = 256,
    n_render: int = 8,
    views: Sequence[Sequence[float]] = ((30.0, 20.0), (120.0, 20.0), (210.0, 20.0), (300.0, 60.0)),
    reference_split: str = "test",
    copy_iou: float = 0.95,
    classifier_steps: int = 300,
    classifier_seed: int = 0,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    model, dm = ctx.model, ctx.datamodule
    if not isinstance(model, CanSample):
        raise GenlabError(
            f"tasks=[shape_prior] evaluates a shape prior's samples, and {type(model).__name__}"
            " does not sample: use the checkpoint of model=voxel_gan or model=voxel_vae."
        )
    if n_samples < 1 or n_render < 0:
        raise GenlabError(
            f"tasks.shape_prior.n_samples={n_samples} must be >= 1 and n_render={n_render} >= 0."
        )
    views_ = _views(views)
    samples = draw(model, n_samples, seed=seed, batch_size=batch_size, device=ctx.device)
    train, ref = dm.arrays("train"), dm.arrays(reference_split)
    if samples.shape[1:] != train["x"].shape[1:]:
        raise GenlabError(
            f"the model draws grids {tuple(samples.shape[1:])} but the data's are "
            f"{tuple(train['x'].shape[1:])}: evaluate on the data the prior was trained on."
        )
    out = ctx.out_dir
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"n_samples": n_samples, "reference_split": reference_split}
    result["memorisation"] = memorisation(
        samples, train["x"], reference=ref["x"], copy_iou=copy_iou
    )
    k = int(dm.num_classes)
    classifier = train_shape_classifier(
        train["x"], train["labels"], k, steps=classifier_steps, seed=classifier_seed
    )
    with torch.no_grad():
        ref_pred = torch.cat([classifier(c.float()).argmax(1) for c in ref["x"].split(64)])
    names = list(getattr(dm, "classes", ())) or [str(i) for i in range(k)]

    def counts(x: torch.Tensor) -> dict[str, int]:
        with torch.no_grad():
            pred = torch.cat([classifier((c >= 0.5).float()).argmax(1) for c in x.split(64)])
        return dict(zip(names, torch.bincount(pred, minlength=k).tolist(), strict=True))

    result["classifier"] = {
        "steps": classifier_steps,
        "seed": classifier_seed,
        f"{reference_split}_accuracy": (ref_pred == ref["labels"]).float().mean().item(),
    }
    result["coverage"] = {**category_coverage(classifier, samples, k), "counts": counts(samples)}
    result["reference_coverage"] = {
        **category_coverage(classifier, ref["x"], k),
        "counts": counts(ref["x"]),
    }
    if n_render:
        shown = samples[:n_render]
        save_image(view_grid(shown, views_), out / "shape_prior_views.png")
        _, nearest = nearest_iou(shown, train["x"])
        pairs = torch.stack([shown, train["x"][nearest].float()], dim=1).flatten(0, 1)
        side = voxels_writer.renders(pairs, views_[:1])[:, 0]  # (2 n, 3, h, w)
        nearest_png = out / "shape_prior_nearest.png"
        # pairs (sample, its nearest training shape), four pairs a row
        save_image(make_grid(side, nrow=8, padding=2, pad_value=0.5), nearest_png)
        voxels_writer.save(
            shown, out / "shape_prior_samples", modality=voxels(shown.shape[-1]), n_per_row=4
        )
    write_json(out / "shape_prior.json", result)
    log.info(
        "shape prior: nearest training IoU %.3f (held-out real %.3f), coverage %.2f",
        result["memorisation"]["nearest_iou_mean"],
        result["memorisation"]["reference_nearest_iou_mean"],
        result["coverage"]["coverage"],
    )
    return result
