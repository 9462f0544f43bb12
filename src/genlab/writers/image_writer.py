"""Images: a grid PNG (the preview), W&B Images of the same pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from genlab.data.modality import Modality


def preview(x: torch.Tensor, *, modality: Modality, n_per_row: int = 8) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> one grid (3 or C, H', W'), 2 px white padding."""
    return make_grid(
        x.detach().float().clamp(0, 1).cpu(), nrow=n_per_row, padding=2, pad_value=1.0
    )


def save(
    x: torch.Tensor,
    stem: Path,
    *,
    modality: Modality,
    n_per_row: int = 8,
    captions: list[str] | None = None,
) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    path = stem.with_suffix(".png")
    save_image(preview(x, modality=modality, n_per_row=n_per_row), path)
    return [path]


def media(x: torch.Tensor, *, modality: Modality, captions: list[str] | None = None) -> list[Any]:
    import wandb

    from genlab.utils.loggers import to_uint8

    return [
        wandb.Image(to_uint8(img).numpy(), caption=(captions or [None] * len(x))[i])
        for i, img in enumerate(x.detach().float().clamp(0, 1).cpu())
    ]
