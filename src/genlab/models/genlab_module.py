"""What every genlab LightningModule shares: scalar logging on the loggers' schedule, and
the loop of the single-optimizer models (autoencoders, VAEs, the classifier)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loops.loop import _Loop

from genlab.utils.errors import GenlabError

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


# A checkpoint written at an epoch's end (by LastCheckpoint or ModelCheckpoint) holds that epoch
# as processed but not completed. Without max_steps Lightning resumes it as finished and starts
# the next epoch. With max_steps it restarts every resumed run (FitLoop.restarting is forced
# true for iteration-based training), finds the epoch's batches all done, and runs the epoch's
# end again: the epoch is counted twice, so a run stopped by max_steps at an epoch's end and
# resumed with a larger max_steps ended at once when that extra count reached max_epochs (it
# trained nothing and said "completed"), and otherwise ran every later epoch under an epoch
# number one too high (Lightning-AI/pytorch-lightning #19617, open). Every genlab model
# therefore takes Lightning's own path without max_steps when it starts training: the epoch is
# completed and the run starts the next one, as the run that never stopped.
def resume_after_the_epoch_end(trainer: L.Trainer) -> None:
    loop = trainer.fit_loop
    if not (loop.restarted_on_epoch_end and loop._iteration_based_training()):
        return
    loop.epoch_progress.increment_completed()
    _Loop.restarting.fset(loop, False)  # not FitLoop's setter, which forces it on
    loop.update_restart_stage()  # none: the next epoch starts as a new one


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
    # Optimizer steps per Lightning batch (the fast path, `perf.steps_per_batch`; StepModule).
    steps_per_batch: int = 1
    # Whether the training loop leaves some parameters out of a backward pass, so that DDP
    # must look for unused parameters; the DDP trainer presets read it (genlab.ddp_strategy).
    ddp_find_unused_parameters: bool = False
    _restored = False  # whether this fit resumed from a checkpoint (on_load_checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored = True

    @property
    def fit_resumed(self) -> bool:
        """Whether the fit running now continues a checkpoint. Known from `on_fit_start` on:
        Lightning restores a resumed run's checkpoint after `setup` (and only then sets
        `trainer.ckpt_path`), so start files (a Stage-I run, a prior) are read in
        `on_fit_start`, and not when the checkpoint already holds them."""
        return self._restored or bool(self._trainer is not None and self.trainer.ckpt_path)

    def default_labels(self, n: int) -> torch.Tensor | None:
        """The labels a conditional model uses when a caller gives none: classes 0, 1, ...,
        num_classes - 1, 0, 1, ... in turn over `n` images, (n,) on the model's device; None
        for an unconditional model. The one rule for every genlab model."""
        if not self.num_classes:
            return None
        return torch.arange(n, device=self.device) % self.num_classes

    def on_train_start(self) -> None:
        resume_after_the_epoch_end(self.trainer)

    def setup(self, stage: str) -> None:
        # a conditional model's classes (or attributes) against the data's, once before
        # training: the nets do not read the labels' range during training steps (a sync)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        condition = getattr(dm, "condition", None)
        if condition is not None and condition.kind in ("class", "attributes"):
            have = condition.num_classes
        else:
            have = getattr(dm, "num_classes", None)
        if self.num_classes and dm is not None and have != self.num_classes:
            raise GenlabError(
                f"model.num_classes={self.num_classes} but the data ({type(dm).__name__}) has "
                f"num_classes={have}. Set model.num_classes={have}, or use an unconditional "
                "model for data without classes."
            )

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
        if steps is None or self.steps_per_batch > 1:
            steps = trainer.global_step  # several steps a batch: the step about to be taken
        return (steps + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop

    _steps_before_batch: int | None = None
    # the step a loop's training rows are logged at when it is not global_step (the GAN's
    # iteration, which logs after its G step; with several steps per batch)
    _row_step: int | None = None

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
        outside training. With several optimizer steps per batch, training scalars go to the
        loggers directly, at the step they belong to (Lightning writes one row per batch)."""
        if stage == "train" and self.steps_per_batch > 1:
            self._log_step_scalars(values, prog_bar)
            return
        if stage == "train":
            # one device-to-host copy for the whole row (a logging step), not one per value;
            # Lightning then reads host tensors (the progress bar shows these copies)
            values = dict(zip(values, host_scalars(values.values()), strict=True))
        for name, value in values.items():
            self.log(
                f"{stage}/{name}",
                value,
                prog_bar=name in prog_bar,
                batch_size=batch_size,
                sync_dist=stage != "train",
            )

    def _log_step_scalars(
        self, values: Mapping[str, torch.Tensor | float], prog_bar: Collection[str]
    ) -> None:
        row = {f"train/{k}": float(v) for k, v in values.items()}  # a logging step: one sync
        step = self.global_step if self._row_step is None else self._row_step
        if self.trainer.is_global_zero:
            for logger in self.loggers:
                logger.log_metrics({**row, "epoch": self.current_epoch}, step=step)
        for name in prog_bar:
            self.log(f"train/{name}", row[f"train/{name}"], prog_bar=True, logger=False)

    def use_steps_per_batch(self, k: int) -> None:
        """Take `k` optimizer steps per Lightning batch (`perf.steps_per_batch`); only loops
        that support it (StepModule) accept k > 1."""
        if k != 1:
            raise GenlabError(
                f"perf.steps_per_batch={k}: {type(self).__name__} takes one step per batch "
                "(its loop does not split batches); leave perf.steps_per_batch=1."
            )

    # --- divergence -----------------------------------------------------------------------
    # A non-finite loss is looked for on the steps the loggers write (or every
    # `nan_check_every_n_steps` steps when set: one device sync each), at every epoch end and
    # before every checkpoint is written; between them the host never waits for the device.
    nan_check_every_n_steps: int | None = None
    _nonfinite: torch.Tensor | None = None
    # the losses of consecutive steps since the last fold, one row per step (on the device)
    _loss_rows: torch.Tensor | None = None
    _rows_used = 0
    _rows_first_step = 0
    LOSS_ROWS = 64

    def track_finite(self, step: int, losses: Mapping[str, torch.Tensor]) -> None:
        """Remember, on the device (no sync), the first step whose losses are not all finite:
        (step, *losses), step -1 while all is well. Per step this is one copy of the losses
        into a row of a buffer (one kernel); the rows are looked at when they are checked
        (`raise_if_diverged`) or the buffer is full (`_fold_losses`, a few kernels)."""
        values = [v.detach() if v.dim() == 0 else v.detach().reshape(()) for v in losses.values()]
        rows, n = self._loss_rows, self._rows_used
        if (
            rows is None
            or n == len(rows)
            or rows.shape[1] != len(values)
            or rows.device != values[0].device
            or step != self._rows_first_step + n
        ):
            self._fold_losses()
            device, record = values[0].device, self._nonfinite
            if rows is None or rows.shape[1] != len(values) or rows.device != device:
                rows = self._loss_rows = torch.empty(
                    (self.LOSS_ROWS, len(values)), dtype=torch.float64, device=device
                )
            if record is None or record.shape != (len(values) + 1,):
                self._nonfinite = torch.full(
                    (len(values) + 1,), -1.0, dtype=torch.float64, device=device
                )
                self._loss_names = list(losses)
            elif record.device != device:
                self._nonfinite = record.to(device)
            self._rows_first_step, n = step, 0
        torch.stack(values, out=rows[n])
        self._rows_used = n + 1

    def _fold_losses(self) -> None:
        """The buffered rows into the record of the first non-finite step, on the device."""
        n, self._rows_used = self._rows_used, 0
        if not n or self._loss_rows is None or self._nonfinite is None:
            return
        rows = self._loss_rows[:n]  # (n, losses)
        bad = ~torch.isfinite(rows).all(dim=1)  # (n,)
        first = bad.to(torch.uint8).argmax().reshape(1)  # the first bad row (0 when none)
        # index_select, not rows[first]: indexing by a tensor would read it on the host
        at = first.double() + float(self._rows_first_step)  # a Python number: no copy
        rec = torch.cat([at, rows.index_select(0, first)[0]])
        take = bad.any() & (self._nonfinite[0] < 0)
        self._nonfinite = torch.where(take, rec, self._nonfinite)

    def divergence_advice(self) -> str:
        """What to try after a divergence (model-specific)."""
        return "Lower the learning rate (model.optimizer.lr) or add trainer.gradient_clip_val=1.0."

    def raise_if_diverged(self) -> None:
        """Raise `Diverged` if a tracked loss was ever non-finite."""
        self._fold_losses()
        if self._nonfinite is None:
            return
        step, *values = self._nonfinite.tolist()
        if step >= 0:
            losses = dict(zip(self._loss_names, values, strict=True))
            raise Diverged(int(step), losses, self.divergence_advice())

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = self.nan_check_every_n_steps
        if (self.global_step % n == 0) if n else self.logs_now("train"):
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


def host_scalars(values: Any) -> list[torch.Tensor]:
    """Scalars (tensors on any device, or numbers) as host tensors, with one copy for all."""
    tensors = [torch.as_tensor(v).detach().float().reshape(()) for v in values]
    if not tensors:
        return []
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        tensors = [t.cpu() for t in tensors]
    return list(torch.stack(tensors).cpu().unbind())


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

    The fast path (`perf.steps_per_batch=k`, `use_steps_per_batch`): the data hands over k
    batches at once and the module takes k optimizer steps on them, so Lightning's fixed cost
    per batch (hooks, progress, fetching) is paid once per k steps. Every step still goes
    through Lightning's optimizer (global_step, max_steps, AMP, DDP count and act per step),
    losses and logging are per step, and the result is bit-identical to k = 1 on the same
    data. What changes: batch counts (`limit_train_batches`, `val_check_interval`) count
    groups of k batches, and an epoch drops its last incomplete group.
    """

    optimizer_factory: OptimizerFactory
    scheduler_factory: SchedulerFactory | None = None
    monitor: str
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str = "norm"

    def step(self, batch: Any, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def use_steps_per_batch(self, k: int) -> None:
        if k < 1:
            raise GenlabError(f"perf.steps_per_batch={k} must be at least 1.")
        self.steps_per_batch = k
        self.automatic_optimization = k == 1

    def adopt_trainer_options(self, options: Mapping[str, Any]) -> list[str]:
        """With several steps per batch the module steps the optimizer itself (manual
        optimization): it clips by `trainer.gradient_clip_val` and cannot accumulate."""
        if self.steps_per_batch == 1:
            return []
        accumulate = options.get("accumulate_grad_batches") or 1
        if accumulate != 1:
            raise GenlabError(
                f"trainer.accumulate_grad_batches={accumulate} with perf.steps_per_batch="
                f"{self.steps_per_batch}: several steps per batch cannot accumulate gradients; "
                "use one of the two."
            )
        self.gradient_clip_val = options.get("gradient_clip_val")
        self.gradient_clip_algorithm = options.get("gradient_clip_algorithm") or "norm"
        return ["gradient_clip_val", "gradient_clip_algorithm"]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.steps_per_batch == 1:
            loss = self.step(batch, "train")
            self.track_finite(self.global_step, {"loss": loss})
            return loss
        x, y = batch  # k batches at once: (k * b, ...)
        size = -(-len(x) // self.steps_per_batch)
        opt = self.optimizers()
        max_steps = self.trainer.max_steps
        for i in range(0, len(x), size):
            if 0 < max_steps <= self.global_step:
                break  # stop at max_steps exactly, in the middle of the group
            loss = self.step((x[i : i + size], y[i : i + size]), "train")
            self.track_finite(self.global_step, {"loss": loss})
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()  # clipped in on_before_optimizer_step
        return None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # called by the precision plugin after AMP's unscale: the true gradients
        if self.steps_per_batch > 1 and self.gradient_clip_val:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.steps_per_batch > 1 and self.scheduler_factory is not None:
            self.lr_schedulers().step()  # manual optimization: Lightning leaves them to us

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "test")

    def trainable_parameters(self) -> Iterable[torch.nn.Parameter]:
        """What the optimizer updates: every parameter, unless a subclass keeps some frozen."""
        return self.parameters()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.trainable_parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch"},
        }
