"""The promises users lean on when something goes wrong: last.ckpt is the last state, resume is
exact for every family (at an epoch boundary and mid-epoch), a refused resume changes nothing,
divergence stops every family without writing a bad checkpoint, a checkpoint that cannot be
written fails the run, summary.json tells the truth (failed, diverged, interrupted, killed).
Real training of tiny models, real subprocesses for signals."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, TINY_GAN, assert_same_state, load, make_cfg, run_cli, run_dirs
from lightning.pytorch.plugins.io import TorchCheckpointIO
from runlogs import train_rows

from genlab.analysis.comparison import compare_runs
from genlab.models.genlab_module import Diverged
from genlab.train import train
from genlab.utils.errors import GenlabError
from genlab.utils.run import effective_status, read_summary

TINY_AE = [
    "model.encoder.hidden_dims=[32]",
    "model.decoder.hidden_dims=[32]",
    "model.latent_dim=8",
]


# --- last.ckpt -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra",
    [
        # val/loss falls, so with mode=max the first validation stays the best
        ["model.monitor_mode=max", "trainer.max_epochs=3"],
        # a run stopped by max_steps in the middle of an epoch
        ["trainer.max_epochs=5", "trainer.max_steps=6"],
        [*TINY_GAN, "model.monitor=val/loss_g", "model.monitor_mode=min", "trainer.max_epochs=3"],
    ],
    ids=["metric-stops-improving", "max-steps-mid-epoch", "gan"],
)
def test_last_ckpt_holds_the_final_state(tmp_path, extra):
    summary = train(make_cfg(tmp_path, *FAST, "test=false", *extra))
    final = summary["global_step"]
    last = load(summary["last_ckpt"])
    assert last["global_step"] == final == summary["last_ckpt_step"]
    # the optimizer state is the final one too (Adam counts its own steps)
    adam_steps = {float(s["step"]) for s in last["optimizer_states"][0]["state"].values()}
    assert adam_steps == {float(final)}
    if "model.monitor_mode=max" in extra:
        assert load(summary["best_ckpt"])["global_step"] == 4 < final


# --- exact resume ----------------------------------------------------------------------------
FAMILIES = {
    "ae": TINY_AE,
    "sparse_ae_topk": ["model=sparse_ae", "model/sparsity=topk", *TINY_AE[:2]],
    # the DataLoader path, with a random corruption drawn from the global generator
    "denoising_ae_dataloader": ["model=denoising_ae", *TINY_AE, "data.device_resident=false"],
    "vae": ["model=vae", *TINY_AE[:2]],
    "cvae": ["model=cvae"],
    "wae": ["model=wae", *TINY_AE[:2]],
    "gan": [*TINY_GAN, "model.n_critic=2"],
    "cgan": [*TINY_GAN, "model=cgan"],
    "classifier": ["model=classifier"],
}


# Exact resume in the middle of an epoch, for every family, and shown to start at the
# checkpoint's step: tests/test_family_contracts.py (family_contract.FamilyContract).


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_resume_is_exact_across_epoch_boundaries_in_a_chain(tmp_path, family):
    """0 -> 4 (the end of epoch 0) -> 7 (mid-epoch) -> 12 (the end of the last epoch of
    max_epochs=3) equals 12 straight, epoch counts included, and each part logged the straight
    run's rows from where the one before stopped to its own end, at the same steps with the
    same values. (Seen failing without LastCheckpoint's resume after an epoch's end under
    max_steps (Lightning #19617): the part to 12 counted epoch 0 twice, hit max_epochs=3 at
    step 8 and ended "completed"; before that workaround, also without LastCheckpoint's
    next_log_step: every row after the stop at 4 was one step late.)"""
    common = [*FAST, "test=false", "trainer.max_epochs=3", *FAMILIES[family]]
    key = "train/loss_g" if family == "gan" else "train/loss"
    straight = train(make_cfg(tmp_path / "s", *common, "trainer.max_steps=12"))
    want = train_rows(straight["run_dir"], key)
    ckpt, before = None, 0
    for i, steps in enumerate((4, 7, 12)):
        resume = [f"ckpt_path={ckpt}"] if ckpt else []
        part = train(make_cfg(tmp_path / str(i), *common, f"trainer.max_steps={steps}", *resume))
        ckpt = part["last_ckpt"]
        assert load(ckpt)["global_step"] == steps
        rows = train_rows(part["run_dir"], key)
        assert rows == {s: v for s, v in want.items() if before <= s < steps}, sorted(rows)
        before = steps
    assert_same_state(load(straight["last_ckpt"]), load(ckpt))


def test_a_resume_at_an_epochs_end_under_max_steps_trains_on_without_last_checkpoint(tmp_path):
    """The same resume (4 -> 8 steps, max_epochs=2, stopped by max_steps at epoch 0's end)
    from Lightning's own ModelCheckpoint file, with genlab's last_checkpoint callback removed:
    the run trains epoch 1 and ends at step 8 in the epoch of the straight run. Seen failing
    (stuck at step 4, 'completed') with the fix in LastCheckpoint instead of every genlab
    model (Lightning #19617)."""
    common = [
        *FAST,
        *TINY_AE,
        "test=false",
        "~callbacks.last_checkpoint",
        "model.monitor=val/loss",
        "trainer.max_epochs=2",
    ]
    straight = train(make_cfg(tmp_path / "s", *common, "trainer.max_steps=8"))
    first = train(make_cfg(tmp_path / "a", *common, "trainer.max_steps=4"))
    [ckpt] = (Path(first["run_dir"]) / "checkpoints").glob("best-*.ckpt")
    resumed = train(make_cfg(tmp_path / "b", *common, "trainer.max_steps=8", f"ckpt_path={ckpt}"))
    ends = list((Path(resumed["run_dir"]) / "checkpoints").glob("best-*.ckpt"))
    assert ends, "the resumed run wrote no checkpoint: it trained nothing"
    [end] = ends
    [want] = (Path(straight["run_dir"]) / "checkpoints").glob("best-*.ckpt")
    assert (load(end)["global_step"], load(end)["epoch"]) == (8, 1)
    assert_same_state(load(want), load(end))


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    """Ctrl-C (SIGINT) during training: the step in progress finishes, last.ckpt holds it,
    the process exits 130 and summary.json says interrupted; `resume=<run>` then reaches
    exactly the weights of an uninterrupted run of the same length."""
    common = [
        *FAST,
        "model=vae",
        "test=false",
        "trainer.max_epochs=400",
        "trainer.limit_train_batches=31",
        "trainer.max_steps=1200",
        "trainer.check_val_every_n_epoch=1000",
    ]
    cwd = tmp_path / "interrupted"
    cwd.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "genlab.train", *common],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    run = None
    while time.time() < deadline:  # wait until it trains (a checkpoint exists)
        runs = run_dirs(cwd)
        if runs and (runs[0] / "checkpoints" / "last.ckpt").is_file():
            run = runs[0]
            break
        time.sleep(0.2)
    assert run is not None, proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted by SIGINT" in err
    summary = read_summary(run)
    assert summary["status"] == "interrupted"
    stopped = summary["global_step"]
    assert 0 < stopped < 1200
    assert load(run / "checkpoints" / "last.ckpt")["global_step"] == stopped

    target = stopped + 7  # a few more steps, mid-epoch
    run_cli(*common, f"trainer.max_steps={target}", f"resume={run}", cwd=cwd)
    resumed = read_summary(run)
    assert resumed["status"] == "completed" and resumed["global_step"] == target
    assert resumed["attempts"][-1]["status"] == "interrupted"
    straight = train(make_cfg(tmp_path / "straight", *common, f"trainer.max_steps={target}"))
    assert_same_state(load(straight["last_ckpt"]), load(run / "checkpoints" / "last.ckpt"))
    # the continuation started at the checkpoint's step: the run's log has every step once
    # (a restart from 0 would have logged steps 0..stopped a second time)
    with open(run / "csv" / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(steps) == len(set(steps)) and max(steps) == target - 1


# --- refused resume ----------------------------------------------------------------------------
# (a refused resume changes nothing in the run: tests/test_integrity.py, with the run's own
# config continued when the options are not repeated)


# --- divergence ------------------------------------------------------------------------------
def test_vae_divergence_stops_with_no_checkpoint_and_says_so(tmp_path):
    cfg = make_cfg(tmp_path, *FAST, "model=vae", "model.optimizer.lr=1e30")
    with pytest.raises(Diverged, match=r"diverged: at step 1 .*train/loss=nan") as err:
        train(cfg)
    assert "No checkpoint had been written before it" in str(err.value)
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "diverged" and summary["last_ckpt"] is None
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_divergence_after_a_checkpoint_names_it_and_writes_no_bad_one(tmp_path):
    """One good epoch (checkpointed), then the learning rate jumps to 1e30: the run stops,
    every checkpoint on disk is finite, and the message names last.ckpt and its step."""
    cfg = make_cfg(
        tmp_path,
        *FAST,
        *TINY_AE,
        "trainer.max_epochs=3",
        "model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:1e30}",
    )
    with pytest.raises(Diverged) as err:
        train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # the message states what last.ckpt holds (lr 1e27 after the epoch's scheduler step, its
    # weights) against the start, and does not call it good
    assert f"{last} holds step 4: learning rate(s) 1e+27 (at the start: 0.001)" in str(err.value)
    assert "probably already diverging" in str(err.value)
    assert "last good state" not in str(err.value)
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "diverged" and summary["last_ckpt_step"] == 4
    for ckpt in (tmp_path / "run").rglob("*.ckpt"):
        assert all(torch.isfinite(v.float()).all() for v in load(ckpt)["state_dict"].values())


def test_gan_collapse_signs_are_recorded_and_warned(tmp_path, caplog):
    """G barely learns (lr 1e-9) while D learns fast: D separates real from fake completely,
    which summary.json records under `health` and the log warns about."""
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY_GAN,
            "test=false",
            "trainer.max_epochs=4",
            "trainer.limit_train_batches=8",
            "model.optimizer_g.lr=1e-9",
            "model.optimizer_d.lr=1e-2",
        )
    )
    health = summary["health"]
    assert health["logged_steps"] == 32
    assert health["d_saturated"] >= 16, health
    assert any(w["sign"] == "d_saturated" for w in health["warnings"])
    assert "GAN health" in caplog.text and "d_saturated" in caplog.text


# --- checkpoint writes -----------------------------------------------------------------------
class SilentlyFailingIO(TorchCheckpointIO):
    """Writes nothing and raises nothing: what Lightning's save does when it swallows a
    PermissionError (root can write anywhere, so permissions cannot stand in for it here)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        return None


def test_a_checkpoint_that_cannot_be_written_fails_the_run(tmp_path):
    cfg = make_cfg(
        tmp_path,
        *FAST,
        *TINY_AE,
        "test=false",
        "+trainer.plugins=[{_target_:test_trust.SilentlyFailingIO}]",
    )
    with pytest.raises(GenlabError, match=r"checkpoints/(best|last).*could not be written"):
        train(cfg)
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "failed" and "could not be written" in summary["error"]


# --- summary.json tells the truth ------------------------------------------------------------
def test_failure_before_training_leaves_a_failed_summary_listing_every_problem(tmp_path):
    proc = run_cli(
        "trainer.max_epochs=abc",
        "data.batch_size=0",
        "model.latent_dim=-3",
        "trainer=gpu" if not torch.cuda.is_available() else "trainer.max_steps=-5",
        "extras.print_config=false",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert "problems were found before training started" in proc.stderr
    for key in ("trainer.max_epochs='abc'", "data.batch_size=0", "model.latent_dim=-3"):
        assert key in proc.stderr
    assert "Traceback" not in proc.stderr
    (run,) = run_dirs(tmp_path)
    summary = read_summary(run)
    assert summary["status"] == "failed" and "data.batch_size=0" in summary["error"]
    assert summary["run_dir"] == str(run)
    # nothing was built or started: no checkpoints, no logger output
    assert not (run / "checkpoints").exists() and not (run / "csv").exists()


def test_empty_validation_split_is_reported_before_training(tmp_path):
    cfg = make_cfg(tmp_path, *FAST, "data.val_fraction=0.0")
    with pytest.raises(GenlabError, match=r"the val split of data=mnist_5k is empty"):
        train(cfg)


def test_a_killed_run_reads_as_interrupted(tmp_path):
    """SIGKILL leaves summary.json at "running"; its process is gone, so the effective
    status (and compare's table) says interrupted."""
    cwd = tmp_path / "killed"
    cwd.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "genlab.train", *FAST, "trainer.max_epochs=500"],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = run_dirs(cwd)
        if runs and read_summary(runs[0]).get("status") == "running":
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=60)
    (run,) = run_dirs(cwd)
    summary = read_summary(run)
    assert summary["status"] == "running" and summary["pid"] == proc.pid
    assert effective_status(summary) == "interrupted"
    # a heartbeat older than the limit also means interrupted (a run on another host)
    assert effective_status({**summary, "host": "elsewhere"}, stale_after_s=1e9) == "running"
    stale = {**summary, "host": "elsewhere", "heartbeat": time.time() - 3600}
    assert effective_status(stale) == "interrupted"
    (row,) = compare_runs([cwd])
    assert row["status"] == "interrupted"


def test_failed_multirun_job_summary_keeps_its_record(tmp_path):
    proc = run_cli("-m", *FAST, "data.batch_size=16,0", "test=false", cwd=tmp_path, check=False)
    assert proc.returncode == 1  # a job failed: the multirun says so (multirun_fail_exit)
    sweep = next((tmp_path / "logs" / "train" / "multiruns").iterdir())
    good, bad = (read_summary(sweep / str(i)) for i in (0, 1))
    assert good["status"] == "completed"
    assert bad["status"] == "failed" and "data.batch_size=0" in bad["error"]
    assert bad["run_dir"] == str(sweep / "1")
    assert json.loads((sweep / "1" / "summary.json").read_text())["host"]
