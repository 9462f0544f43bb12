"""What every genlab LightningModule shares: scalar logging on the loggers' schedule, and
the loop of the single-optimizer models (autoencoders, VAEs, the classifier)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import lightning as L
import torch

from genlab.utils.errors import GenlabError

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class GenlabModule(L.LightningModule):
    """A LightningModule whose step scalars go through `log_scalars`, and which answers
    `num_classes` and `default_labels(n)` (the conditioning part of the capability contracts
    in genlab.models.protocols).

    Lightning 2.x spends ~0.3 ms of Python on every `self.log` call (measured on a 2-core
    Xeon; Lightning issue #20388), whatever the logger does with the value: six scalars a
    step took ~2 ms of the 784-400-20 VAE's ~6 ms CPU step. Training scalars are therefore
    computed and logged only on the batches whose values the loggers record
    (`logs_now`: every `trainer.log_every_n_steps`); the progress bar shows them at that
    cadence. Validation and test scalars are logged every batch: they are averaged over the
    epoch and synchronised across devices.
    """

    # How many classes (or attributes) the model is conditioned on; 0: not conditional.
    num_classes: int = 0
    # Whether the training loop leaves some parameters out of a backward pass, so that DDP
    # must look for unused parameters; the DDP trainer presets read it (genlab.ddp_strategy).
    ddp_find_unused_parameters: bool = False

    def default_labels(self, n: int) -> torch.Tensor | None:
        """The labels a conditional model uses when a caller gives none: classes 0, 1, ...,
        num_classes - 1, 0, 1, ... in turn over `n` images, (n,) on the model's device; None
        for an unconditional model. The one rule for every genlab model."""
        if not self.num_classes:
            return None
        return torch.arange(n, device=self.device) % self.num_classes

    def logs_now(self, stage: str) -> bool:
        """Whether this batch's `stage` scalars should be computed and logged."""
        if stage != "train":
            return True
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer: a step called by hand
            return True
        if trainer.fast_dev_run:
            return True
        if not trainer.log_every_n_steps:
            return False
        # The loggers write a batch when the batches that stepped before it, plus one, are a
        # multiple of log_every_n_steps, and just before a stop (Lightning's
        # LoggerConnector.should_update_logs). Every genlab loop takes exactly one counted
        # optimizer step per batch (the GAN steps D uncounted), so global_step at the start
        # of the batch is that count.
        steps = self._steps_before_batch
        if steps is None:
            steps = trainer.global_step
        return (steps + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop

    _steps_before_batch: int | None = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # for `logs_now`: global_step before any optimizer step of this batch moves it (a
        # subclass that overrides this hook calls super())
        self._steps_before_batch = self.trainer.global_step

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


    # --- divergence -----------------------------------------------------------------------
    # A non-finite loss is looked for every `nan_check_every_n_steps` steps (one device sync),
    # at every epoch end and before every checkpoint is written.
    nan_check_every_n_steps: int = 10
    _nonfinite: torch.Tensor | None = None

    def track_finite(self, step: int, losses: Mapping[str, torch.Tensor]) -> None:
        """Remember, on the device (no sync), the first step whose losses are not all finite:
        (step, *losses), step -1 while all is well."""
        values = [v.detach().float().reshape(()) for v in losses.values()]
        rec = torch.stack([torch.tensor(float(step), device=values[0].device), *values])
        if self._nonfinite is None or self._nonfinite.shape != rec.shape:
            self._nonfinite = torch.full_like(rec, -1.0)
            self._loss_names = list(losses)
        bad = ~torch.isfinite(rec[1:]).all() & (self._nonfinite[0] < 0)
        self._nonfinite = torch.where(bad, rec, self._nonfinite)

    def divergence_advice(self) -> str:
        """What to try after a divergence (model-specific)."""
        return "Lower the learning rate (model.optimizer.lr) or add trainer.gradient_clip_val=1.0."

    def raise_if_diverged(self) -> None:
        """Raise `Diverged` if a tracked loss was ever non-finite."""
        if self._nonfinite is None:
            return
        step, *values = self._nonfinite.tolist()
        if step >= 0:
            raise Diverged(int(step), dict(zip(self._loss_names, values)), self.divergence_advice())

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = self.nan_check_every_n_steps
        if n and self.global_step % n == 0:
            self.raise_if_diverged()

    def on_train_epoch_end(self) -> None:
        self.raise_if_diverged()

    def on_train_end(self) -> None:
        self.raise_if_diverged()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # never write (or overwrite a good checkpoint with) diverged weights
        self.raise_if_diverged()
        tensors = [t for t in (*self.parameters(), *self.buffers()) if t.is_floating_point()]
        if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            raise Diverged(self.global_step, {}, self.divergence_advice())

    def health(self) -> dict[str, Any]:
        """Signs of trouble seen during training (recorded in summary.json); {} when none."""
        return {}

    def adopt_trainer_options(self, options: Mapping[str, Any]) -> list[str]:
        """The Trainer options (`trainer.*`) this model's loop applies itself, to be left out
        of the Trainer; a GenlabError for one it cannot honour. Under Lightning's automatic
        optimization the Trainer honours them all: none."""
        return []


class Diverged(GenlabError):
    """Training stopped at a non-finite loss (or weights); `step` is the 0-based step index
    and `losses` the values seen there. No checkpoint is written after it."""

    def __init__(self, step: int, losses: Mapping[str, float], advice: str) -> None:
        self.step, self.losses = step, dict(losses)
        seen = ", ".join(f"train/{k}={v}" for k, v in self.losses.items())
        what = f"the loss became non-finite ({seen})" if seen else "the weights became non-finite"
        super().__init__(
            f"training diverged: at step {step} {what}. Training stopped and no checkpoint was "
            f"written after that step. {advice}"
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
        loss = self.step(batch, "train")
        self.track_finite(self.global_step, {"loss": loss})
        return loss

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
