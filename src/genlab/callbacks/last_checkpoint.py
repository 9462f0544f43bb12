"""The checkpoints a run is continued from: `last.ckpt` with the latest state, the random
state inside every checkpoint, and a clean stop on SIGINT/SIGTERM.

Lightning's `ModelCheckpoint(save_last=True)` only refreshes last.ckpt when it also writes a
top-k checkpoint at the same step (Lightning >= 2.6), so a run whose monitored metric stops
improving would keep an old last.ckpt and a resume would silently rewind. genlab therefore
keeps "best by the declared metric" (ModelCheckpoint, `save_last: false`) and "last" (this
module) apart.
"""

from __future__ import annotations

import io
import logging
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from genlab.utils.errors import GenlabError, lost_peer
from genlab.utils.resolvers import unwritable

log = logging.getLogger(__name__)


class RunInterrupted(Exception):
    """Training stopped on a signal (Ctrl-C, SIGTERM from a scheduler) after the state of the
    last finished step was written to last.ckpt."""

    def __init__(self, signum: int, step: int, path: str | None) -> None:
        self.signum, self.step, self.path = signum, step, path
        name = signal.Signals(signum).name
        where = f"; {path} holds step {step}" if path else ""
        super().__init__(f"interrupted by {name} after step {step}{where}")


def finite_weights(module: torch.nn.Module) -> bool:
    """True when every floating-point parameter and buffer of `module` is finite."""
    tensors = [*module.parameters(), *module.buffers()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


class LastCheckpoint(Checkpoint):
    """Writes `dirpath/last.ckpt` with the latest training state:

    - at the end of every training epoch (after its validation and the model's epoch-end
      hooks), and every `every_n_train_steps` steps when > 0;
    - at the last step of a run stopped by `trainer.max_steps`, written right after that step
      like a step checkpoint, so the epoch counts as unfinished and a resume continues in the
      middle of it;
    - when SIGINT or SIGTERM arrives: at the end of the step in progress, then training stops
      with `RunInterrupted` (a second Ctrl-C stops at once);
    - at the end of training and on an exception, if the weights are finite and the step
      was not written yet.

    A run resumed from a checkpoint written at an epoch's end starts the next epoch, also
    under `trainer.max_steps` (where Lightning counts that epoch twice; see below).

    Every write is checked: a checkpoint that cannot be written (permissions, full disk) fails
    the run with a GenlabError instead of being skipped silently. Checkpoints with non-finite
    weights are never written (the model refuses in `on_save_checkpoint`).
    """

    FILENAME = "last.ckpt"

    def __init__(self, *, dirpath: str, every_n_train_steps: int = 0) -> None:
        if every_n_train_steps < 0:
            raise GenlabError(
                f"callbacks.last_checkpoint.every_n_train_steps={every_n_train_steps} must be "
                ">= 0 (0: only at epoch ends and at the end of the run)."
            )
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        self.saved_step: int | None = None
        self.saved_at: tuple[int, str] | None = None
        self._epoch_finished = False
        self._steps_seen = 0
        self._signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}

    @property
    def path(self) -> Path:
        return self.dirpath / self.FILENAME

    # --- writing -------------------------------------------------------------------------
    def save(self, trainer: L.Trainer, where: str) -> None:
        """Write last.ckpt now (all ranks call it; rank 0 writes) and check it was written.
        `where`: the point of the loop (step, validation, epoch, end, exception)."""
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        started = time.time()
        self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.path, weights_only=False)  # and no log line saying so
        self.saved_step = trainer.global_step
        self.saved_at = (trainer.global_step, where)
        own = isinstance(getattr(trainer.strategy, "checkpoint_io", None), AtomicCheckpointIO)
        if trainer.is_global_zero and not own:  # genlab's writer raises on a failed write
            check_written(self.path, started)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        self._note_log_step(trainer)
        step = trainer.global_step
        # whether this batch ends its epoch (else a stop here leaves the epoch unfinished)
        self._epoch_finished = i + 1 >= trainer.num_training_batches
        stop = self._signal_received(trainer)
        n = self.every_n_train_steps
        # a multiple of n reached since the last batch (a batch may take several steps)
        crossed = bool(n) and step // n > self._steps_seen // n
        self._steps_seen = step
        due = stop or crossed or (0 < trainer.max_steps <= step)
        if due and self.saved_step != step:
            self.save(trainer, "step")
        if stop:
            raise RunInterrupted(self._signal or signal.SIGTERM, step, str(self.path))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A validation in the middle of an epoch right after a step checkpoint: write again, so
        # the checkpoint holds the state after it (random numbers included); Lightning does
        # not repeat a validation that a checkpoint was written after. At an epoch's end the
        # epoch-end checkpoint follows anyway.
        if (
            trainer.state.fn == "fit"
            and not trainer.sanity_checking
            and self.saved_step == trainer.global_step
            and not self._epoch_finished
        ):
            self.save(trainer, "validation")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Only when the epoch ran to its end: a stop by max_steps in the middle of an epoch was
        # written after its step, and writing here would mark that epoch as finished.
        if self._epoch_finished and self.saved_at != (trainer.global_step, "epoch"):
            self.save(trainer, "epoch")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()
        if self.saved_step != trainer.global_step:
            self.save(trainer, "end")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()
        if isinstance(exception, (RunInterrupted, GenlabError)) or trainer.state.fn != "fit":
            return
        if lost_peer(exception):  # writing needs every rank; the last checkpoint stands
            return
        if self.saved_step == trainer.global_step or not finite_weights(pl_module):
            return
        try:
            self.save(trainer, "exception")
            log.warning(
                "%s: the state at step %d was written to %s after the error",
                type(exception).__name__,
                trainer.global_step,
                self.path,
            )
        except Exception as err:  # never hide the original error behind this one
            log.error("could not write %s after %s: %s", self.path, type(exception).__name__, err)

    # --- the CSV log at a checkpoint ---------------------------------------------------
    # Every checkpoint notes how many rows the run's CSV log held when it was taken (the
    # logger writes its rows then); a run resumed from it drops the rows written after it
    # (genlab.utils.loggers.CSVLogger.continue_from), so its CSV log continues the checkpoint.
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "_trainer", None)
        loggers = trainer.loggers if trainer is not None else []
        marks = [lg.checkpoint_mark() for lg in loggers if hasattr(lg, "checkpoint_mark")]
        marks = [m for m in marks if m]  # None on ranks other than 0
        state: dict[str, Any] = {"csv_logs": marks} if marks else {}
        if self._next_log_step is not None:
            state["next_log_step"] = self._next_log_step
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._csv_marks = list(state_dict.get("csv_logs", []))
        self._resume_log_step = state_dict.get("next_log_step")

    # --- the loggers' step on resume ---------------------------------------------------
    # Lightning logs a batch's rows at its count of batches that stepped, which it increments
    # after the batch's end hooks and validation, and stores in checkpoints as it is when they
    # are written; on resume it guesses whether the checkpoint was written before or after the
    # increment from where the epoch stood. It guesses wrong for a checkpoint written after an
    # error in the middle of an epoch (and, before `resume_after_the_epoch_end`
    # (genlab_module), for one written at an epoch's end under max_steps), and every later row
    # is one step late. So
    # each checkpoint also records the step the next batch logs at, and a resumed run starts
    # there (Lightning's `_batches_that_stepped`, an internal; test_last_checkpoint's resume
    # after an error fails when it is off).
    _next_log_step: int | None = None
    _resume_log_step: int | None = None

    def _note_log_step(self, trainer: L.Trainer) -> None:
        loop = trainer.fit_loop.epoch_loop
        self._next_log_step = loop._batches_that_stepped + (not loop._should_accumulate())

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int
    ) -> None:
        if self._resume_log_step is not None:
            trainer.fit_loop.epoch_loop._batches_that_stepped = self._resume_log_step
            self._resume_log_step = None

    def _continue_csv_logs(self, trainer: L.Trainer) -> None:
        marks, self._csv_marks = getattr(self, "_csv_marks", []), []
        for logger in trainer.loggers:
            for mark in marks if hasattr(logger, "continue_from") else []:
                logger.continue_from(mark, trainer.global_step)

    # --- signals -------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._continue_csv_logs(trainer)
        self._signal = None
        self._steps_seen = trainer.global_step
        if trainer.is_global_zero or trainer.world_size == 1:
            self._install_handlers()

    def _install_handlers(self) -> None:
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[signum] = signal.getsignal(signum)
                signal.signal(signum, self._on_signal)
        except ValueError:  # not the main thread: leave signals alone
            self._previous_handlers = {}

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        first = self._signal is None
        if first:
            self._signal = signum
            log.warning(
                "%s received: stopping after the current step (last.ckpt will hold it); "
                "press Ctrl-C again to stop at once",
                signal.Signals(signum).name,
            )
        previous = self._previous_handlers.get(signum)
        # other SIGTERM handlers (Lightning's stops DDP children) always run; a second Ctrl-C
        # goes to the previous handler (Python's raises KeyboardInterrupt), or stops at once
        # here when there was none to call: a process started with SIGINT ignored (a
        # script's `cmd &`) has no Python handler, and the second Ctrl-C would do nothing
        if callable(previous) and (signum == signal.SIGTERM or not first):
            previous(signum, frame)
        elif signum == signal.SIGINT and not first:
            raise KeyboardInterrupt

    def _signal_received(self, trainer: L.Trainer) -> bool:
        received = self._signal is not None
        if trainer.world_size > 1:
            received = trainer.strategy.reduce_boolean_decision(received, all=False)
        return bool(received)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint of a run (last and best) is written to a temp file beside it, synced,
    then renamed: a reader, a resume or summary.json's `last_ckpt` only ever sees a complete
    file. A write that fails (a full disk, a read-only folder) removes the partial temp file
    and stops the run with genlab's message naming the folder and its free space. Never
    writes through a symbolic link (the temp file is created anew; the rename replaces a
    link instead of following it).

    `background=True` (`perf.async_checkpoints`): the state is copied to host memory when the
    checkpoint is taken (device tensors into pinned memory, without waiting for the device),
    and serialised and written by a thread while training goes on. A failed write stops the
    run at the next checkpoint, a load, or the end of training (`wait`), whichever comes first;
    a checkpoint is complete before anything reads or removes it.
    """

    def __init__(self, *, background: bool = False) -> None:
        super().__init__()
        self.background = background
        self._pool: Any = None
        self._pending: list[Any] = []

    # --- writing -------------------------------------------------------------------------
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("genlab's checkpoint writer takes no storage_options")
        self._collect(block=False)  # an earlier background write that failed stops the run
        if not self.background:
            write_atomic(checkpoint, Path(path))
            return
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        snapshot, ready = host_copy(checkpoint)
        self._pending.append(self._pool.submit(_write_when_ready, snapshot, ready, Path(path)))

    def wait(self) -> None:
        """Block until every background write is on disk; raise the first failure."""
        self._collect(block=True)

    def _collect(self, *, block: bool) -> None:
        error = None
        keep = []
        for future in self._pending:
            if not block and not future.done():
                keep.append(future)
                continue
            exc = future.exception()
            error = error or exc
        self._pending = keep
        if error is not None:
            raise error

    # --- reading and removing wait for the writes ---------------------------------------------
    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.wait()
        return super().load_checkpoint(*args, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        self.wait()
        super().remove_checkpoint(path)

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def host_copy(checkpoint: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The checkpoint with every tensor copied to host memory, and an event to wait for
    before reading the copies (None on the CPU: the copies are done). Device tensors go into
    pinned memory without blocking, so the host does not wait for the device here."""
    from lightning.fabric.utilities.apply_func import apply_to_collection

    events: list[Any] = []

    def copy(t: torch.Tensor) -> torch.Tensor:
        if t.device.type == "cuda":
            out = torch.empty_like(t, device="cpu", pin_memory=True)
            out.copy_(t.detach(), non_blocking=True)
            if not events:
                events.append(True)
            return out
        return t.detach().clone()

    snapshot = apply_to_collection(checkpoint, torch.Tensor, copy)
    ready = None
    if events:
        ready = torch.cuda.Event()
        ready.record()
    return snapshot, ready


def _write_when_ready(checkpoint: dict[str, Any], ready: Any, path: Path) -> None:
    if ready is not None:
        ready.synchronize()  # the copies into pinned memory are complete
    write_atomic(checkpoint, path)


def write_atomic(checkpoint: dict[str, Any], path: Path) -> None:
    """torch.save `checkpoint` to `path` through a synced temp file and a rename; on failure
    the temp file is removed and genlab's message raised (`write_failure`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        # serialised in memory first (as Lightning does): torch's zip writer reports a
        # failed write as a RuntimeError without the OS's reason
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with os.fdopen(os.open(tmp, flags, 0o644), "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise GenlabError(write_failure(path, exc)) from exc


def wait_for_checkpoints(trainer: L.Trainer) -> None:
    """Block until the trainer's checkpoints are on disk (a background writer's too)."""
    io_ = getattr(trainer.strategy, "checkpoint_io", None)
    if isinstance(io_, AtomicCheckpointIO):
        io_.wait()


def write_failure(path: Path, exc: OSError) -> str:
    """What a failed checkpoint write tells the user: the folder, why, and its free space."""
    import errno
    import shutil

    folder = path.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:,.1f} MiB free"
    except OSError:
        free = "free space unknown"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        kept = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
        return (
            f"the checkpoint {path} could not be written ({exc.strerror}; {free} on "
            f"{folder}). Nothing partial was kept"
            + (f"; the complete checkpoints stay ({', '.join(kept)})" if kept else "")
            + ". Free disk space, then continue with "
            f"resume={folder.parent if folder.name == 'checkpoints' else folder}."
        )
    return unwritable(folder, f"{exc.strerror or exc} while writing {path.name}; {free}")


def check_written(path: Path, since: float) -> None:
    """A GenlabError unless `path` is a non-empty file written after `since` (Lightning's save
    swallows some PermissionErrors)."""
    try:
        stat = path.stat()
        ok = stat.st_size > 0 and stat.st_mtime >= since - 1.0
    except OSError:
        ok = False
    if not ok:
        folder = path.parent
        writable = os.access(folder, os.W_OK)
        raise GenlabError(
            f"the checkpoint {path} could not be written"
            + ("" if writable else f" ({folder} is not writable)")
            + ". Training stopped so that no later state is lost unnoticed: make the folder "
            "writable or free disk space, then continue with resume=<the run directory>."
        )


class RandomState(L.Callback):
    """Stores the random number generators' states (torch CPU and CUDA, numpy, Python) in every
    checkpoint and restores them when training resumes, right before the first resumed step
    (after the sanity check, which draws numbers of its own). With it, a model that draws from
    the global generator (a VAE's posterior sample, a denoising corruption, dropout) continues
    exactly as an uninterrupted run would. Under DDP each rank restores rank 0's state."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        py_state = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "cached_gaussian": float(np_state[4]),
            },
            "python": {
                "version": py_state[0],
                "state": list(py_state[1]),
                "gauss": py_state[2],
            },
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if not state:
            return
        torch.set_rng_state(state["torch"].cpu())
        np_state = state["numpy"]
        np.random.set_state(
            (
                "MT19937",
                np_state["keys"].numpy().astype(np.uint32),
                np_state["pos"],
                np_state["has_gauss"],
                np_state["cached_gaussian"],
            )
        )
        py_state = state["python"]
        random.setstate((py_state["version"], tuple(py_state["state"]), py_state["gauss"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _optimizers(configured: Any) -> list[torch.optim.Optimizer]:
    """The optimizers of whatever `configure_optimizers` returned (one, a list, a tuple of
    (optimizers, schedulers), a dict or a list of dicts)."""
    if isinstance(configured, torch.optim.Optimizer):
        return [configured]
    if isinstance(configured, dict):
        return [configured["optimizer"]]
    if isinstance(configured, (list, tuple)):
        if len(configured) == 2 and all(isinstance(c, (list, tuple)) for c in configured):
            return [o for o in configured[0] if isinstance(o, torch.optim.Optimizer)]
        return [o for c in configured for o in _optimizers(c)]
    return []


class ConfiguredLearningRates(L.Callback):
    """`ckpt_path=` (a new run from a checkpoint) with other optimizer or scheduler options
    than the checkpoint's: Lightning restores the checkpoint's optimizer state, learning rate
    included, over the freshly configured one. This puts the configured learning rates back
    (the optimizer's moments are kept; a scheduler continues from where it was, on the new
    base), so the run trains with the lr its config.yaml states, and says so in the log."""

    def __init__(self, changed: list[str]) -> None:
        self.changed = changed

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fresh = _optimizers(pl_module.configure_optimizers())
        schedulers = {id(c.scheduler.optimizer): c.scheduler for c in trainer.lr_scheduler_configs}
        for i, (loaded, new) in enumerate(zip(trainer.optimizers, fresh, strict=False)):
            scheduler = schedulers.get(id(loaded))
            before = [g["lr"] for g in loaded.param_groups]
            for group, new_group in zip(loaded.param_groups, new.param_groups, strict=False):
                base = new_group.get("initial_lr", new_group["lr"])
                old_base = group.get("initial_lr", group["lr"])
                # with a scheduler, the schedule's progress (lr / base) carries over
                factor = group["lr"] / old_base if scheduler is not None and old_base else 1.0
                group["lr"] = base * factor
                if "initial_lr" in group:
                    group["initial_lr"] = base
            if scheduler is not None and hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [g.get("initial_lr", g["lr"]) for g in loaded.param_groups]
            after = [g["lr"] for g in loaded.param_groups]
            if before != after:
                log.info(
                    "ckpt_path: %s changed, so optimizer %d trains with lr %s as configured "
                    "(the checkpoint's optimizer state had %s)",
                    ", ".join(self.changed),
                    i,
                    ", ".join(f"{v:.3g}" for v in after),
                    ", ".join(f"{v:.3g}" for v in before),
                )
