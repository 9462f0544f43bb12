"""In-process training through the real config: every model fast_dev_runs."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg, options

from genlab.train import train


@pytest.mark.parametrize("model", options("model"))
def test_fast_dev_run_every_model(tmp_path, model):
    cfg = make_cfg(tmp_path, f"model={model}", "debug=fdr", "logger=csv", "data.batch_size=16")
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert any(k.startswith("test/") for k in summary["metrics"]), summary["metrics"]
    for value in summary["metrics"].values():
        assert value is None or torch.isfinite(torch.tensor(value))


# Resume (weights, optimizer states, step counters bit for bit against an uninterrupted run,
# for every family, mid-epoch and across epochs): tests/test_trust.py.
