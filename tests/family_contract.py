"""The checks every model family gets (as diffusers' SchedulerCommonTest): a family's test
class subclasses `FamilyContract`, names its tiny configuration (`overrides`) and the training
scalar it logs (`loss_key`), and inherits:

- exact resume in the middle of an epoch: 10 steps straight == 6 steps, then resumed to 10
  (bit-equal weights, EMA and buffers, optimizer and scheduler states, step counters), and the
  resumed run started at step 6 (a run restarted from 0 with the same seed lands on the same
  bits: its logged steps tell them apart);
- no host-device synchronisation between logging steps: `.item()`, `.tolist()`,
  `bool(tensor)`, `float()`, `int()`, `.cpu()` and Python-number `torch.tensor(...,
  device=...)` are counted per training batch, the default callbacks and progress bar
  included; none may happen (on the CPU these calls do not wait, but they are the calls that
  would on a GPU). Not counted: calls inside torch.optim, whose step counters are CPU tensors
  unless an optimizer is `capturable` or `fused` (then they stay on the device), and what a
  DataLoader's dataset does to make a batch (on the host, on a GPU too).

Seen failing: the resume check with `ckpt_path=None` forced in training.py's `trainer.fit`
(only the logged steps tell); the sync check with the non-finite check every 10 steps, the
classifier's label check at every step and the conditional nets reading the labels' range.
"""

from __future__ import annotations

import collections
import traceback
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import FAST, assert_same_state, load, make_cfg
from runlogs import assert_resumed_at

# the shared data folder of each pytest session (by its base temporary directory)
_DATA_DIRS: dict[Path, Path] = {}
WATCHED = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu")
LOG_EVERY = 50


def host_side(frames: list) -> bool:
    """Calls that stay on the host on a GPU too: an optimizer's step counters (CPU tensors
    unless capturable or fused), and what a DataLoader's dataset does to make a batch."""
    if any("torch/optim/" in f.filename for f in frames[-2:]):
        return True
    return any("torch/utils/data/" in f.filename for f in frames)


class SyncCounter(L.Callback):
    """Counts the watched calls made between the start of a batch that is not a logging step
    and the start of the next batch (everything the step and every batch hook did)."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.sites: collections.Counter = collections.Counter()
        self.active = False
        self.batches = 0
        self._saved: dict[str, object] = {}

    def _wrap(self, name: str):
        original = getattr(torch.Tensor, name)

        def watched(tensor, *args, **kwargs):
            if self.active:
                frames = traceback.extract_stack()[:-1]
                if not host_side(frames):
                    self.counts[name] += 1
                    self.sites[(name, f"{frames[-1].filename}:{frames[-1].lineno}")] += 1
            return original(tensor, *args, **kwargs)

        self._saved[name] = original
        return watched

    def on_fit_start(self, trainer, pl_module) -> None:
        for name in WATCHED:
            setattr(torch.Tensor, name, self._wrap(name))
        original = torch.tensor
        self._saved["torch.tensor"] = original

        def tensor(data, *args, **kwargs):
            if self.active and "device" in kwargs and not isinstance(data, torch.Tensor):
                frames = traceback.extract_stack()[:-1]
                if not host_side(frames):
                    self.counts["tensor(device=)"] += 1
                    self.sites[
                        ("tensor(device=)", f"{frames[-1].filename}:{frames[-1].lineno}")
                    ] += 1
            return original(data, *args, **kwargs)

        torch.tensor = tensor

    def on_fit_end(self, trainer, pl_module) -> None:
        torch.tensor = self._saved.pop("torch.tensor")  # type: ignore[assignment]
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # not counted: an epoch's first batch (after its start-up) and last (validation and
        # the epoch's end follow it), and logging steps, which may sync
        first, last = batch_idx == 0, batch_idx + 1 >= trainer.num_training_batches
        logs = (trainer.global_step + 1) % LOG_EVERY == 0
        self.active = not (first or last or logs)
        self.batches += self.active

    def on_validation_start(self, trainer, pl_module) -> None:
        self.active = False

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.active = False


def train_counting(cfg, counter: SyncCounter) -> dict:
    """`genlab.training.train` with `counter` as the run's last callback."""
    import genlab.training as training

    build = training.build_trainer

    def with_counter(cfg, model, callbacks, loggers):
        return build(cfg, model, [*callbacks, counter], loggers)

    training.build_trainer = with_counter
    try:
        return training.train(cfg)
    finally:
        training.build_trainer = build


class FamilyContract:
    """Subclass with `overrides` (the family, tiny) and `loss_key` (a training scalar)."""

    overrides: tuple[str, ...] = ()
    # added for the sync check only (e.g. no stage change of a growing model in its batches:
    # a stage's snapshot is an event, as an epoch's end is)
    sync_overrides: tuple[str, ...] = ()
    loss_key = "train/loss"
    # options that make one epoch 4 batches and validation short, for the family's data
    epoch = ("trainer.limit_train_batches=4", "trainer.limit_val_batches=1")

    @pytest.fixture
    def data_dir(self, tmp_path_factory) -> Path:
        """One data folder for every contract run in this process: data synthesized on first
        use (eSpeak's spoken digits for WaveNet and WaveGAN) is made once, not once per run.
        Deterministic data, so sharing it changes no run."""
        base = tmp_path_factory.getbasetemp()
        if base not in _DATA_DIRS:
            _DATA_DIRS[base] = tmp_path_factory.mktemp("family_data")
        return _DATA_DIRS[base]

    def test_resume_is_exact_mid_epoch_and_starts_at_the_checkpoint(self, tmp_path, data_dir):
        from genlab.train import train

        common = [
            *FAST,
            *self.overrides,
            *self.epoch,
            "test=false",
            "trainer.max_epochs=5",
            "trainer.log_every_n_steps=1",
            f"paths.data_dir={data_dir}",
        ]
        straight = train(make_cfg(tmp_path / "a", *common, "trainer.max_steps=10"))
        first = train(make_cfg(tmp_path / "b", *common, "trainer.max_steps=6"))
        assert load(first["last_ckpt"])["global_step"] == 6
        resumed = train(
            make_cfg(
                tmp_path / "c", *common, "trainer.max_steps=10", f"ckpt_path={first['last_ckpt']}"
            )
        )
        assert straight["global_step"] == resumed["global_step"] == 10
        assert_same_state(load(straight["last_ckpt"]), load(resumed["last_ckpt"]))
        assert_resumed_at(straight["run_dir"], resumed["run_dir"], 6, self.loss_key)

    def test_no_host_device_sync_between_logging_steps(self, tmp_path, data_dir):
        fast = [o for o in FAST if "log_every" not in o and "rich_progress_bar" not in o]
        cfg = make_cfg(
            tmp_path,
            *fast,
            *self.overrides,
            *self.sync_overrides,
            f"trainer.log_every_n_steps={LOG_EVERY}",
            f"paths.data_dir={data_dir}",
            "trainer.limit_train_batches=10",
            "trainer.limit_val_batches=1",
            "trainer.max_epochs=1",
            "test=false",
        )
        assert "rich_progress_bar" in cfg.callbacks  # as users run it
        counter = SyncCounter()
        summary = train_counting(cfg, counter)
        assert summary["status"] == "completed"
        assert counter.batches >= 3  # batches measured
        assert not counter.counts, f"{dict(counter.counts)} at {counter.sites.most_common(5)}"
