"""Shared test helpers: compose the real Hydra config, run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from PIL import Image

import genlab.utils.resolvers  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "src" / "genlab" / "conf"

# Tiny nets on 2 shared cores: one intra-op thread per process is much faster than two
# competing ones (also for the CLI subprocesses, which inherit the environment).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Never talk to W&B servers from tests; keep its console quiet.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("WANDB_DISABLE_CODE", "true")

# A small, fast run: a few batches, two epochs, CPU, CSV logger, no rich console output.
FAST = [
    "trainer=cpu",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "~callbacks.rich_progress_bar",
    "trainer.enable_model_summary=false",
    "logger=csv",
    "extras.print_config=false",
    "data.batch_size=32",
]
# A GAN small enough that a few dozen iterations take a second or two.
TINY_GAN = [
    "model=gan",
    "model.latent_dim=8",
    "model.generator.hidden_dims=[32]",
    "model.discriminator.hidden_dims=[32]",
    "data.batch_size=16",
]
# A WaveNet of one stack of three 4-channel layers.
TINY_WAVENET = (
    "model=wavenet",
    "model.net.residual_channels=4",
    "model.net.gate_channels=4",
    "model.net.skip_channels=8",
    "model.net.layers_per_stack=3",
    "model.net.stacks=1",
)
# Moving digits small enough for a video model's few steps: 16 pixels, 3 + 3 frames.
TINY_VIDEO = (
    "data.image_size=16",
    "data.context_frames=3",
    "data.future_frames=3",
    "data.batch_size=4",
    "data.train_size=64",
    "data.val_size=8",
    "data.test_size=8",
)
# A ConvLSTM predictor of one 4-channel layer on them.
TINY_CONVLSTM = (
    "model=convlstm",
    *TINY_VIDEO,
    "model.net.hidden_channels=[4]",
    "model.net.frame_channels=4",
    "model.net.downsample=1",
)


# A barely trained domain classifier: enough for the generation metrics' plumbing, not for
# judging quality.
TINY_CLASSIFIER = [
    "model=classifier",
    "model.net.hidden_channels=[4,8]",
    "model.net.feature_dim=16",
    "trainer.max_epochs=1",
    "~callbacks.reconstruction_grid",
    "~callbacks.sample_grid",
    "test=false",
]


def short_trainer(max_steps: int, *callbacks: L.Callback, **options) -> L.Trainer:
    """A CPU Trainer for a test's own few steps, watched by `callbacks`: no logger,
    checkpoints, progress bar or model summary; `options` (limit_val_batches=0, ...) add to
    these."""
    return L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        **options,
    )


def load(path) -> dict:
    """A checkpoint file as plain tensors on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    """Two checkpoints hold bit-equal weights (incl. EMA and BN buffers), optimizer states
    (incl. each parameter group's learning rate), learning-rate scheduler states and step
    counters (the step, and the epoch the fit loop stands in: its progress counts)."""
    assert a["global_step"] == b["global_step"]
    assert a["epoch"] == b["epoch"], (a["epoch"], b["epoch"])
    progress = [c["loops"]["fit_loop"]["epoch_progress"] for c in (a, b)]
    assert progress[0] == progress[1], progress
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert oa["state"].keys() == ob["state"].keys()
        for i in oa["state"]:
            for name, value in oa["state"][i].items():
                assert torch.equal(
                    torch.as_tensor(value), torch.as_tensor(ob["state"][i][name])
                ), (i, name)
        lrs = [[g.get("lr") for g in o["param_groups"]] for o in (oa, ob)]
        assert lrs[0] == lrs[1], lrs
    sa, sb = a.get("lr_schedulers", []), b.get("lr_schedulers", [])
    assert len(sa) == len(sb), (len(sa), len(sb))
    for i, (xa, xb) in enumerate(zip(sa, sb, strict=True)):
        assert xa.keys() == xb.keys(), i
        for name in xa:
            va, vb = xa[name], xb[name]
            if isinstance(va, torch.Tensor) or isinstance(vb, torch.Tensor):
                assert torch.equal(torch.as_tensor(va), torch.as_tensor(vb)), (i, name)
            else:
                assert va == vb, (i, name, va, vb)


# --- trained checkpoints shared by many test files, made once per session -------------------
# FAST, but one epoch of 30 batches: enough for a VAE to learn that MNIST's background is black
QUICK = [
    o for o in FAST if not o.startswith(("trainer.max_epochs", "trainer.limit_train_batches"))
] + ["trainer.max_epochs=1", "trainer.limit_train_batches=30"]


@cache
def trained(model: str = "vae", *extra: str) -> dict:
    """Train `model` on static-binarized mnist_5k for 30 batches; return the run summary."""
    from genlab.train import train

    root = Path(tempfile.mkdtemp(prefix=f"genlab_{model}_"))
    summary = train(make_cfg(root, *QUICK, f"model={model}", "data.binarize=static", *extra))
    summary["root"] = root
    return summary


# --- reading back the grids genlab writes ------------------------------------------------------
def tiles(path: Path, rows: int, cols: int, size: int = 28) -> torch.Tensor:
    """The tiles of a make_grid PNG (padding 2) of grey images: (rows, cols, size, size)."""
    pixels = torch.from_numpy(np.array(Image.open(path))[..., 0]).float() / 255
    assert pixels.shape == (rows * (size + 2) + 2, cols * (size + 2) + 2)
    step = size + 2
    return torch.stack(
        [
            torch.stack(
                [pixels[2 + r * step :, 2 + c * step :][:size, :size] for c in range(cols)]
            )
            for r in range(rows)
        ]
    )


def options(group: str) -> list[str]:
    """The option names of a config group (e.g. 'model', 'data', 'trainer')."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def make_cfg(tmp_path: Path, *overrides: str, config_name: str = "train") -> DictConfig:
    """Compose the real config with `overrides`, as `python -m genlab.<config_name>` would,
    with every path under `tmp_path` (run directory: tmp_path/run)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(
            config_name,
            overrides=[f"paths.root_dir={tmp_path}", *overrides],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_cli(
    *args: str,
    cwd: Path,
    module: str = "genlab.train",
    check: bool = True,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` in `cwd` and return the finished process."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"`python -m {module} {' '.join(args)}` exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def run_dirs(root: Path, task: str = "train") -> list[Path]:
    """The run directories a CLI invocation made under root/logs/<task>/runs/."""
    base = root / "logs" / task / "runs"
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.exists() else []


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()
