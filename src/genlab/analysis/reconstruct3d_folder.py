"""Single-view 3D reconstruction of given views with any model that reconstructs 3D
(CanReconstruct3D: ShapeHD's completion, genlab.models.voxel_models.ShapeCompletion): the
views come from files (genlab.data.view_files) or from the run's own data; each prediction is
written as a `.binvox` grid at a threshold, a render from several views and a turntable GIF
(genlab.writers.voxels_writer), with a report. The library behind
`python -m genlab.reconstruct3d`."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from genlab.data.binvox import write_binvox
from genlab.data.subsets import evenly_spaced
from genlab.data.view_files import describe
from genlab.metrics.shape_metrics import iou
from genlab.models.protocols import CanReconstruct3D
from genlab.utils.errors import GenlabError
from genlab.utils.run import write_json, write_text_atomic
from genlab.writers import voxels_writer

log = logging.getLogger(__name__)

SHAPES_DIR = "shapes"


def check_reconstructs(model: Any, ckpt_path: str = "") -> None:
    """Refuse, naming the checkpoint and its model, a model that cannot reconstruct 3D."""
    if not isinstance(model, CanReconstruct3D):
        raise GenlabError(
            f"ckpt_path={ckpt_path!r} holds a {type(model).__name__}, which cannot reconstruct "
            "a 3D shape from a view (it has no reconstruct3d(views)): genlab.reconstruct3d "
            "needs a single-view completion run (experiment=shape_completion_shapes, "
            "model=shape_completion or model=shapehd)."
        )


def view_kind(datamodule: Any) -> tuple[str, int]:
    """(sketch | rgb, image size) of the views the run's model takes, from its data's
    condition (an image of 2 channels, depth + silhouette, or 3, a render)."""
    condition = getattr(datamodule, "condition", None)
    shape = tuple(getattr(condition, "shape", ()))
    if getattr(condition, "kind", None) != "image" or len(shape) != 3 or shape[0] not in (2, 3):
        raise GenlabError(
            f"the run's data ({getattr(datamodule, 'name', type(datamodule).__name__)}) give "
            f"no single views (its condition is {condition}): genlab.reconstruct3d needs a run "
            "trained on data.condition=sketch or rgb."
        )
    return ("sketch" if shape[0] == 2 else "rgb"), int(shape[-1])


def data_views(
    datamodule: Any, split: str, n: int
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(names, views (n, C, H, W), true shapes (n, 1, N, N, N)) of `n` evenly spaced items of
    the run's `split` (names `<split>_<item>`)."""
    if split not in ("train", "val", "test"):
        raise GenlabError(f"split={split!r}: use train, val or test.")
    if n < 1:
        raise GenlabError(f"n={n} must be >= 1.")
    data = datamodule.dataset(split)
    if len(data) == 0:
        raise GenlabError(f"the run's {split} split is empty: use another split=.")
    index = evenly_spaced(len(data), n)
    items = [data[i] for i in index]
    names = [f"{split}_{i:04d}" for i in index]
    return names, torch.stack([y for _, y in items]), torch.stack([x for x, _ in items])


def _tiles(view: torch.Tensor, size: int) -> list[torch.Tensor]:
    """An input view (C, H, W) as RGB tiles (3, size, size) for display: a sketch as its depth
    and its silhouette in grey, a render as it is."""
    parts = [view] if view.shape[0] == 3 else [view[c : c + 1].expand(3, -1, -1) for c in (0, 1)]
    return [F.interpolate(p[None].float(), size=(size, size), mode="nearest")[0] for p in parts]


@torch.no_grad()
def reconstruct_views(
    model: Any,
    names: list[str],
    views: torch.Tensor,
    out_dir: Path,
    *,
    threshold: float = voxels_writer.THRESHOLD,
    batch_size: int = 32,
    files: list[list[str]] | None = None,
    truths: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Reconstruct `views` (B, C, H, W) and write, per input NAME, `shapes/NAME.binvox` (the
    occupancy >= `threshold`), `shapes/NAME.png` (the input, then the shape from the writer's
    PREVIEW_VIEWS; with `truths`, the true shape's too) and `shapes/NAME.gif` (a turntable).
    Everything is written under a temporary name and appears at once, or not at all."""
    if not 0 < threshold < 1:
        raise GenlabError(f"threshold={threshold} must be in (0, 1).")
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    probs = torch.cat(
        [
            model.reconstruct3d(views[s : s + batch_size].to(device)).float().cpu()
            for s in range(0, len(views), batch_size)
        ]
    )  # (b, 1, n, n, n)
    grids = (probs >= threshold).float()  # the writer's renders fill voxels >= 0.5
    out_dir = Path(out_dir)
    tmp = out_dir / f".{SHAPES_DIR}.{os.getpid()}.tmp"
    final = out_dir / SHAPES_DIR
    rows = []
    try:
        tmp.mkdir(parents=True)
        for i, name in enumerate(names):
            grid = grids[i]
            write_binvox(
                tmp / f"{name}.binvox", grid[0].bool().numpy(), translate=(-0.5, -0.5, -0.5)
            )
            shown = [grid[None]] if truths is None else [grid[None], truths[i : i + 1]]
            tiles = _tiles(views[i], voxels_writer.RENDER_SIZE)
            for shape in shown:
                tiles += list(voxels_writer.renders(shape, voxels_writer.PREVIEW_VIEWS)[0])
            save_image(
                make_grid(tiles, nrow=len(tiles), padding=2, pad_value=0.5), tmp / f"{name}.png"
            )
            first, *rest = voxels_writer.gif_frames(grid)
            first.save(
                tmp / f"{name}.gif",
                save_all=True,
                append_images=rest,
                duration=voxels_writer.GIF_FRAME_MS,
                loop=0,
            )
            filled = int(grid.sum().item())
            row = {
                "name": name,
                "files": (files or [[]] * len(names))[i],
                "filled_voxels": filled,
                "fill_fraction": filled / grid.numel(),
                "mean_occupancy": probs[i].mean().item(),
            }
            if truths is not None:
                row["iou"] = iou(probs[i : i + 1], truths[i : i + 1], threshold).item()
                row["true_fill_fraction"] = truths[i].mean().item()
            rows.append(row)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "model": type(model).__name__,
        "threshold": float(threshold),
        "grid_size": int(grids.shape[-1]),
        "shapes_dir": str(final),
        "inputs": rows,
    }


def write_report(
    out_dir: Path, summary: dict[str, Any], *, ckpt_path: str, kind: str, source: str
) -> Path:
    """`report.md` and `reconstruct3d.json` beside `shapes/`: the inputs, the fill fraction
    of each prediction at the threshold (and the IoU with the true shape for the run's own
    views). Should either fail, `shapes/` is removed: the folder holds all or nothing."""
    out_dir = Path(out_dir)
    t, n = summary["threshold"], summary["grid_size"]
    truth = any("iou" in r for r in summary["inputs"])
    inputs = "input (depth, silhouette)" if kind == "sketch" else "input (render)"
    views = ", ".join(f"azimuth {a:g}° elevation {e:g}°" for a, e in voxels_writer.PREVIEW_VIEWS)
    lines = [
        "# Single-view 3D reconstruction",
        "",
        f"- checkpoint: `{ckpt_path}` ({summary['model']}, {n}³ voxels)",
        f"- inputs: {source}; the model takes {describe(kind)}",
        f"- threshold: **{t:g}** (a voxel is filled where the predicted occupancy is ≥ {t:g})",
        f"- per input in `{SHAPES_DIR}/`: `NAME.binvox` (the filled voxels), `NAME.png` "
        f"({inputs}, then the prediction{' and the true shape' if truth else ''} from "
        f"{views}) and `NAME.gif` (a turntable at elevation 25°)",
        "",
        "| input | files | filled voxels | fill fraction | mean occupancy |"
        + (" IoU with the true shape | true fill fraction |" if truth else ""),
        "|---|---|---|---|---|" + ("---|---|" if truth else ""),
    ]
    for r in summary["inputs"]:
        files = ", ".join(f"`{Path(f).name}`" for f in r["files"]) or "(the run's data)"
        line = (
            f"| {r['name']} | {files} | {r['filled_voxels']} | {r['fill_fraction']:.4f} | "
            f"{r['mean_occupancy']:.4f} |"
        )
        if truth:
            line += f" {r['iou']:.3f} | {r['true_fill_fraction']:.4f} |"
        lines.append(line)
    if truth:
        mean = sum(r["iou"] for r in summary["inputs"]) / len(summary["inputs"])
        lines += ["", f"Mean IoU with the true shapes at {t:g}: **{mean:.3f}**."]
    lines.append("")
    for r in summary["inputs"]:
        stem = f"{SHAPES_DIR}/{r['name']}"
        lines += [
            f"## {r['name']}",
            "",
            f"![{r['name']}]({stem}.png) ![turntable]({stem}.gif)",
            "",
            f"[{r['name']}.binvox]({stem}.binvox)",
            "",
        ]
    report = out_dir / "report.md"
    try:
        write_text_atomic(report, "\n".join(lines))
        write_json(out_dir / "reconstruct3d.json", {**summary, "report": str(report)})
    except BaseException:
        shutil.rmtree(out_dir / SHAPES_DIR, ignore_errors=True)
        report.unlink(missing_ok=True)
        raise
    return report
