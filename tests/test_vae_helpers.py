"""Shared by the VAE, sample and latent tests: tiny trained checkpoints, made once per session."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from conftest import FAST, make_cfg

from genlab.train import train

# FAST, but one epoch of 30 batches: enough for a VAE to learn that MNIST's background is black
QUICK = [
    o for o in FAST if not o.startswith(("trainer.max_epochs", "trainer.limit_train_batches"))
] + ["trainer.max_epochs=1", "trainer.limit_train_batches=30"]


@cache
def trained(model: str = "vae", *extra: str) -> dict:
    """Train `model` on static-binarized mnist_5k for 30 batches; return the run summary."""
    root = Path(tempfile.mkdtemp(prefix=f"genlab_{model}_"))
    summary = train(make_cfg(root, *QUICK, f"model={model}", "data.binarize=static", *extra))
    summary["root"] = root
    return summary


def test_helper_trains_a_checkpoint():
    summary = trained("vae")
    assert summary["status"] == "completed" and summary["global_step"] == 30
    assert Path(summary["last_ckpt"]).is_file()
