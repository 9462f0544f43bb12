"""What every evaluation task receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig


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
