"""Keeps summary.json's heartbeat fresh while a run trains, so a run killed without a word
(SIGKILL, a lost node) reads as "interrupted" rather than "running" forever."""

from __future__ import annotations

from typing import Any

import lightning as L

from genlab.utils.run import RunRecord


class Heartbeat(L.Callback):
    """Refreshes `record`'s heartbeat and step after training and validation batches (the
    record throttles the writes to one every few seconds)."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.record.heartbeat(global_step=trainer.global_step)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.record.heartbeat(global_step=trainer.global_step)
