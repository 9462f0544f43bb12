"""Keeps summary.json's heartbeat fresh while a run trains, so a run killed without a word
(SIGKILL, a lost node) reads as "interrupted" rather than "running" forever; and notes the
state a run starts from, so a later divergence can be told apart from it; and says at the
start which of two budgets (max_steps, max_epochs) ends the run."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch

from genlab.utils.checkpoint import CONFIG_KEY
from genlab.utils.run import RunLock, RunRecord

log = logging.getLogger("genlab.train")


class StoreConfig(L.Callback):
    """Puts the resolved run config into every checkpoint, so a checkpoint alone rebuilds its
    model and data (`python -m genlab.eval ckpt_path=...`). Plain dicts keep the checkpoint
    loadable with `weights_only=True`."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config


class Heartbeat(L.Callback):
    """Refreshes `record`'s heartbeat and step after training and validation batches (the
    record throttles the writes to one every few seconds), and the run directory's lock with
    it. At the start of training, notes the learning rates and the weight norm on the model
    (`genlab_start_state`, read by the divergence message)."""

    def __init__(self, record: RunRecord, lock: RunLock | None = None) -> None:
        self.record = record
        self.lock = lock
        self._last_touch = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]
        with torch.no_grad():
            squares = sum(
                float(t.detach().double().pow(2).sum())
                for t in pl_module.state_dict().values()
                if t.is_floating_point()
            )
        pl_module.genlab_start_state = {"lrs": lrs, "weight_norm": math.sqrt(squares)}

    def _beat(self, trainer: L.Trainer) -> None:
        self.record.heartbeat(global_step=trainer.global_step)
        if self.lock is not None and self.record._last_beat != self._last_touch:
            self._last_touch = self.record._last_beat
            self.lock.touch()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._beat(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._beat(trainer)


def budget_end(
    *, max_steps: int | None, max_epochs: int | None, steps_per_epoch: float
) -> tuple[int, str] | None:
    """(the step the run ends at, the budget that ends it: "max_steps" or "max_epochs") when
    both budgets are set; None when one is unset (-1 or None) or an epoch's length is unknown."""
    if max_steps in (None, -1) or max_epochs in (None, -1):
        return None
    if not math.isfinite(steps_per_epoch) or steps_per_epoch <= 0:
        return None
    by_epochs = int(max_epochs * steps_per_epoch)
    return (max_steps, "max_steps") if max_steps <= by_epochs else (by_epochs, "max_epochs")


class TrainingBudget(L.Callback):
    """With both `trainer.max_steps` and `trainer.max_epochs` set, says in one line at the start
    of training which one ends the run and at which step, and records it in summary.json
    (`expected_end_step`, `ends_by`): otherwise a step budget cut short by the epochs is only
    noticed at the end."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or not trainer.is_global_zero:
            return
        # global steps per epoch: one per optimizer step (accumulation groups; the last one
        # of an epoch steps even when short), k per batch on the fast path
        batches = trainer.num_training_batches
        per_epoch = math.ceil(batches / trainer.accumulate_grad_batches) if batches else 0
        per_epoch *= int(getattr(pl_module, "steps_per_batch", 1) or 1)
        end = budget_end(
            max_steps=trainer.max_steps, max_epochs=trainer.max_epochs, steps_per_epoch=per_epoch
        )
        if end is None:
            return
        step, ends_by = end
        other = "max_epochs" if ends_by == "max_steps" else "max_steps"
        log.warning(
            "this run ends at step %d by trainer.%s=%d, before trainer.%s=%d is reached (%d "
            "steps per epoch)",
            step,
            ends_by,
            getattr(trainer, ends_by),
            other,
            getattr(trainer, other),
            per_epoch,
        )
        self.record.update(expected_end_step=step, ends_by=ends_by)
