"""What a run's CSV log says about it, for tests: the training rows by step, and the check that
a resumed run really continued from its checkpoint's step (a run restarted from step 0 with
the same seed lands on the same bits, so equal final weights alone do not prove a resume)."""

from __future__ import annotations

import csv
from pathlib import Path


def train_rows(run_dir: Path | str, key: str) -> dict[int, str]:
    """{step: logged text of `key`} for the rows of csv/metrics.csv that hold `key`."""
    with open(Path(run_dir) / "csv" / "metrics.csv") as f:
        return {int(r["step"]): r[key] for r in csv.DictReader(f) if r.get(key)}


def assert_resumed_at(straight: Path | str, resumed: Path | str, k: int, key: str) -> None:
    """The resumed run logged `key` only at steps >= k (the checkpoint's step), on the same
    steps as the uninterrupted run from k on, with the same values to the last digit."""
    rows, want = train_rows(resumed, key), train_rows(straight, key)
    want = {s: v for s, v in want.items() if s >= k}
    assert rows, f"the resumed run logged no {key}"
    assert min(rows) >= k, f"the resumed run logged {key} at step {min(rows)} < {k}: not resumed"
    assert rows == want
