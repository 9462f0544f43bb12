"""The `denoising` task: how much an autoencoder cleans corrupted test images.

For each noise kind and level, the test images are corrupted with a fixed seed and the
model reconstructs them; PSNR (dB, data range 1, pooled over every pixel of the split) of the
noisy input and of the denoised output, both against the clean images, go to a table
(`denoising.json`, `denoising.md`) and one PNG grid per kind (`denoising_<kind>.png`: a row of
clean images, then a noisy row and a denoised row per level).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset
from torchvision.utils import save_image

from genlab.analysis.tables import markdown_table
from genlab.data.corruptions import corruption_at
from genlab.data.subsets import spread_batch
from genlab.evaluation.context import EvalContext, accepts
from genlab.models.protocols import CanReconstruct
from genlab.utils.errors import GenlabError

DEFAULT_NOISE = {"gaussian": [0.1, 0.3, 0.5], "masking": [0.25, 0.5], "salt_pepper": [0.1, 0.2]}


def psnr_db(sse: float, n_values: int) -> float:
    """PSNR in dB of a pooled squared error over `n_values` values with data range 1."""
    mse = sse / n_values
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def _test_split(ctx: EvalContext, max_images: int | None) -> Any:
    data = ctx.datamodule.dataset("test")  # type: ignore[attr-defined]
    if max_images is not None and max_images < len(data):
        data = Subset(data, range(max_images))
    return data


@torch.no_grad()
def denoise_scores(
    model: CanReconstruct,
    data: Any,
    kind: str,
    level: float,
    *,
    seed: int,
    device: str,
    batch_size: int = 256,
) -> dict[str, float]:
    """PSNR (dB) of noisy inputs and of their reconstructions against the clean images."""
    corrupt = corruption_at(kind, level)
    gen = torch.Generator().manual_seed(seed)
    sse_noisy = sse_denoised = 0.0
    n_values = 0
    for x, y in DataLoader(data, batch_size=batch_size):
        noisy = corrupt(x, generator=gen)  # noise drawn on the CPU: the same on every device
        denoised = model.reconstruct(noisy.to(device), torch.as_tensor(y).to(device)).cpu()
        sse_noisy += (noisy - x).pow(2).sum().item()
        sse_denoised += (denoised - x).pow(2).sum().item()
        n_values += x.numel()
    noisy_db, denoised_db = psnr_db(sse_noisy, n_values), psnr_db(sse_denoised, n_values)
    return {
        "kind": kind,
        "level": float(level),
        "noisy_psnr_db": noisy_db,
        "denoised_psnr_db": denoised_db,
        "gain_db": denoised_db - noisy_db,
    }


def summary_table(rows: Sequence[Mapping[str, Any]], clean_db: float) -> str:
    """denoising.md: one row per noise kind and level."""
    table = markdown_table(
        ["noise", "level", "noisy input PSNR (dB)", "denoised PSNR (dB)", "gain (dB)"],
        [
            (
                r["kind"],
                f"{r['level']:g}",
                f"{r['noisy_psnr_db']:.2f}",
                f"{r['denoised_psnr_db']:.2f}",
                f"{r['gain_db']:+.2f}",
            )
            for r in rows
        ],
        align="lrrrr",
    )
    return table + f"\nReconstruction of the clean test images: {clean_db:.2f} dB.\n"


@accepts("image")
def denoising(
    ctx: EvalContext,
    *,
    noise: Mapping[str, Sequence[float]] | None = None,
    n_grid: int = 8,
    seed: int = 0,
    max_images: int | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Noisy-input vs denoised-output PSNR on the test split for each `noise` kind and level.

    `noise` maps a kind (gaussian: sigma, masking / salt_pepper: fraction, dropout: p) to its
    levels. Writes denoising.json, denoising.md and denoising_<kind>.png under ctx.out_dir.
    """
    model = ctx.model
    if not isinstance(model, CanReconstruct):
        raise GenlabError(
            f"tasks=[denoising] needs a model that reconstructs images; {type(model).__name__} "
            "has no reconstruct(x). Evaluate an autoencoder checkpoint (model=denoising_ae)."
        )
    noise = dict(noise) if noise else DEFAULT_NOISE
    data = _test_split(ctx, max_images)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)

    clean_sse, n_values = 0.0, 0
    with torch.no_grad():
        for x, y in DataLoader(data, batch_size=batch_size):
            x_hat = model.reconstruct(x.to(ctx.device), torch.as_tensor(y).to(ctx.device))
            clean_sse += (x_hat.cpu() - x).pow(2).sum().item()
            n_values += x.numel()
    clean_db = psnr_db(clean_sse, n_values)

    clean_grid, grid_y = spread_batch(data, n_grid)  # (n, c, h, w), labels
    rows, files = [], []
    for k_i, (kind, levels) in enumerate(noise.items()):
        grid_rows = [clean_grid]
        for l_i, level in enumerate(levels):
            setting_seed = seed + 1000 * k_i + l_i
            rows.append(
                denoise_scores(
                    model,  # type: ignore[arg-type]
                    data,
                    kind,
                    level,
                    seed=setting_seed,
                    device=ctx.device,
                    batch_size=batch_size,
                )
            )
            gen = torch.Generator().manual_seed(setting_seed)
            noisy = corruption_at(kind, level)(clean_grid, generator=gen)
            with torch.no_grad():
                denoised = model.reconstruct(noisy.to(ctx.device), grid_y.to(ctx.device)).cpu()
            grid_rows += [noisy.clamp(0, 1), denoised]
        path = ctx.out_dir / f"denoising_{kind}.png"
        save_image(torch.cat(grid_rows), path, nrow=len(clean_grid), padding=2, pad_value=1.0)
        files.append(path.name)

    result = {
        "clean_reconstruction_psnr_db": clean_db,
        "n_images": len(data),
        "results": rows,
        "files": [*files, "denoising.json", "denoising.md"],
    }
    (ctx.out_dir / "denoising.json").write_text(json.dumps(result, indent=2))
    (ctx.out_dir / "denoising.md").write_text(summary_table(rows, clean_db))
    return result
