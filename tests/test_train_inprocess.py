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

# narrower widths (channels, hidden sizes: the same layers, kernels, strides and lengths as
# shipped), fewer draws, and fewer items of the same synthesized data (spoken digits are
# made by espeak, captioned canvases drawn, when the run prepares its data: 2,000 clips and
# 13,000 canvases as shipped) where a run as shipped takes many seconds on a CPU; what this
# test checks (the option composes with its data and trains, validates, tests and draws its
# grids) does not depend on the width or the number of items
FEW_CLIPS = ("data.speakers=2", "data.takes=3")
STACKGAN_NARROW = (
    "data.n_train=64",
    "data.n_val=16",
    "data.n_test=16",
    "data.n_heldout=16",
    "model.stage1_generator.base_channels=32",
    "model.stage1_discriminator.base_channels=16",
    "model.stage2_generator.base_channels=32",
    "model.stage2_discriminator.base_channels=16",
)
NARROWER = {
    "svg_lp": ("model.encoder.hidden_channels=[16,32,64,128]", "model.eval_samples=2"),
    "wavenet": (*FEW_CLIPS, "callbacks.sample_grid.n=4"),
    "wavegan": (*FEW_CLIPS, "model.generator.model_size=8", "model.discriminator.model_size=8"),
    "lstm_predictor": ("model.net.hidden_size=256",),
    "stackgan": STACKGAN_NARROW,
    "stackgan_joint": STACKGAN_NARROW,
}


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
        *NARROWER.get(model, ()),
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
