"""Keeps summary.json's heartbeat fresh while a run trains, so a run killed without a word
(SIGKILL, a lost node) reads as "interrupted" rather than "running" forever; and notes the
state a run starts from, so a later divergence can be told apart from it."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from genlab.utils.checkpoint import CONFIG_KEY
from genlab.utils.run import RunLock, RunRecord


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
