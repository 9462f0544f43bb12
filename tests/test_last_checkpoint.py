"""When last.ckpt is written, and what the pieces of the resume path do on their own
(src/genlab/callbacks/last_checkpoint.py): every N steps (also when a batch takes several steps),
again after a validation in the middle of an epoch, at an epoch's end, after an error; the
random state stored and put back; the checks of a written file; the interruption's message.
A probe reads `LastCheckpoint.saved_at` (the step and the point of the loop of its last write)
at every batch start of a real run, and after an error.

Seen failing (each in a scratch copy of src/): `crossed` computed from the step alone (no
write when a 4-step batch passes a multiple of 3), no write after a mid-epoch validation, the
epoch-end write skipped, a write after an error with non-finite weights, RandomState's numpy
position not restored, check_written accepting an empty file."""

from __future__ import annotations

import csv
import logging
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from conftest import FAST, load, make_cfg
from lightning.pytorch.plugins.io import TorchCheckpointIO

from genlab.callbacks.last_checkpoint import (
    LastCheckpoint,
    RandomState,
    RunInterrupted,
    check_written,
    finite_weights,
)
from genlab.train import train
from genlab.utils.errors import PEER_LOST, GenlabError
from genlab.utils.run import read_summary

TINY_AE = [
    *FAST,
    "test=false",
    "model.encoder.hidden_dims=[16]",
    "model.decoder.hidden_dims=[16]",
    "model.latent_dim=4",
]
SEEN: list = []
LAST: list = []  # the run's LastCheckpoint, read after the run (its saved_at)


class SavedAt(L.Callback):
    """Appends (step, LastCheckpoint.saved_at) to SEEN at every batch start and at the end."""

    def _last(self, trainer) -> LastCheckpoint:
        return next(c for c in trainer.callbacks if isinstance(c, LastCheckpoint))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        SEEN.append((trainer.global_step, self._last(trainer).saved_at))

    def on_train_end(self, trainer, pl_module) -> None:
        SEEN.append(("end", self._last(trainer).saved_at))

    def on_exception(self, trainer, pl_module, exception) -> None:
        LAST[:] = [self._last(trainer)]  # its saved_at read after the run (its own hook too)

    def on_fit_end(self, trainer, pl_module) -> None:  # after every on_train_end
        LAST[:] = [self._last(trainer)]


class FailAt(L.Callback):
    """Raises RuntimeError (or genlab's own GenlabError) at the start of step `step`, after
    poisoning the weights, or putting a file where the checkpoint folder is, if told."""

    def __init__(
        self,
        step: int,
        poison: bool = False,
        genlab: bool = False,
        block: bool = False,
        peer: bool = False,
    ) -> None:
        self.step, self.poison, self.genlab, self.block = step, poison, genlab, block
        self.peer = peer

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        if self.poison:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
        if self.block:
            folder = Path(trainer.default_root_dir) / "checkpoints"
            shutil.rmtree(folder, ignore_errors=True)
            folder.write_text("not a folder")
        if self.genlab:
            raise GenlabError("a refusal in the middle of training")
        if self.peer:  # what torch.distributed says when another rank went away
            raise RuntimeError(f"a failure in the middle of training: {PEER_LOST[0]}")
        raise RuntimeError("a failure in the middle of training")


class StopAt(L.Callback):
    """Asks the trainer to stop at the end of step `step` (as early stopping would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            trainer.should_stop = True


PROBE = ["+callbacks.probe._target_=test_last_checkpoint.SavedAt"]


def run_and_see(tmp_path, *overrides: str) -> list:
    SEEN.clear()
    summary = train(make_cfg(tmp_path, *TINY_AE, *PROBE, *overrides))
    assert summary["status"] == "completed"
    return list(SEEN)


def test_every_n_steps_and_at_each_epoch_end(tmp_path):
    """8 batches an epoch, 2 epochs, every 3 steps: writes at 3, 6, the epoch end at 8, 9, 12,
    15, and at 16, the last step (max_steps is not set: the run ends with its epoch)."""
    seen = run_and_see(
        tmp_path,
        "trainer.limit_train_batches=8",
        "callbacks.last_checkpoint.every_n_train_steps=3",
    )
    want = [None, None, None, (3, "step"), (3, "step"), (3, "step"), (6, "step"), (6, "step")]
    want += [(8, "epoch"), (9, "step"), (9, "step"), (9, "step"), (12, "step"), (12, "step")]
    want += [(12, "step"), (15, "step")]
    assert [s for _, s in seen[:-1]] == want
    assert seen[-1] == ("end", (16, "epoch"))


def test_a_batch_of_several_steps_writes_when_it_passes_a_multiple(tmp_path):
    """perf.steps_per_batch=4, every 3 steps: the batches end at steps 4, 8, 12, 16; each of
    them passes a multiple of 3 (3, 6, 9 and 12, 15) and is written."""
    seen = run_and_see(
        tmp_path,
        "model=vae",
        "trainer.limit_train_batches=4",
        "trainer.max_epochs=1",
        "perf.steps_per_batch=4",
        "callbacks.last_checkpoint.every_n_train_steps=3",
    )
    assert [s for _, s in seen] == [None, (4, "step"), (8, "step"), (12, "step"), (16, "epoch")]


def test_a_validation_in_the_middle_of_an_epoch_is_written_after(tmp_path):
    """Validation every 4 batches of a 12-batch epoch, a write every 8 steps: at step 4 nothing
    is written (no checkpoint at that step to bring up to date); at step 8 the step's
    checkpoint is written again after the validation (so it holds the state after it); at
    step 12 the epoch's end writes it. Seen failing with the validation's write made without a
    step checkpoint before it (each way of breaking its condition: written at step 4)."""
    seen = run_and_see(
        tmp_path,
        "trainer.limit_train_batches=12",
        "trainer.max_epochs=1",
        "+trainer.val_check_interval=4",
        "callbacks.last_checkpoint.every_n_train_steps=8",
    )
    assert [s for _, s in seen] == [None] * 8 + [(8, "validation")] * 4 + [(12, "epoch")]


def test_an_error_writes_the_state_at_its_step_unless_the_weights_are_not_finite(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="genlab.callbacks.last_checkpoint")
    fail = ["+callbacks.fail._target_=test_last_checkpoint.FailAt", "+callbacks.fail.step=3"]
    LAST.clear()
    with pytest.raises(RuntimeError, match="a failure in the middle of training"):
        train(make_cfg(tmp_path / "a", *TINY_AE, *PROBE, *fail))
    last = tmp_path / "a" / "run" / "checkpoints" / "last.ckpt"
    assert load(last)["global_step"] == 3
    assert LAST[0].saved_at == (3, "exception")
    assert messages(caplog) == [
        f"RuntimeError: the state at step 3 was written to {last} after the error"
    ]
    caplog.clear()
    with pytest.raises(RuntimeError):
        train(make_cfg(tmp_path / "b", *TINY_AE, *fail, "+callbacks.fail.poison=true"))
    # not even tried (the model would refuse to save non-finite weights, an error in the log)
    assert not (tmp_path / "b" / "run" / "checkpoints" / "last.ckpt").exists()
    assert "could not write" not in caplog.text and "was written" not in caplog.text


def test_a_lost_peer_writes_nothing_after_the_error(tmp_path, caplog):
    """Another rank went away (torch.distributed's message): writing needs every rank, so the
    last complete checkpoint stands and nothing is tried (genlab's paragraph says so). Seen
    failing with `lost_peer` asked about nothing (the write was tried: last.ckpt at step 3)."""
    caplog.set_level(logging.WARNING, logger="genlab.callbacks.last_checkpoint")
    fail = ["+callbacks.fail._target_=test_last_checkpoint.FailAt", "+callbacks.fail.step=3"]
    LAST.clear()
    with pytest.raises(GenlabError, match="another rank died, so rank 0 stopped at step 3"):
        train(make_cfg(tmp_path, *TINY_AE, *PROBE, *fail, "+callbacks.fail.peer=true"))
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert LAST[0].saved_at is None and messages(caplog) == []


def test_a_run_without_a_csv_log_resumes(tmp_path):
    """A checkpoint of a run without genlab's CSV logger holds no CSV marks: the resumed run
    starts at its step and has nothing to cut. Seen failing with the marks read under another
    key with no default (TypeError: 'NoneType' object is not iterable)."""
    first = train(make_cfg(tmp_path / "a", *TINY_AE, "logger=tensorboard", "trainer.max_steps=3"))
    assert "csv_logs" not in str(load(first["last_ckpt"])["callbacks"])
    resumed = train(
        make_cfg(
            tmp_path / "b",
            *TINY_AE,
            "logger=tensorboard",
            "trainer.max_steps=6",
            f"ckpt_path={first['last_ckpt']}",
        )
    )
    assert resumed["status"] == "completed" and load(resumed["last_ckpt"])["global_step"] == 6


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "genlab.callbacks.last_checkpoint"]


def test_genlab_refusals_and_failed_writes_after_an_error(tmp_path, caplog):
    """A GenlabError (genlab's own stop: a refusal, a divergence) writes nothing more; a write
    that fails after an error (here a file where the checkpoint folder was) is logged with
    its reason and the original error still propagates."""
    caplog.set_level(logging.WARNING, logger="genlab.callbacks.last_checkpoint")
    fail = ["+callbacks.fail._target_=test_last_checkpoint.FailAt", "+callbacks.fail.step=3"]
    with pytest.raises(GenlabError, match="a refusal in the middle of training"):
        train(make_cfg(tmp_path / "a", *TINY_AE, *fail, "+callbacks.fail.genlab=true"))
    assert not (tmp_path / "a" / "run" / "checkpoints" / "last.ckpt").exists()
    assert messages(caplog) == []
    with pytest.raises(RuntimeError, match="a failure in the middle of training"):
        train(make_cfg(tmp_path / "b", *TINY_AE, *fail, "+callbacks.fail.block=true"))
    last = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    (message,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert message.getMessage().startswith(f"could not write {last} after RuntimeError: [Errno ")


def test_a_stop_asked_in_the_middle_of_an_epoch_is_written_at_the_end(tmp_path):
    """A callback that stops training after step 5 of an 8-step epoch (as early stopping
    does): last.ckpt is written when training ends, at step 5. Seen failing with the end's
    write recorded under another name."""
    LAST.clear()
    summary = train(
        make_cfg(
            tmp_path,
            *TINY_AE,
            "trainer.limit_train_batches=8",
            "trainer.min_epochs=null",  # else Lightning stops only after the first epoch
            "+callbacks.stop._target_=test_last_checkpoint.StopAt",
            "+callbacks.stop.step=5",
            *PROBE,
        )
    )
    assert summary["global_step"] == summary["last_ckpt_step"] == 5
    assert LAST[0].saved_at == (5, "end")  # written by on_train_end, not by a step
    assert load(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 5


class SilentlyFailingIO(TorchCheckpointIO):
    """A checkpoint writer that writes nothing and raises nothing (what Lightning's writer does
    when it swallows a PermissionError); a user's own writer replaces genlab's atomic one."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        return None


def test_a_last_checkpoint_that_was_not_written_stops_the_run(tmp_path):
    """With a writer that silently writes nothing and no best checkpoint to notice it, the
    first last.ckpt (the end of epoch 0, step 4) fails the run naming the file."""
    cfg = make_cfg(
        tmp_path,
        *TINY_AE,
        "~callbacks.model_checkpoint",
        "+trainer.plugins=[{_target_:test_last_checkpoint.SilentlyFailingIO}]",
    )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(GenlabError) as err:
        train(cfg)
    assert str(err.value).startswith(f"the checkpoint {last} could not be written. ")
    assert read_summary(tmp_path / "run")["status"] == "failed"


def test_fast_dev_run_writes_no_last_checkpoint(tmp_path):
    summary = train(make_cfg(tmp_path, *TINY_AE, "trainer.fast_dev_run=true"))
    assert summary["status"] == "completed"
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_every_n_train_steps_must_not_be_negative(tmp_path):
    with pytest.raises(GenlabError) as err:
        LastCheckpoint(dirpath=str(tmp_path), every_n_train_steps=-1)
    assert str(err.value) == (
        "callbacks.last_checkpoint.every_n_train_steps=-1 must be >= 0 (0: only at epoch ends "
        "and at the end of the run)."
    )
    cb = LastCheckpoint(dirpath=str(tmp_path))
    assert cb.every_n_train_steps == 0 and cb.path == tmp_path / "last.ckpt"
    assert cb.saved_step is None and cb.saved_at is None


def test_random_state_is_stored_and_put_back_at_the_start_of_training():
    """torch, numpy (including a cached Gaussian) and Python's generators after a restore draw
    what they drew after the state was taken; nothing is restored twice."""
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # numpy keeps the second of a pair of Gaussians
    saved = RandomState().state_dict()
    assert saved["numpy"]["keys"].dtype == torch.int64  # numpy's uint32 words, exactly
    want = (torch.rand(3), np.random.standard_normal(2), np.random.rand(2), random.random())
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    state = RandomState()
    state.load_state_dict(saved)
    state.on_train_start(None, None)
    got = (torch.rand(3), np.random.standard_normal(2), np.random.rand(2), random.random())
    assert torch.equal(got[0], want[0])
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[2], want[2])
    assert got[3] == want[3]
    after = torch.get_rng_state()
    state.on_train_start(None, None)  # the pending state was used up: nothing happens
    assert torch.equal(torch.get_rng_state(), after)
    fresh = RandomState()
    before = torch.get_rng_state()
    fresh.on_train_start(None, None)  # nothing stored: nothing restored
    assert torch.equal(torch.get_rng_state(), before)


def test_written_file_checks_and_finite_weights(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    message = (
        f"the checkpoint {empty} could not be written. Training stopped so that no later state "
        "is lost unnoticed: make the folder writable or free disk space, then continue with "
        "resume=<the run directory>."
    )
    for path in (empty, tmp_path / "missing.ckpt"):
        with pytest.raises(GenlabError) as err:
            check_written(path, 0.0)
        assert str(err.value) == message.replace(str(empty), str(path))
    full = tmp_path / "full.ckpt"
    full.write_bytes(b"x")
    check_written(full, full.stat().st_mtime)  # written now: fine
    # a write is allowed to look up to 1 s older than its start (file systems' coarse clocks)
    os.utime(full, (1000.0, 1000.0))
    check_written(full, 1001.0)
    with pytest.raises(GenlabError):
        check_written(full, 1001.5)  # older than the write it checks
    gone = tmp_path / "gone" / "last.ckpt"  # a folder that is not there says so
    with pytest.raises(GenlabError) as err:
        check_written(gone, 0.0)
    assert str(err.value).startswith(
        f"the checkpoint {gone} could not be written ({gone.parent} is not writable). "
    )
    net = torch.nn.BatchNorm1d(3)
    assert finite_weights(net)
    net.running_mean[1] = float("inf")
    assert not finite_weights(net)
    net.running_mean[1] = 0.0
    net.weight.data[0] = float("nan")
    assert not finite_weights(net)


def test_the_interruption_names_the_signal_step_and_file():
    assert str(RunInterrupted(15, 7, "/r/last.ckpt")) == (
        "interrupted by SIGTERM after step 7; /r/last.ckpt holds step 7"
    )
    err = RunInterrupted(2, 3, None)
    assert str(err) == "interrupted by SIGINT after step 3"
    assert (err.signum, err.step, err.path) == (2, 3, None)


class Lines(logging.Handler):
    """Keeps the messages of the logger it is attached to."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_max_steps_last_step_is_written_into_a_new_folder_without_a_log_line(tmp_path):
    """A run stopped by max_steps=1, its last.ckpt in a folder whose parents do not exist yet:
    they are made; the last step is written right after it, as a step's checkpoint (1, "step");
    and no write adds a line to the log (Lightning's 'weights_only was not set' at every
    write). Seen failing with the folder made without its parents (FileNotFoundError), with
    max_steps=1 not taken for a stop (written at the end instead), and with `weights_only`
    left to Lightning's default (the log line)."""
    folder = tmp_path / "elsewhere" / "deep" / "checkpoints"
    lightning_log = logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector")
    lines, level = Lines(), lightning_log.level
    lightning_log.addHandler(lines)
    lightning_log.setLevel(logging.INFO)
    try:
        seen = run_and_see(
            tmp_path, "trainer.max_steps=1", f"callbacks.last_checkpoint.dirpath={folder}"
        )
    finally:
        lightning_log.removeHandler(lines)
        lightning_log.setLevel(level)
    assert seen == [(0, None), ("end", (1, "step"))]
    assert load(folder / "last.ckpt")["global_step"] == 1
    assert lines.messages == []


def test_a_stale_file_is_not_taken_for_a_write(tmp_path):
    """A last.ckpt left from before (an older run's, modified long ago) where this run writes
    with a writer that silently writes nothing: the check compares the file with the time the
    write started and stops the run naming it. Seen failing with the start time not passed
    (TypeError instead of genlab's message)."""
    folder = tmp_path / "kept"
    folder.mkdir()
    stale = folder / "last.ckpt"
    stale.write_bytes(b"an older run's checkpoint")
    os.utime(stale, (1000.0, 1000.0))
    cfg = make_cfg(
        tmp_path,
        *TINY_AE,
        "~callbacks.model_checkpoint",
        "+trainer.plugins=[{_target_:test_last_checkpoint.SilentlyFailingIO}]",
        f"callbacks.last_checkpoint.dirpath={folder}",
    )
    with pytest.raises(GenlabError) as err:
        train(cfg)
    assert str(err.value).startswith(f"the checkpoint {stale} could not be written. ")


def test_background_writes_are_not_checked_before_they_are_done(tmp_path, monkeypatch):
    """perf.async_checkpoints: genlab's writer writes in a thread and reports a failed write
    itself, so last.ckpt is not looked at right after it was handed over. Each write here
    takes 0.5 s; the run completes with last.ckpt at its last step. Seen failing with every
    write checked at once (whatever the writer, or on rank 0 whatever the writer): the first
    'could not be written'."""
    import genlab.callbacks.last_checkpoint as lc

    write = lc._write_when_ready

    def slow(checkpoint, ready, path):
        time.sleep(0.5)
        write(checkpoint, ready, path)

    monkeypatch.setattr(lc, "_write_when_ready", slow)
    summary = train(make_cfg(tmp_path, *TINY_AE, "perf.async_checkpoints=true"))
    assert summary["status"] == "completed"
    assert load(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 8


def callback_state(checkpoint: dict, name: str) -> dict:
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith(name)]
    return state


def test_last_ckpt_holds_the_csv_mark_and_a_run_with_two_loggers_resumes(tmp_path):
    """A run with the CSV and the TensorBoard loggers stopped at step 3: last.ckpt holds the
    CSV file's mark (its path and the rows it had then) and the step the next batch logs at;
    resumed in place to step 6, the CSV log has every step once (the TensorBoard logger has
    nothing to cut and is left alone). A LastCheckpoint outside a run has nothing to store.
    Seen failing with the marks not stored (the trainer not kept, the loggers not asked, the
    key renamed), with the marks handed to the TensorBoard logger too (AttributeError), and
    with a LastCheckpoint outside a run asking for its trainer (AttributeError). That the
    marks read back cut the log: tests/test_csv_logger.py's resume test."""
    both = [*TINY_AE, "logger=[csv,tensorboard]"]
    first = train(make_cfg(tmp_path, *both, "trainer.max_steps=3"))
    run = Path(first["run_dir"])
    metrics = run / "csv" / "metrics.csv"
    state = callback_state(load(first["last_ckpt"]), "LastCheckpoint")
    assert state.keys() == {"csv_logs", "next_log_step"} and state["next_log_step"] == 3
    (mark,) = state["csv_logs"]
    assert mark["file"] == str(metrics.resolve())
    assert 0 < mark["rows"] <= len(metrics.read_text().splitlines()) - 1
    resumed = train(make_cfg(tmp_path, *both, f"resume={run}", "trainer.max_steps=6"))
    assert resumed["global_step"] == 6
    with open(metrics, newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert steps == list(range(6))
    assert LastCheckpoint(dirpath=str(tmp_path)).state_dict() == {}


def test_random_state_keeps_the_cuda_generators_when_cuda_is_in_use(monkeypatch):
    """With CUDA (faked: this machine may have none) in use, every device's generator state is
    stored and put back; with CUDA there but not in use (a CPU run on a GPU machine) none is
    stored, and CUDA is not started for it; a CPU run's checkpoint continued with CUDA has none
    to put back. Seen failing with the CUDA states stored under another key or as None, stored
    when CUDA was merely available, and put back when CUDA was available (KeyError)."""
    states, put = [torch.tensor([1, 2, 3], dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", put.append)
    assert "cuda" not in RandomState().state_dict()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    saved = RandomState().state_dict()
    assert saved["cuda"] is states
    restore = RandomState()
    restore.load_state_dict(saved)
    restore.on_train_start(None, None)
    assert put == [states]
    cpu_run = {k: v for k, v in saved.items() if k != "cuda"}  # a CPU run's checkpoint
    restore.load_state_dict(cpu_run)
    restore.on_train_start(None, None)  # continued on a GPU machine: no CUDA state to put back
    assert put == [states]


def logged_steps(run: Path, key: str = "train/loss") -> list[int]:
    with open(run / "csv" / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get(key)]


def test_a_run_resumed_from_a_checkpoint_written_after_an_error_logs_at_its_steps(tmp_path):
    """An error at the start of step 3 writes last.ckpt there, before that step's batch ran;
    a run continued from it logs its batches at steps 3..7, as the run that never failed
    (Lightning would guess the checkpoint was taken after the batch and log each row one step
    late: 4..8). Seen failing with the step the next batch logs at not read back from the
    checkpoint (each way: None, another key)."""
    fail = ["+callbacks.fail._target_=test_last_checkpoint.FailAt", "+callbacks.fail.step=3"]
    with pytest.raises(RuntimeError, match="a failure in the middle of training"):
        train(make_cfg(tmp_path / "a", *TINY_AE, *fail))
    assert logged_steps(tmp_path / "a" / "run") == [0, 1, 2]
    last = tmp_path / "a" / "run" / "checkpoints" / "last.ckpt"
    resumed = train(make_cfg(tmp_path / "b", *TINY_AE, f"ckpt_path={last}"))
    assert resumed["global_step"] == 8
    assert logged_steps(tmp_path / "b" / "run") == [3, 4, 5, 6, 7]


def test_a_run_in_another_thread_trains_and_leaves_signals_alone(tmp_path):
    """A run started from a thread other than the main one (a notebook's or a search's worker),
    where Python allows no signal handlers: it trains to its end and writes last.ckpt; the
    process's handlers are untouched. Seen failing with the handlers' record set to None when
    they could not be installed (AttributeError at the end of training)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out: list = []

    def run() -> None:
        try:
            out.append(train(make_cfg(tmp_path, *TINY_AE)))
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            out.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    (summary,) = out
    assert isinstance(summary, dict) and summary["status"] == "completed", summary
    assert load(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 8
    assert {s: signal.getsignal(s) for s in before} == before


def test_rank_zero_takes_the_signals_and_gives_them_back(tmp_path):
    """LastCheckpoint's own part, on a stand-in trainer (no DDP here): a single process and
    rank 0 of several take SIGINT and SIGTERM at the start of training, the other ranks leave
    them alone (rank 0 tells them to stop); the handlers found are given back at the end
    (Lightning's teardown restores them too, later). Seen failing with rank 0 of several not
    taking them, other ranks taking them, and the handlers not given back (none recorded, or
    only the missing ones put back)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for rank_zero, world_size, takes in ((True, 1, True), (True, 2, True), (False, 2, False)):
        cb = LastCheckpoint(dirpath=str(tmp_path))
        trainer = SimpleNamespace(
            is_global_zero=rank_zero,
            world_size=world_size,
            global_step=0,
            loggers=[],
            fit_loop=SimpleNamespace(restarted_on_epoch_end=False),
        )
        try:
            cb.on_train_start(trainer, None)
            taken = [signal.getsignal(s) == cb._on_signal for s in before]
        finally:
            cb.on_exception(trainer, None, RunInterrupted(signal.SIGTERM, 0, None))
        assert taken == [takes, takes], (rank_zero, world_size)
        assert {s: signal.getsignal(s) for s in before} == before


class OtherRank:
    """A stand-in strategy of rank 0 of two, whose other rank decided `other`:
    `reduce_boolean_decision` as Lightning's DDP does it (any rank with all=False, every
    rank with all=True)."""

    checkpoint_io = None

    def __init__(self, other: bool) -> None:
        self.other = other

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:  # noqa: A002
        return (bool(decision) and self.other) if all else (bool(decision) or self.other)


def rank_zero_of_two(other: bool, written: list) -> SimpleNamespace:
    """A stand-in trainer at the end of batch 4 of 8 (step 5), on rank 0 of two."""

    def save_checkpoint(path, weights_only):
        Path(path).write_bytes(b"the state")
        written.append(Path(path))

    epoch_loop = SimpleNamespace(_batches_that_stepped=4, _should_accumulate=lambda: False)
    return SimpleNamespace(
        world_size=2,
        is_global_zero=True,
        global_step=5,
        num_training_batches=8,
        max_steps=-1,
        fast_dev_run=False,
        sanity_checking=False,
        strategy=OtherRank(other),
        fit_loop=SimpleNamespace(epoch_loop=epoch_loop),
        save_checkpoint=save_checkpoint,
    )


def test_a_signal_on_either_rank_stops_both_after_the_same_step(tmp_path):
    """Under DDP a scheduler may signal one rank only: rank 0 asks the others whether any got
    one, so all write last.ckpt and stop after the same step (a rank that trained on alone
    would wait forever for the others). Stand-in trainer and strategy (no DDP here). Seen
    failing with the ranks not asked, or their answer or rank 0's own signal dropped."""
    for mine, other in ((False, True), (True, False), (False, False)):
        cb = LastCheckpoint(dirpath=str(tmp_path / f"{mine}-{other}"))
        if mine:
            cb._on_signal(signal.SIGTERM, None)  # what the handler does when it arrives
        written: list = []
        trainer = rank_zero_of_two(other, written)
        if not (mine or other):
            cb.on_train_batch_end(trainer, None, None, None, 4)  # trains on
            assert written == []
            continue
        with pytest.raises(RunInterrupted) as err:
            cb.on_train_batch_end(trainer, None, None, None, 4)
        assert (err.value.signum, err.value.step) == (signal.SIGTERM, 5)
        assert written == [cb.path] and cb.saved_at == (5, "step")


class FailAfterTraining(L.Callback):
    """Raises RuntimeError when the fit ends, after every callback's on_train_end."""

    def on_fit_end(self, trainer, pl_module) -> None:
        raise RuntimeError("a failure after training")


def test_an_error_after_training_ended_is_the_one_reported(tmp_path):
    """An error after on_train_end (here in another callback's on_fit_end): LastCheckpoint,
    which gave the signal handlers back at the end of training, has nothing more to give back
    when the error reaches it, and the error itself is what the run reports; last.ckpt holds
    the last step. Seen failing with the handlers' record set to None once given back
    (AttributeError raised over the error)."""
    with pytest.raises(RuntimeError, match="a failure after training"):
        train(
            make_cfg(
                tmp_path,
                *TINY_AE,
                "+callbacks.after._target_=test_last_checkpoint.FailAfterTraining",
            )
        )
    assert load(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 8
