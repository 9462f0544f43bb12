"""The `report` task: one folder per checkpoint that reads like a lab notebook.

    python -m genlab.eval ckpt_path=RUN/checkpoints/last.ckpt tasks=[test,generation,report]

writes `report/report.md` with, for whatever the model can do: a sample grid (`sample`),
reconstructions (`reconstruct`), an interpolation strip (between encoded test images, or
between prior draws), a 2-D PCA scatter of encoded test images coloured by label
(`encode_latent`), training curves from the run's `csv/metrics.csv`, reconstruction metrics,
and the results of the tasks that ran before it (test, generation, ...) from metrics.json,
provenance included. What does not apply to a model is listed with the reason.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from genlab.analysis.grids import reconstruction_grid
from genlab.analysis.latent_space import encode_dataset, interpolation_source, interpolations
from genlab.analysis.plots import pca_2d, scatter_plot
from genlab.analysis.tables import markdown_table
from genlab.data.subsets import spread_batch
from genlab.evaluation.context import EvalContext, accepts
from genlab.metrics.reconstruction_metrics import reconstruction_metrics
from genlab.models.protocols import (
    CanDecode,
    CanEncode,
    CanReconstruct,
    CanSample,
    CanTranslate,
    HasPrior,
)

log = logging.getLogger(__name__)


def run_dir_candidates(ctx: EvalContext) -> list[Path]:
    found = []
    out_dir = ctx.run_cfg.get("paths", {}).get("output_dir") if ctx.run_cfg is not None else None
    if out_dir:
        found.append(Path(str(out_dir)))
    if "run_dir" in ctx.extra:
        found.append(Path(ctx.extra["run_dir"]))
    found.append(ctx.out_dir.parent.parent)  # RUN/eval/<time>
    return found


def read_csv_metrics(path: Path) -> dict[str, list[tuple[float, float]]]:
    """{metric: [(step, value), ...]} from a Lightning CSVLogger file."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            step = float(row.get("step") or "nan")
            for key, value in row.items():
                if key in ("epoch", "step") or value in (None, ""):
                    continue
                try:
                    series.setdefault(key, []).append((step, float(value)))
                except ValueError:
                    continue
    return series


def plot_curves(
    series: dict[str, list[tuple[float, float]]], path: Path, max_panels: int = 12
) -> list[str]:
    """One panel per quantity (train and val of the same name together); returns panel names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[str]] = {}
    for key in sorted(series):
        if key.startswith(("test/", "lr-")) or key.split("/")[-1] in ("step", "epoch"):
            continue
        name = key.split("/", 1)[-1].removesuffix("_step").removesuffix("_epoch")
        groups.setdefault(name, []).append(key)
    names = sorted(groups)[:max_panels]
    if not names:
        return []
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for key in groups[name]:
            pts = sorted(series[key])
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                label=key,
                marker="." if len(pts) < 30 else None,
            )
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return names


def _table(values: dict[str, Any]) -> list[str]:
    rows = [
        (f"`{key}`", f"{v:.6g}" if isinstance(v, (int, float)) else v)
        for key, v in sorted(values.items())
    ]
    return markdown_table(["metric", "value"], rows).splitlines()


def _task_sections(previous: dict[str, Any]) -> list[str]:
    """Markdown for the results of the tasks that ran before the report."""
    lines: list[str] = []
    order = sorted(previous, key=lambda t: (t != "test", t))  # the model's own metrics first
    for task in order:
        result = previous[task]
        if task in ("report", "ckpt_path", "data") or not isinstance(result, dict):
            continue
        lines += ["", f"### Task `{task}`", ""]
        measured = {k: v for k, v in result.items() if isinstance(v, dict) and "values" in v}
        flat = {k: v for k, v in result.items() if isinstance(v, (int, float, str))}
        if flat:
            lines += _table(flat)
        for source, m in measured.items():
            lines += ["", f"**{source}**", ""] + _table(m["values"])
            lines += [
                "",
                "<details><summary>provenance</summary>",
                "",
                "```json",
                json.dumps(m.get("provenance", {}), indent=1, sort_keys=True, default=str),
                "```",
                "</details>",
            ]
    return lines


@torch.no_grad()
@accepts("image")
def report(
    ctx: EvalContext,
    *,
    split: str = "test",
    n_samples: int = 64,
    n_per_row: int = 8,
    n_reconstructions: int = 32,
    interpolation_pairs: int = 4,
    interpolation_steps: int = 10,
    interpolation_mode: str = "auto",
    scatter_n: int = 1000,
    metric_images: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Write RUN/eval/<time>/report/report.md and its figures; return what was made."""
    model, data = ctx.model, ctx.datamodule.dataset(split)
    model.eval()
    out = ctx.out_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    skipped: dict[str, str] = {}
    notes: dict[str, Any] = {}
    name = type(model).__name__

    if isinstance(model, CanSample):
        gen = torch.Generator(device=model.device).manual_seed(seed)
        x = model.sample(n_samples, generator=gen)
        save_image(
            make_grid(x.float().clamp(0, 1).cpu(), nrow=n_per_row, padding=2, pad_value=1.0),
            out / "samples.png",
        )
        made["samples"] = "samples.png"
    else:
        skipped["samples"] = f"{name} has no sample()"

    recon_metrics: dict[str, float] = {}
    if isinstance(model, CanReconstruct):
        x, y = spread_batch(data, n_reconstructions)
        x = x.to(model.device)
        x_hat = model.reconstruct(x, y.to(model.device))
        save_image(
            reconstruction_grid(x.cpu(), x_hat.cpu(), n_per_row), out / "reconstructions.png"
        )
        made["reconstructions"] = "reconstructions.png"
        recon_metrics = reconstruction_metrics(model, data, n=metric_images)
    else:
        skipped["reconstructions"] = f"{name} has no reconstruct()"

    if isinstance(model, CanTranslate):
        from genlab.analysis.grids import translation_triplets, triplet_grid

        columns, names = translation_triplets(
            model, ctx.datamodule, split, n_reconstructions // 2, baselines=True
        )
        save_image(triplet_grid(columns, 2), out / "translations.png")
        made["translations"] = "translations.png"
        notes["translations"] = "Columns: " + " | ".join(names) + "."
    else:
        skipped["translations"] = f"{name} does not translate images (no translate())"

    if isinstance(model, HasPrior) or (
        isinstance(model, CanEncode) and isinstance(model, CanDecode)
    ):
        source = interpolation_source(model)
        mode = interpolation_mode
        if mode == "auto":
            mode = "linear" if source == "data" else "spherical"
        (grid,) = interpolations(
            model,
            [mode],
            source=source,
            data=data,
            pairs=interpolation_pairs,
            steps=interpolation_steps,
            seed=seed,
        ).values()
        save_image(grid, out / "interpolation.png")
        made["interpolation"] = "interpolation.png"
        between = (
            "encoded test images (ends: the real images)" if source == "data" else ("prior draws")
        )
        notes["interpolation"] = f"{mode} interpolation between {between}"
    else:
        skipped["interpolation"] = f"{name} has neither encode_latent() nor sample_latent()"

    if isinstance(model, CanEncode):
        _, labels, codes = encode_dataset(model, data, max_images=scatter_n)
        points, var = pca_2d(codes)
        title = (
            f"{len(codes)} {split} codes, PCA of {codes.shape[1]}-d "
            f"({100 * sum(var):.0f}% of variance)"
        )
        scatter_plot(
            {title: points}, labels if labels.ndim == 1 else None, out / "latent_scatter.png"
        )
        made["latent_scatter"] = "latent_scatter.png"
        notes["latent_scatter_variance"] = var
    else:
        skipped["latent_scatter"] = f"{name} has no encoder (encode_latent())"

    metrics_csv = next(
        (
            d / "csv" / "metrics.csv"
            for d in run_dir_candidates(ctx)
            if (d / "csv" / "metrics.csv").is_file()
        ),
        None,
    )
    if metrics_csv is not None:
        panels = plot_curves(read_csv_metrics(metrics_csv), out / "curves.png")
        if panels:
            made["curves"] = "curves.png"
            notes["curves_from"] = str(metrics_csv)
        else:
            skipped["curves"] = f"{metrics_csv} holds no train/val metrics"
    else:
        skipped["curves"] = (
            "no csv/metrics.csv in the run directory (train with logger=csv or many)"
        )

    # grids a run wrote at the end of each of its stages (images/stage_*.png: progressive
    # growing), copied beside the report
    stage_grids = next(
        (
            sorted((d / "images").glob("stage_*.png"))
            for d in run_dir_candidates(ctx)
            if list((d / "images").glob("stage_*.png"))
        ),
        [],
    )
    for grid in stage_grids:
        shutil.copyfile(grid, out / grid.name)

    metrics_file = ctx.out_dir / "metrics.json"
    previous = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    target = ctx.run_cfg.model.get("_target_", name) if ctx.run_cfg is not None else name
    lines = [
        f"# Report: {name}",
        "",
        f"- checkpoint: `{previous.get('ckpt_path', '?')}`",
        f"- model: `{target}`",
        f"- data: `{getattr(ctx.datamodule, 'name', '?')}`, split `{split}`, image shape "
        f"{list(getattr(ctx.datamodule, 'image_shape', []))}",
    ]
    titles = {
        "samples": "Samples (fixed seed)",
        "reconstructions": "Reconstructions (rows: inputs, then reconstructions)",
        "translations": "Translations (input | trivial baselines | output | target)",
        "interpolation": "Interpolation",
        "latent_scatter": "Latent space (PCA, coloured by label)",
        "curves": "Training curves",
    }
    for key, title in titles.items():
        if key in made:
            lines += ["", f"## {title}", ""]
            if key in notes:
                lines += [f"{notes[key]}", ""]
            lines.append(f"![{key}]({made[key]})")
    if stage_grids:
        lines += [
            "",
            "## Stages",
            "",
            "Samples at the end of each stage of training (upsampled to the final size).",
            "",
        ]
        lines += [f"![{grid.stem}]({grid.name})" for grid in stage_grids]
    if recon_metrics:
        lines += ["", f"## Reconstruction metrics ({metric_images} {split} images)", ""]
        lines += _table(recon_metrics)
    task_lines = _task_sections(previous)
    if task_lines:
        lines += ["", "## Results of the other evaluation tasks"] + task_lines
    if skipped:
        lines += ["", "## Not applicable", ""] + [f"- {k}: {v}" for k, v in skipped.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    log.info("report written to %s", out / "report.md")
    return {
        "report": str(out / "report.md"),
        "figures": made,
        "skipped": skipped,
        "reconstruction": recon_metrics,
        "stages": [grid.name for grid in stage_grids],
        "notes": {k: v for k, v in notes.items() if k != "interpolation"},
    }
