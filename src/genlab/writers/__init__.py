"""One writer per modality: samples -> files in the run directory, a preview image for any
logger, and media for W&B. Callbacks, eval tasks, genlab.sample and the report call
`writer_for(modality)` and never assume images (genlab.data.modality says what a sample is).

A writer module (`genlab.writers.<kind>_writer`) defines three functions:

- `save(x, stem, *, modality, n_per_row=8, captions=None) -> list[Path]`: write the batch
  `x` (B, *modality.shape) as files named from `stem` (a path without suffix, e.g.
  RUN/images/samples_e0003): `stem.png` always (the preview), plus the modality's own
  formats (`stem.gif` for clips, `stem_<i>.wav` for sounds, ...); returns the files written.
- `preview(x, *, modality, n_per_row=8) -> Tensor`: one (3, H, W) float image in [0, 1]
  showing the batch (a grid of images, strips of frames, spectrograms, voxel renders), which
  every logger can show and every PNG on disk holds.
- `media(x, *, modality, captions=None) -> list`: W&B objects (wandb.Image, wandb.Video,
  wandb.Audio, wandb.Object3D) for the batch, imported lazily.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from genlab.data.modality import KINDS, Modality

MODULES = {kind: f"genlab.writers.{kind}_writer" for kind in KINDS}


def writer_for(modality: Modality, captions: list[str] | None = None) -> ModuleType:
    """The writer module of a modality; images with captions (text-conditioned samples) get
    the caption writer, which writes each caption under its image."""
    if modality.kind == "image" and captions is not None:
        return importlib.import_module("genlab.writers.caption_writer")
    return importlib.import_module(MODULES[modality.kind])


def preview(
    x: torch.Tensor,
    *,
    modality: Modality,
    n_per_row: int = 8,
    captions: list[str] | None = None,
) -> torch.Tensor:
    """The preview image of a batch by its modality's writer (captioned images: the captions
    under the images)."""
    writer = writer_for(modality, captions)
    if writer.__name__.endswith("caption_writer"):
        return writer.preview(x, modality=modality, n_per_row=n_per_row, captions=captions)
    return writer.preview(x, modality=modality, n_per_row=n_per_row)


def log_media(
    trainer: Any,
    key: str,
    x: torch.Tensor,
    *,
    modality: Modality,
    stem: Path,
    n_per_row: int = 8,
    captions: list[str] | None = None,
    caption: str | None = None,
) -> list[Path]:
    """Write a batch of samples as the modality's files under `stem` (stem.png and the rest)
    and send the preview to every logger, with the modality's own media to W&B (a clip, a
    sound, a point cloud) for anything but images. Returns the files written."""
    from lightning.pytorch.loggers import WandbLogger

    from genlab.utils.loggers import log_image

    writer = writer_for(modality, captions)
    files = writer.save(x, stem, modality=modality, n_per_row=n_per_row, captions=captions)
    shown = preview(x, modality=modality, n_per_row=n_per_row, captions=captions)
    log_image(trainer, key, shown, caption=caption)  # the pixels of stem.png
    if modality.kind != "image" or captions is not None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                media = writer.media(x, modality=modality, captions=captions)
                logger.log_metrics({f"{key}_media": media}, step=trainer.global_step)
    return files
