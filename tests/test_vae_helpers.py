"""The shared trained checkpoints (conftest.trained) are what they say."""

from __future__ import annotations

from pathlib import Path

from conftest import trained


def test_helper_trains_a_checkpoint():
    summary = trained("vae")
    assert summary["status"] == "completed" and summary["global_step"] == 30
    assert Path(summary["last_ckpt"]).is_file()
