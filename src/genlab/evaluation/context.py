"""What every evaluation task receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig


def accepts(*kinds: str) -> Callable[[Callable], Callable]:
    """Declare the modalities (genlab.data.modality.KINDS) an evaluation task works on: the
    runner refuses a task whose data are of another kind before any task runs."""

    def mark(task: Callable) -> Callable:
        task.modalities = kinds  # type: ignore[attr-defined]
        return task

    return mark


def task_modalities(task: Any) -> tuple[str, ...] | None:
    """The modalities a (possibly partial) task declared, or None for any."""
    return getattr(getattr(task, "func", task), "modalities", None)


@dataclass
class EvalContext:
    """The model under evaluation (eval mode, on `device`), its data and where to write.

    `run_cfg` is the training run's resolved config; `make_trainer()` returns a fresh
    Trainer built from the eval config (no logger, no checkpoints).
    """

    model: L.LightningModule
    datamodule: L.LightningDataModule
    run_cfg: DictConfig
    out_dir: Path
    make_trainer: Callable[[], L.Trainer]
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
