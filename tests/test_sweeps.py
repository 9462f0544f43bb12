"""Multirun, submitit, resume and precision/compile switches, through the real CLI (Optuna
searches: test_search.py)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from conftest import FAST, make_cfg, run_cli, run_dirs
from wandb_records import records

from genlab.train import train

NO_CPU_PRESET = [o for o in FAST if o != "trainer=cpu"]


def sweep_dirs(root):
    base = root / "logs" / "train" / "multiruns"
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.exists() else []


def wandb_run_info(job_dir):
    (run_file,) = job_dir.glob("wandb/offline-run-*/run-*.wandb")
    (run,) = [r.run for r in records(run_file) if r.WhichOneof("record_type") == "run"]
    return run


def test_multirun_records_failures_groups_wandb_and_runs_ddp_jobs(tmp_path):
    proc = run_cli(
        "-m",
        "data.image_size=28,30",
        "model.latent_dim=8,16",
        "model/encoder=conv",
        "model/decoder=conv",
        "trainer=ddp_sim",
        *NO_CPU_PRESET,
        "logger=[csv,wandb]",
        cwd=tmp_path,
        timeout=900,
        check=False,
    )
    # the two image_size=30 jobs fail: the sweep goes on, and then exits 1 (multirun_fail_exit)
    assert proc.returncode == 1 and "2 of 4 jobs of the multirun" in proc.stderr
    (sweep,) = sweep_dirs(tmp_path)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    with open(sweep / "sweep_summary.csv") as f:
        rows = {r["job"]: r for r in csv.DictReader(f)}
    assert (sweep / "sweep_summary.md").read_text().count("\n") == 2 + 4
    for job, row in rows.items():
        if "data.image_size=30" in row["overrides"]:
            assert row["status"] == "failed" and "multiple of 4" in row["error"]
        else:
            assert row["status"] == "completed" and float(row["val/loss"]) > 0
            # DDP children of each job ran that job, in its directory
            assert (sweep / job / "train_ddp_process_1.log").is_file()
            run = wandb_run_info(sweep / job)
            assert run.run_group == sweep.name
            assert (
                "model.latent_dim=" in run.display_name
                and "data.image_size=28" in run.display_name
            )
    assert not run_dirs(tmp_path)  # no stray single-run directories


def test_submitit_local_launcher_runs_each_job(tmp_path):
    run_cli("-m", "hydra/launcher=local", "model.latent_dim=4,8", *FAST, cwd=tmp_path, timeout=600)
    (sweep,) = sweep_dirs(tmp_path)
    assert (sweep / ".submitit").is_dir()
    summaries = [json.loads((sweep / j / "summary.json").read_text()) for j in ("0", "1")]
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    assert "model.latent_dim=4" in (sweep / "sweep_summary.md").read_text()


# resume=auto continuing a run in place, its CSV, TensorBoard and W&B history kept:
# test_integrity.py::test_resume_continues_with_the_stored_config_and_never_rewrites_it


PROBE = ["+callbacks.probe._target_=probes.LayerProbe"]


@pytest.mark.parametrize("precision,dtype", [("bf16-mixed", "bfloat16"), ("32-true", "float32")])
def test_precision_reaches_the_layers(tmp_path, precision, dtype):
    """trainer.precision is what every linear layer computes in during the training steps."""
    summary = train(
        make_cfg(
            tmp_path,
            "model=ae",
            *FAST,
            f"trainer.precision={precision}",
            "test=false",
            *PROBE,
            f"+callbacks.probe.out={tmp_path}/probe.json",
        )
    )
    assert summary["status"] == "completed" and math.isfinite(summary["metrics"]["val/loss"])
    assert json.loads((tmp_path / "probe.json").read_text())["dtypes"] == [f"torch.{dtype}"]


def test_compile_switch_keeps_checkpoint_keys(tmp_path):
    """compile=true: the nets' layers run under torch.compile's tracing (seen from inside by
    torch.compiler.is_compiling(), public API; without compile they never do), and the
    checkpoint keeps plain parameter names."""
    # aot_eager traces the nets through torch.compile's graph capture without a C++ toolchain
    cfg = make_cfg(
        tmp_path,
        *FAST,
        "compile=true",
        "compile_backend=aot_eager",
        "test=false",
        *PROBE,
        f"+callbacks.probe.out={tmp_path}/probe.json",
    )
    summary = train(cfg)
    assert json.loads((tmp_path / "probe.json").read_text())["compiling"] == [True]
    state = torch.load(summary["last_ckpt"], weights_only=True)["state_dict"]
    assert "encoder.head.weight" in state and not any("_orig_mod" in k for k in state)


def test_requeued_job_continues_from_its_last_checkpoint(tmp_path):
    # What a SLURM requeue does: the same job runs again in its own, already used directory.
    sweep = tmp_path / "sweep"
    run_cli(
        "-m", "model.latent_dim=8", *FAST, "test=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    first = json.loads((sweep / "0" / "summary.json").read_text())
    run_cli(
        "-m",
        "model.latent_dim=8",
        *FAST,
        "test=false",
        "trainer.max_epochs=3",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    second = json.loads((sweep / "0" / "summary.json").read_text())
    assert (first["global_step"], second["global_step"]) == (8, 12)
