"""What every genlab LightningModule shares: scalar logging on the loggers' schedule, and
the loop of the single-optimizer models (autoencoders, VAEs, the classifier)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import lightning as L
import torch

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class GenlabModule(L.LightningModule):
    """A LightningModule whose step scalars go through `log_scalars`.

    Lightning 2.x spends ~0.3 ms of Python on every `self.log` call (measured on a 2-core
    Xeon; Lightning issue #20388), whatever the logger does with the value: six scalars a
    step took ~2 ms of the 784-400-20 VAE's ~6 ms CPU step. Training scalars are therefore
    computed and logged only on the batches whose values the loggers record
    (`trainer.log_every_n_steps`, Lightning's own test); the progress bar shows them at that
    cadence. Validation and test scalars are logged every batch: they are averaged over the
    epoch and synchronised across devices.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets this plain string around every hook call, ~44 times a training step;
        # nn.Module.__setattr__'s parameter/buffer/submodule checks cannot apply to it and cost
        # 2.1 us a call against 0.4 us here (~75 us a step, 1 % of the MLP VAE's CPU step).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def logs_now(self, stage: str) -> bool:
        """Whether this batch's `stage` scalars should be computed and logged."""
        if stage != "train":
            return True
        trainer = self._trainer
        if trainer is None or trainer.fast_dev_run:
            return True
        # Lightning's own "do the loggers write this batch?" (every log_every_n_steps, and on
        # the last batch before a stop); if a Lightning version lacks it, log every step.
        return bool(getattr(trainer._logger_connector, "should_update_logs", True))

    def log_scalars(
        self,
        stage: str,
        values: Mapping[str, torch.Tensor | float],
        *,
        batch_size: int,
        prog_bar: Collection[str] = (),
    ) -> None:
        """`self.log(f"{stage}/{name}", value)` for each value; synchronised across devices
        outside training."""
        for name, value in values.items():
            self.log(
                f"{stage}/{name}",
                value,
                prog_bar=name in prog_bar,
                batch_size=batch_size,
                sync_dist=stage != "train",
            )


class StepModule(GenlabModule):
    """Train, validation and test run one `step(batch, stage)`; the optimizer (and optional
    scheduler, stepped per epoch) come from `_partial_` factories in the config.

    Subclasses set `optimizer_factory`, `scheduler_factory` and `monitor` and implement `step`,
    which logs through `log_scalars` when `logs_now(stage)`.
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
