"""The CSV logger writes metrics.csv at its interval, not at every row (Lightning calls
`save()` after each row it logs), yet the file holds every row when a run ends, when it is
stopped by SIGTERM, and a run resumed after being killed continues the checkpoint's rows
without duplicates.

Seen failing (in a scratch copy of src/): `save()` writing at every call (a write per row),
`finalize` not writing (the rows after the last interval missing), and a resume without
`continue_from` (steps 6 and 7 twice)."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest
from conftest import FAST, make_cfg
from runlogs import train_rows

import genlab.utils.loggers as loggers
from genlab.callbacks.last_checkpoint import RunInterrupted
from genlab.train import train

TINY = [
    *FAST,
    "model=ae",
    "model.encoder.hidden_dims=[16]",
    "model.decoder.hidden_dims=[16]",
    "test=false",
]


@pytest.fixture
def watched(monkeypatch):
    """Every row given to the CSV logger, and every time metrics.csv is opened to write."""
    seen: dict[str, list] = {"rows": [], "writes": []}
    log_metrics = loggers.CSVLogger.log_metrics

    def logged(self, metrics, step=None):
        seen["rows"].append({**dict(metrics), "step": step})
        return log_metrics(self, metrics, step)

    def opened(file, mode="r", *args, **kwargs):
        if Path(file).name.startswith("metrics.csv") and mode[0] in "wa":
            seen["writes"].append(mode)
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(loggers.CSVLogger, "log_metrics", logged)
    monkeypatch.setattr(loggers, "open", opened, raising=False)
    return seen


def file_rows(run: Path) -> list[dict]:
    """metrics.csv's rows with their filled cells only, numbers as floats."""
    with open(run / "csv" / "metrics.csv") as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def as_logged(rows: list[dict]) -> list[dict]:
    return [{k: float(v) for k, v in r.items() if v is not None} for r in rows]


def test_rows_are_written_at_the_interval_and_all_of_them_by_the_end(tmp_path, watched):
    summary = train(
        make_cfg(
            tmp_path,
            *TINY,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=40",
            "logger.csv.flush_every_n_rows=8",
            "logger.csv.flush_every_s=null",
            "~callbacks.model_checkpoint",  # no checkpoint writes the rows: the interval and
            "~callbacks.last_checkpoint",  # the end do
        )
    )
    assert summary["status"] == "completed" and summary["global_step"] == 40
    rows = watched["rows"]
    assert len(rows) >= 41 and len(rows) % 8  # a row per step, validation; some at the end
    writes = len(watched["writes"])
    assert writes == len(rows) // 8 + 1, (writes, len(rows))
    assert file_rows(tmp_path / "run") == as_logged(rows)


@pytest.fixture
def keep_handlers():
    """The test process's SIGTERM handler, put back after the test."""
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def test_a_run_stopped_by_sigterm_has_written_every_row(tmp_path, watched, keep_handlers):
    """SIGTERM at the start of step 2 (slow_steps.SelfSignal, as in test_signals): the run
    stops after the step, and metrics.csv holds every row logged, well before its interval."""
    cfg = make_cfg(
        tmp_path,
        *TINY,
        "trainer.max_epochs=50",
        "trainer.limit_train_batches=8",
        "+callbacks.sig._target_=slow_steps.SelfSignal",
        "+callbacks.sig.step=2",
        f"+callbacks.sig.signals=[{int(signal.SIGTERM)}]",
    )
    with pytest.raises(RunInterrupted):
        train(cfg)
    rows = watched["rows"]
    assert any(r.get("train/loss") is not None for r in rows)
    assert file_rows(tmp_path / "run") == as_logged(rows)


def test_a_resumed_run_drops_rows_written_after_its_checkpoint(tmp_path):
    """A run stopped at step 6 (last.ckpt), then rows of steps 6 and 7 appended to its CSV as
    a run killed after its checkpoint would have left them; resumed in place to step 10:
    every training step once, with the values of an uninterrupted run."""
    common = [*TINY, "trainer.max_epochs=5", "trainer.limit_train_batches=4"]
    straight = train(make_cfg(tmp_path / "a", *common, "trainer.max_steps=10"))
    first = train(make_cfg(tmp_path / "b", *common, "trainer.max_steps=6"))
    run = Path(first["run_dir"])
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    with open(run / "csv" / "metrics.csv", "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        for step in (6, 7):
            writer.writerow({"step": step, "epoch": 1, "train/loss": 999.0})
    resumed = train(make_cfg(tmp_path / "b", *common, f"resume={run}", "trainer.max_steps=10"))
    assert resumed["global_step"] == 10 and Path(resumed["run_dir"]) == run
    steps = [int(r["step"]) for r in file_rows(run) if "train/loss" in r]
    assert steps == list(range(10))
    assert train_rows(run, "train/loss") == train_rows(straight["run_dir"], "train/loss")
