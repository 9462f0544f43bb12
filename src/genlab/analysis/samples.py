"""Sample sets of any model that can sample (CanSample): drawn in batches with a fixed seed,
written as a grid (one row per class for conditional models) and as one PNG per sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from genlab.models.protocols import CanSample
from genlab.utils.errors import GenlabError
from genlab.utils.run import write_json


def class_labels(model: Any, classes: list[int] | None) -> list[int] | None:
    """The classes to sample for a conditional model (all of them by default), else None."""
    num = int(model.num_classes)
    if not num:
        return None
    chosen = list(range(num)) if classes is None else [int(c) for c in classes]
    bad = [c for c in chosen if not 0 <= c < num]
    if bad:
        raise GenlabError(f"classes={bad} are not classes of this model: use 0..{num - 1}.")
    return chosen


@torch.no_grad()
def draw(
    model: Any,
    n: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    batch_size: int = 500,
) -> torch.Tensor:
    """n samples (n, C, H, W) in [0, 1], drawn `batch_size` at a time with one seeded
    generator; `labels` (n,) condition them (None: the model's default labels)."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        y = labels[start : start + m].to(model.device) if labels is not None else None
        out.append(model.sample(m, generator=gen, temperature=temperature, y=y).float().cpu())
    return torch.cat(out).clamp(0, 1)


def write_samples(
    model: Any,
    out_dir: Path,
    *,
    n: int = 64,
    n_per_row: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    save_individual: bool = False,
    classes: list[int] | None = None,
    grid_max: int = 256,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Write samples.png (and images/NNNNNN.png for each of n samples with
    `save_individual`) and samples.json; return that summary.

    Unconditional models: the grid shows the first `grid_max` of n samples. Conditional
    models: the grid has one row of `n_per_row` samples per class of `classes` (default: all),
    and the n files take the classes in turn. The summary counts what was drawn: `n` in all,
    `n_grid` in the grid, `n_files` written to images/.
    """
    if not isinstance(model, CanSample):
        raise GenlabError(
            f"{type(model).__name__} cannot sample (it has no sample_latent/decode/sample): "
            "sampling needs a generative model, e.g. model=vae, cvae, wae or a GAN."
        )
    if n < 1 or temperature <= 0:
        raise GenlabError(f"n={n} must be >= 1 and temperature={temperature} > 0.")
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = class_labels(model, classes)
    summary: dict[str, Any] = {"temperature": temperature, "seed": seed}
    labels = x = None
    if chosen is None:
        x = draw(model, n, temperature=temperature, seed=seed, batch_size=batch_size)
        grid_x = x[:grid_max]
        summary["n"] = n
    else:
        # grid: one row of n_per_row samples per class; files: n samples, classes in turn
        rows = torch.tensor(chosen).repeat_interleave(n_per_row)
        grid_x = draw(model, len(rows), temperature=temperature, seed=seed, labels=rows)
        summary["n"] = len(rows)
        if save_individual:
            labels = torch.tensor(chosen)[torch.arange(n) % len(chosen)]
            x = draw(model, n, temperature=temperature, seed=seed + 1, labels=labels)
            summary["n"] += n
        summary["classes"] = chosen
    grid = make_grid(grid_x, nrow=n_per_row, padding=2, pad_value=1.0)
    save_image(grid, out_dir / "samples.png")
    summary["grid"], summary["n_grid"] = str(out_dir / "samples.png"), len(grid_x)
    if save_individual:
        folder = out_dir / "images"
        folder.mkdir(exist_ok=True)
        for i, img in enumerate(x):  # type: ignore[arg-type]
            suffix = f"_c{int(labels[i])}" if labels is not None else ""
            save_image(img, folder / f"{i:06d}{suffix}.png")
        summary["images_dir"], summary["n_files"] = str(folder), len(x)  # type: ignore[arg-type]
    write_json(out_dir / "samples.json", summary)
    return summary
