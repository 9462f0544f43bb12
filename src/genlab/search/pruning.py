"""Pruning: a trial reports its metric to Optuna after every validation and stops when the
study's pruner gives up on it."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import optuna
from lightning.pytorch.callbacks import Callback

from genlab.search.study import open_job_trial

log = logging.getLogger(__name__)


class TrialPruned(optuna.TrialPruned):
    """The study's pruner stopped this trial. `run_status` and `summary_fields` say so in
    the run's summary.json (status "pruned", where and at what value)."""

    run_status = "pruned"

    def __init__(self, metric: str, value: float, epoch: int, global_step: int) -> None:
        self.summary_fields = {
            "global_step": global_step,
            "epoch": epoch,
            "pruned_at": {"metric": metric, "value": value, "epoch": epoch},
        }
        super().__init__(
            f"pruned after epoch {epoch} (step {global_step}): {metric}={value:.6g} is worse "
            "than the study's pruner accepts at this point"
        )


class OptunaPruning(Callback):
    """Reports `metric` (default: the model's declared metric) to this job's Optuna trial at the
    end of every validation, with the epoch as the step, and raises `TrialPruned` when the
    study's pruner says so (the decision of rank 0, broadcast to every DDP process).

    Also logs `train/elapsed_s`, the training wall time so far, so a multi-objective search
    can minimise time. Outside a search (no trial number) it only logs the time. Non-finite
    values are not reported: a diverged run fails (the model raises), it is not pruned.
    """

    def __init__(self, metric: str | Sequence[str] | None = None, run_dir: str | None = None):
        super().__init__()
        metrics = [metric] if isinstance(metric, str) or metric is None else list(metric)
        # Optuna prunes single-objective studies only
        self.metric = metrics[0] if len(metrics) == 1 else None
        self.multi_objective = len(metrics) > 1
        self.run_dir = run_dir
        self.trial: optuna.Trial | None = None
        self._start: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.metric is None and not self.multi_objective:
            self.metric = getattr(pl_module, "monitor", None)
        if trainer.is_global_zero:
            self.trial = open_job_trial()
            if self.trial is not None and self.run_dir:
                self.trial.set_user_attr("run_dir", self.run_dir)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is not None and not trainer.sanity_checking:
            elapsed = time.perf_counter() - self._start
            pl_module.log("train/elapsed_s", elapsed, rank_zero_only=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune, value = False, math.nan
        if self.trial is not None and self.metric is not None:
            value = _as_float(trainer.callback_metrics.get(self.metric))
            if math.isfinite(value):
                self.trial.report(value, step=trainer.current_epoch)
                prune = self.trial.should_prune()
        if trainer.world_size > 1:
            prune, value = trainer.strategy.broadcast((prune, value), src=0)
        if prune:
            raise TrialPruned(str(self.metric), value, trainer.current_epoch, trainer.global_step)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
