"""Sample sets of any model that can sample (CanSample) or generate from conditions
(CanGenerate): drawn in batches with a fixed seed, written by the modality's writer as a grid
(one row per class or condition for conditional models) and, on request, one file per sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genlab.data.modality import Condition, Modality, image
from genlab.models.protocols import CanGenerate, CanSample
from genlab.utils.errors import GenlabError
from genlab.utils.run import write_json
from genlab.writers import writer_for


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
    """n samples (n, ...) drawn `batch_size` at a time with one seeded generator; `labels`
    (n, ...) condition them (None: the model's default labels). Models that only generate from
    a condition (CanGenerate) are given `labels` as that condition."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        y = labels[start : start + m].to(model.device) if labels is not None else None
        if isinstance(model, CanSample):
            x = model.sample(m, generator=gen, temperature=temperature, y=y)
        else:
            x = model.generate(y, generator=gen)
        out.append(x.float().cpu())
    return torch.cat(out)


def write_samples(
    model: Any,
    out_dir: Path,
    *,
    modality: Modality | None = None,
    condition: Condition | None = None,
    conditions: torch.Tensor | None = None,
    n: int = 64,
    n_per_row: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    save_individual: bool = False,
    classes: list[int] | None = None,
    grid_max: int = 256,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Write the grid (samples.png, plus the modality's files: samples.gif, samples_<i>.wav,
    ...) and, with `save_individual`, one file set per sample under `images/`, and
    samples.json; return that summary.

    Unconditional models: the grid shows the first `grid_max` of n samples. Class-conditional
    models: one row of `n_per_row` samples per class of `classes` (default: all), and the n
    files take the classes in turn. With `conditions` (m, ...) (captions, context clips,
    sketches): one row of `n_per_row` samples per condition, captioned; the files take the
    conditions in turn. The summary counts what was drawn: `n` in all, `n_grid` in the grid,
    `n_files` written to images/.
    """
    if not isinstance(model, (CanSample, CanGenerate)):
        raise GenlabError(
            f"{type(model).__name__} cannot sample (it has no sample_latent/decode/sample, nor "
            "generate): sampling needs a generative model, e.g. model=vae, cvae, wae or a GAN."
        )
    if isinstance(model, CanGenerate) and not isinstance(model, CanSample) and conditions is None:
        raise GenlabError(
            f"{type(model).__name__} generates from a condition (a source, a context clip, a "
            "caption): give conditions (text=..., or source=data for the data's own)."
        )
    if n < 1 or temperature <= 0:
        raise GenlabError(f"n={n} must be >= 1 and temperature={temperature} > 0.")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"temperature": temperature, "seed": seed}
    labels = x = None
    captions = None
    chosen = class_labels(model, classes) if conditions is None else None
    if conditions is not None:
        rows = conditions.repeat_interleave(n_per_row, dim=0)
        grid_x = draw(model, len(rows), temperature=temperature, seed=seed, labels=rows)
        captions = condition.describe(rows) if condition is not None else None
        summary["n"] = len(rows)
        summary["conditions"] = condition.describe(conditions) if condition is not None else None
        if save_individual:
            labels = conditions[torch.arange(n) % len(conditions)]
            x = draw(model, n, temperature=temperature, seed=seed + 1, labels=labels)
            summary["n"] += n
    elif chosen is None:
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
    modality = modality or image(*grid_x.shape[1:])  # what the data says, else images
    writer = writer_for(modality, captions)
    summary["modality"] = modality.kind
    files = writer.save(
        grid_x, out_dir / "samples", modality=modality, n_per_row=n_per_row, captions=captions
    )
    summary["grid"], summary["n_grid"] = str(out_dir / "samples.png"), len(grid_x)
    summary["files"] = [str(f) for f in files]
    if save_individual:
        folder = out_dir / "images"
        folder.mkdir(exist_ok=True)
        for i, sample in enumerate(x):  # type: ignore[arg-type]
            suffix = f"_c{int(labels[i])}" if chosen is not None and labels is not None else ""
            writer.save(sample[None], folder / f"{i:06d}{suffix}", modality=modality, n_per_row=1)
        summary["images_dir"], summary["n_files"] = str(folder), len(x)  # type: ignore[arg-type]
    write_json(out_dir / "samples.json", summary)
    return summary
