"""The real CLI in subprocesses: the default command end to end, eval, W&B offline, DDP,
unique run directories, and a clear error for each kind of bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import FAST, run_cli, run_dirs
from wandb_records import config_keys, history_keys

QUIET = ["~callbacks.rich_progress_bar", "extras.print_config=false"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`python -m genlab.train` with no arguments, W&B in its default `auto` mode with no
    account configured (HOME without credentials), as a new user would run it."""
    cwd = tmp_path_factory.mktemp("default")
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    env["HOME"] = str(cwd)
    proc = subprocess.run(
        [sys.executable, "-m", "genlab.train"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    (run,) = run_dirs(cwd)
    return run, proc


def test_default_run_directory(default_run):
    run, proc = default_run
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["_target_"] == "genlab.models.AutoEncoder"
    assert config["data"]["_target_"] == "genlab.data.MNIST5k"
    assert "${" not in (run / "config.yaml").read_text()  # resolved
    assert (run / "checkpoints" / "last.ckpt").is_file()
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["monitor"] == "val/loss"
    assert summary["best_ckpt"] == str(best)
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/loss", "val/psnr", "val/ssim", "test/loss"} <= set(header)
    grids = sorted((run / "images").glob("reconstructions_e*.png"))
    assert len(grids) == config["trainer"]["max_epochs"]
    # the model learned: reconstructions of test digits are far better than the first epoch's
    assert summary["metrics"]["test/psnr"] > 15.0, summary["metrics"]
    assert "wandb sync" in proc.stdout + proc.stderr


def test_default_run_wandb_offline(default_run):
    run, _ = default_run
    (offline,) = (run / "wandb").glob("offline-run-*")
    (records,) = offline.glob("run-*.wandb")
    assert {
        "train/loss",
        "val/loss",
        "val/psnr",
        "test/loss",
        "trainer/global_step",
    } <= history_keys(records)
    assert {"model", "data", "trainer"} <= config_keys(records)  # the nested, resolved config
    images = list((offline / "files" / "media" / "images").rglob("reconstructions_*.png"))
    assert len(images) >= 1


def test_eval_reproduces_test_metrics(default_run):
    run, _ = default_run
    summary = json.loads((run / "summary.json").read_text())
    run_cli(
        f"ckpt_path={summary['test_ckpt']}",
        "extras.print_config=false",
        module="genlab.eval",
        cwd=run.parent,
    )
    (result,) = (run / "eval").glob("*/metrics.json")
    evaluated = json.loads(result.read_text())["test"]
    for key in ("test/loss", "test/psnr", "test/ssim"):
        assert evaluated[key] == pytest.approx(summary["metrics"][key], rel=1e-6, abs=1e-6), key


def test_checkpoints_load_weights_only_and_carry_config(default_run):
    run, _ = default_run
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["genlab_config"]["model"]["latent_dim"] == 32


def test_mismatched_checkpoint_is_refused_before_training(default_run, tmp_path):
    run, _ = default_run
    proc = run_cli(
        "model.latent_dim=16",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        *QUIET,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert "does not match the model" in proc.stderr and "latent_dim" not in proc.stdout[-200:]
    assert "encoder.head.weight" in proc.stderr and "Traceback" not in proc.stderr
    (new_run,) = run_dirs(tmp_path)
    assert not (new_run / "checkpoints").exists()


def test_unreadable_checkpoint_gets_a_clear_error(tmp_path):
    bad = tmp_path / "half.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    proc = run_cli(f"ckpt_path={bad}", module="genlab.eval", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "could not be read as a checkpoint" in proc.stderr
    missing = run_cli(
        f"ckpt_path={tmp_path / 'nope.ckpt'}", module="genlab.eval", cwd=tmp_path, check=False
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_unknown_options_are_refused(tmp_path):
    proc = run_cli("model=no_such_model", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "no_such_model" in proc.stderr and "model" in proc.stderr
    proc = run_cli("trainer.max_epochz=3", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "max_epochz" in proc.stderr
    assert not run_dirs(tmp_path) or not any(
        (d / "checkpoints").exists() for d in run_dirs(tmp_path)
    )


def test_missing_data_is_reported_before_training(tmp_path):
    proc = run_cli("data=mnist", "data.download=false", *QUIET, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert str(tmp_path / "data" / "MNIST" / "raw") in proc.stderr
    (run,) = run_dirs(tmp_path)
    assert not (run / "checkpoints").exists() and not (run / "summary.json").exists()


def test_image_size_the_nets_cannot_take(tmp_path):
    proc = run_cli(
        "model/encoder=conv",
        "model/decoder=conv",
        "data.image_size=30",
        *QUIET,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        "data.image_size must be a multiple of 4" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_two_runs_started_together_get_their_own_directories(tmp_path):
    args = [
        sys.executable,
        "-m",
        "genlab.train",
        "train=false",
        "test=false",
        "logger=csv",
        *QUIET,
    ]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2 and all((d / "config.yaml").is_file() for d in dirs)


@pytest.mark.parametrize("model", ["ae", "vae"])
def test_ddp_sim_trains_in_one_run_directory(tmp_path, model):
    # (the GAN's DDP run, with identical weights on both ranks, is in test_gan.py)
    run_cli(
        f"model={model}",
        "trainer=ddp_sim",
        *(o for o in FAST if o != "trainer=cpu"),
        cwd=tmp_path,
        timeout=600,
    )
    (run,) = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    # 4 batches per epoch on each of the 2 processes (each takes half of every epoch)
    assert summary["global_step"] == 8
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 logged into the same directory
    # metrics logged once (rank 0), not once per process
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(rows) == 8 and len({r["step"] for r in rows}) == 8
    # one image grid per epoch, written by rank 0 only
    assert len(list((run / "images").glob("*_e*.png"))) == 2 * len(
        {p.name.split("_e")[0] for p in (run / "images").glob("*_e*.png")}
    )


def test_configs_ship_inside_the_built_package(tmp_path):
    """A non-editable install (the built wheel, unpacked) finds its configs and trains."""
    import zipfile

    from conftest import REPO

    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(REPO),
            "-w",
            str(wheel_dir),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheel_dir.glob("genlab-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "genlab" / "conf" / "train.yaml").is_file()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {"PYTHONPATH": str(site)}
    proc = run_cli("debug=fdr", "logger=csv", *QUIET, cwd=cwd, env=env)
    assert "genlab: error" not in proc.stderr
    imported = subprocess.run(
        [sys.executable, "-c", "import genlab; print(genlab.__file__)"],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip().startswith(str(site))  # the built package, not src/
    (run,) = run_dirs(cwd)
    assert (run / "config.yaml").is_file() and (run / "summary.json").is_file()
