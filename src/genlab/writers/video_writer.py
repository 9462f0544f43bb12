"""Clips: strips of frames as the PNG preview, animated GIFs (Pillow), W&B Videos.

A batch of clips is (B, T, C, H, W) in [0, 1] (genlab.data.modality). `save`, `preview` and
`media` are the writer contract of genlab.writers; `strips` and `save_prediction` show a
prediction against its context and truth (context, prediction and truth rows per clip), for
the video callbacks, eval and genlab.sample.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

from genlab.data.modality import Modality

PAD = 2  # pixels between frames
PAD_VALUE = 0.5  # grey, so frames on a black background stay apart


def _rows(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """Rows of frames (T_i, C, H, W) -> (len * width, C, H, W), each row padded with blank
    frames to `width` frames."""
    out = []
    for row in rows:
        row = row.detach().float().clamp(0, 1).cpu()
        if len(row) < width:
            row = torch.cat([row, row.new_zeros(width - len(row), *row.shape[1:])])
        out.append(row[:width])
    return torch.cat(out)


def preview(x: torch.Tensor, *, modality: Modality, n_per_row: int = 8) -> torch.Tensor:
    """(B, T, C, H, W) -> one image (3 or C, H', W'): each clip a row of its T frames
    (`n_per_row` is the images' option; a clip's row always holds all its frames)."""
    t = x.shape[1]
    return make_grid(_rows(list(x), t), nrow=t, padding=PAD, pad_value=PAD_VALUE)


def strips(context: torch.Tensor, prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """One image (3 or C, H', W') with, for each clip, a row of its context frames, one row
    per predicted future (prediction (B, T_f, ...) or K samples (K, B, T_f, ...)) and a row of
    the true future; rows are padded with black frames to the longest."""
    preds = prediction if prediction.ndim == 6 else prediction.unsqueeze(0)  # (k, b, t, ...)
    width = max(context.shape[1], truth.shape[1])
    rows = []
    for i in range(len(context)):
        rows += [context[i], *(p[i] for p in preds), truth[i]]
    return make_grid(_rows(rows, width), nrow=width, padding=PAD, pad_value=PAD_VALUE)


def to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """(T, C, H, W) in [0, 1] -> uint8 (T, H, W) or (T, H, W, 3)."""
    x = frames.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    x = x.permute(0, 2, 3, 1).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def gif_bytes(frames: torch.Tensor, fps: float) -> bytes:
    """An animated GIF (looping) of frames (T, C, H, W) in [0, 1]."""
    images = [Image.fromarray(f) for f in to_uint8_frames(frames)]
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(1, round(1000 / fps)),
        loop=0,
    )
    return buf.getvalue()


def _grid_over_time(clips: torch.Tensor, n_per_row: int) -> torch.Tensor:
    """Clips (B, T, C, H, W) -> (T, C', H', W'): at each time step, the grid of all clips'
    frames (the frames of one animation)."""
    return torch.stack(
        [
            make_grid(
                clips[:, t].detach().float().clamp(0, 1).cpu(),
                nrow=n_per_row,
                padding=PAD,
                pad_value=PAD_VALUE,
            )
            for t in range(clips.shape[1])
        ]
    )


def save(
    x: torch.Tensor,
    stem: Path,
    *,
    modality: Modality,
    n_per_row: int = 8,
    captions: list[str] | None = None,
) -> list[Path]:
    """`stem.png` (every clip a row of frames) and `stem.gif` (the clips playing side by side,
    `n_per_row` to a row, at the modality's frame rate)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, gif = stem.with_suffix(".png"), stem.with_suffix(".gif")
    save_image(preview(x, modality=modality), png)
    gif.write_bytes(gif_bytes(_grid_over_time(x, n_per_row), modality.rate or 4.0))
    return [png, gif]


def save_prediction(
    context: torch.Tensor,
    prediction: torch.Tensor,
    truth: torch.Tensor,
    stem: Path,
    *,
    fps: float = 4.0,
) -> list[Path]:
    """`stem.png`: the strips (context, prediction(s), truth rows per clip); `stem.gif`: each
    clip's true clip beside its predicted one(s), the context playing in both, then the
    future (one row per clip)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, gif = stem.with_suffix(".png"), stem.with_suffix(".gif")
    save_image(strips(context, prediction, truth), png)
    preds = prediction if prediction.ndim == 6 else prediction.unsqueeze(0)  # (k, b, t, ...)
    real = torch.cat([context, truth], dim=1)  # (b, t_c + t_f, ...)
    made = [torch.cat([context, p], dim=1) for p in preds]
    columns = torch.stack([real, *made], dim=1)  # (b, 1 + k, t, c, h, w)
    clips = columns.flatten(0, 1)  # clip-major: one row per clip
    gif.write_bytes(gif_bytes(_grid_over_time(clips, columns.shape[1]), fps))
    return [png, gif]


def media(x: torch.Tensor, *, modality: Modality, captions: list[str] | None = None) -> list[Any]:
    """One wandb.Video (a GIF made here with Pillow: no moviepy needed) per clip."""
    import wandb

    fps = modality.rate or 4.0
    names = captions or [None] * len(x)
    return [
        wandb.Video(io.BytesIO(gif_bytes(clip, fps)), caption=names[i], format="gif")
        for i, clip in enumerate(x)
    ]
