"""In-process training through the real config: every model fast_dev_runs."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg, options

from genlab.train import train

# model options that train on another run's checkpoint; fast_dev_run writes none, so each is
# trained after its prerequisite run in its family's tests
NEEDS_A_RUN = {
    "stackgan_stage2": "tests/test_stackgan.py::test_stage_two_resumes_exactly_mid_stage",
    "shapehd": "tests/test_voxel_gan.py::test_shapehd_fine_tuning_keeps_the_prior_frozen",
}


# the shipped model on shorter data where one batch at full size takes long on a CPU (WaveNet
# generates its sample grid one sample at a time: 4,096 steps at the data's length, 600 here,
# more than its 512-sample receptive field; the LSTM encoder-predictor reads whole 64x64
# frames as vectors)
SHORTER = {"wavenet": ("data.length=600",), "lstm_predictor": ("data.image_size=32",)}


@pytest.mark.parametrize("model", [m for m in options("model") if m not in NEEDS_A_RUN])
def test_fast_dev_run_every_model(tmp_path, model):
    """The model as shipped, with its data, through fit (one batch), its callbacks and test."""
    cfg = make_cfg(
        tmp_path,
        f"model={model}",
        "debug=fdr",
        "logger=csv",
        "data.batch_size=4",
        *SHORTER.get(model, ()),
    )
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert any(k.startswith("test/") for k in summary["metrics"]), summary["metrics"]
    for value in summary["metrics"].values():
        assert value is None or torch.isfinite(torch.tensor(value))


def test_models_left_out_above_are_trained_elsewhere():
    """Each option left out of the fast_dev_run above names a test that exists."""
    from pathlib import Path

    for model, where in NEEDS_A_RUN.items():
        path, name = where.split("::")
        assert model in options("model"), model
        assert f"def {name}(" in (Path(__file__).parents[1] / path).read_text(), where


# Resume (weights, optimizer states, step counters bit for bit against an uninterrupted run,
# for every family, mid-epoch and across epochs): tests/test_trust.py.
