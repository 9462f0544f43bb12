"""In-process training through the real config: every model fast_dev_runs; resume continues."""

from __future__ import annotations

import pytest
import torch
from conftest import FAST, make_cfg, options

from genlab.train import train


@pytest.mark.parametrize("model", options("model"))
def test_fast_dev_run_every_model(tmp_path, model):
    cfg = make_cfg(tmp_path, f"model={model}", "debug=fdr", "logger=csv", "data.batch_size=16")
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert any(k.startswith("test/") for k in summary["metrics"]), summary["metrics"]
    for value in summary["metrics"].values():
        assert value is None or torch.isfinite(torch.tensor(value))


def test_resume_continues_from_saved_step(tmp_path):
    first = train(make_cfg(tmp_path / "a", *FAST, "test=false"))
    assert first["global_step"] == 2 * 4
    ckpt = torch.load(first["last_ckpt"], weights_only=True)
    assert ckpt["global_step"] == 8 and ckpt["epoch"] == 1
    adam_steps = ckpt["optimizer_states"][0]["state"][0]["step"]
    assert float(adam_steps) == 8

    second = train(
        make_cfg(tmp_path / "b", *FAST, "trainer.max_epochs=3", f"ckpt_path={first['last_ckpt']}")
    )
    # one more epoch of 4 steps on top of the restored 8, optimizer state carried over
    assert second["global_step"] == 12
    resumed = torch.load(second["last_ckpt"], weights_only=True)
    assert float(resumed["optimizer_states"][0]["state"][0]["step"]) == 12
    assert resumed["epoch"] == 2
