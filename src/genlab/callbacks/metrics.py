"""Generation metrics during training (`val/fid_domain`, ...), usable as the monitor of
checkpointing and early stopping (`model.monitor=val/fid_domain model.monitor_mode=min`)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from genlab.metrics.generation import GenerationEvaluator, MetricSpec
from genlab.models.protocols import CanSample
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)


class GenerationMetrics(L.Callback):
    """Computes the chosen metrics on `n_samples` samples against `n_samples` real images of
    `split`, every `every_n_epochs` validation epochs (or every `every_n_steps` training steps),
    within `time_budget_s` seconds per evaluation. Which metrics, in which feature space:
    the options of `genlab.metrics.generation.MetricSpec` (metrics, extractor,
    classifier_ckpt, ...), given as keyword arguments.

    Rank 0 computes; the values are broadcast so every rank logs the same number. Between
    evaluations the last values are logged again, so a ModelCheckpoint/EarlyStopping watching
    them always finds them (EarlyStopping's patience then counts validation epochs). When the
    first evaluation runs out of time, its sample count is kept for all later ones so the
    values stay comparable. Each evaluation is appended, with its provenance, to
    `RUN/metric-generation.jsonl`.
    """

    def __init__(
        self,
        *,
        n_samples: int = 500,
        split: str = "val",
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        time_budget_s: float | None = 120.0,
        batch_size: int = 250,
        seed: int = 0,
        prefix: str = "val/",
        **spec: Any,
    ) -> None:
        if not every_n_epochs and not every_n_steps:
            raise GenlabError(
                "callbacks.generation_metrics: set every_n_epochs or every_n_steps (a positive "
                "number) to say how often the metrics are computed."
            )
        self.spec = MetricSpec.from_options("callbacks.generation_metrics", spec)
        self.n_samples, self.split = n_samples, split
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.time_budget_s, self.batch_size, self.seed = time_budget_s, batch_size, seed
        self.prefix = prefix
        self.evaluator: GenerationEvaluator | None = None
        self.last: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not isinstance(pl_module, CanSample):
            raise GenlabError(
                f"callbacks.generation_metrics measures samples, but {type(pl_module).__name__} "
                "has no sample(): remove the callback for this model."
            )
        if trainer.is_global_zero:
            # built before training starts, so a missing checkpoint or weights file fails early
            self.evaluator = self.spec.evaluator(
                trainer.datamodule,
                split=self.split,
                n_real=self.n_samples,
                batch_size=self.batch_size,
                device=pl_module.device,
            )

    # --- when ----------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        due = (
            not self.every_n_steps
            and bool(self.every_n_epochs)
            and (not self.last or trainer.current_epoch % self.every_n_epochs == 0)
        )
        # step schedules also compute at the first validation, so a monitor always has a value
        if due or (self.every_n_steps and not self.last):
            self.compute(trainer, pl_module)
        self.log_last(pl_module)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            self.compute(trainer, pl_module)  # logged at the next validation

    # --- what ----------------------------------------------------------------------------
    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        result: dict[str, Any] | None = None
        if trainer.is_global_zero:
            result = self._evaluate(trainer, pl_module)
        result = trainer.strategy.broadcast(result, src=0)
        self.last = dict(result["values"])

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        assert self.evaluator is not None
        was_training = pl_module.training
        pl_module.eval()
        start = time.monotonic()
        self.evaluator.device = pl_module.device
        self.evaluator.extractor.to(pl_module.device)

        def sample(b: int, gen: torch.Generator) -> torch.Tensor:
            return pl_module.sample(b, generator=gen)  # type: ignore[operator]

        try:
            result = self.evaluator.evaluate(
                sample, self.n_samples, seed=self.seed, time_budget_s=self.time_budget_s
            )
        finally:
            pl_module.train(was_training)
        n_fake = result["provenance"]["n_fake"]
        if n_fake < self.n_samples:
            log.warning(
                "generation metrics: n_samples lowered from %d to %d to fit time_budget_s=%s; "
                "kept for the rest of the run so values stay comparable",
                self.n_samples,
                n_fake,
                self.time_budget_s,
            )
            self.n_samples = n_fake
        record = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "seconds": round(time.monotonic() - start, 3),
            **result,
        }
        self.history.append(record)
        out = Path(trainer.default_root_dir) / "metric-generation.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        return {"values": result["values"]}

    def log_last(self, pl_module: L.LightningModule) -> None:
        for key, value in self.last.items():
            # identical on every rank (broadcast): no reduction needed
            pl_module.log(
                f"{self.prefix}{key}", float(value), rank_zero_only=False, sync_dist=False
            )
