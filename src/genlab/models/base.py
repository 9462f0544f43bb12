"""The loop shared by the single-optimizer models (autoencoders, VAEs, the classifier)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class StepModule(L.LightningModule):
    """Train, validation and test run one `step(batch, stage)`; the optimizer (and optional
    scheduler, stepped per epoch) come from `_partial_` factories in the config.

    Subclasses set `optimizer_factory`, `scheduler_factory` and `monitor` and implement `step`.
    """

    optimizer_factory: OptimizerFactory
    scheduler_factory: SchedulerFactory | None = None
    monitor: str

    def step(self, batch: Any, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch"},
        }
