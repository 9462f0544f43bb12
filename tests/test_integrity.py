"""A checkpoint is data, never code; a run directory has one writer; resume never rewrites
history; failures leave nothing half-written (issue: integrity). Every hostile file here is a
real one (a checkpoint torch.save wrote, a run directory genlab wrote, then altered), and the
marker a payload would create must never appear.

Shown failing on the code before these changes (6795781): the payload checkpoints ran their
code (the marker appeared) through load_model and every entry point; resume without
repeating the options was refused; a second run into a live run's directory exited 0; a
missing ckpt_path left an eval folder behind; a full disk left a 0-byte last.ckpt.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import FAST, TINY_GAN, assert_same_state, load, make_cfg, run_cli, run_dirs

from genlab.metrics.features import DomainFeatures
from genlab.train import train
from genlab.utils.checkpoint import CONFIG_KEY, load_checkpoint, load_model
from genlab.utils.errors import GenlabError
from genlab.utils.resolvers import latest_run
from genlab.utils.run import RunLock, read_summary
from genlab.utils.untrusted import check_targets, trust

TINY_AE = [
    "model.encoder.hidden_dims=[16]",
    "model.decoder.hidden_dims=[16]",
    "model.latent_dim=4",
]
QUIET = [*FAST, "test=false", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A finished tiny AE run (its last.ckpt is the base of the hostile checkpoints)."""
    root = tmp_path_factory.mktemp("base")
    train(make_cfg(root, *QUIET, *TINY_AE))
    return root / "run"


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
        if not p.is_symlink()
    }


def hostile(base: Path, out: Path, change) -> Path:
    """A copy of `base` (a checkpoint) whose stored config `change(config)` altered."""
    ckpt = load(base)
    change(ckpt[CONFIG_KEY])
    torch.save(ckpt, out)
    return out


def opener(marker: Path) -> dict:
    """A config node that creates `marker` when instantiated."""
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"]}


def payloads(marker: Path) -> dict:
    """Each way a stored config could run code, as a change of the config."""

    def direct(c):
        c["model"] = opener(marker)

    def nested(c):
        c["model"] = {
            "_target_": "genlab.models.Classifier",
            "net": opener(marker),
            "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True},
        }

    def chained(c):  # one node writes a pickle, the next loads it with weights_only=False
        c["model"]["encoder"] = {"_target_": "torch.save", "obj": 1, "f": str(marker)}
        c["model"]["decoder"] = {"_target_": "torch.load", "f": str(marker), "weights_only": False}

    def in_args(c):
        c["model"]["optimizer"] = {
            "_target_": "torch.optim.Adam",
            "_partial_": True,
            "_args_": [opener(marker)],
        }

    def interpolation(c):
        c["model"]["latent_dim"] = (
            "${oc.create:{_target_: builtins.open, _args_: [" + f"{marker}, w]}}}}"
        )

    def genlab_function(c):  # a genlab function that writes files is not a class: refused
        c["model"]["encoder"] = {
            "_target_": "genlab.utils.run.write_json",
            "path": str(marker),
            "data": {},
        }

    return {
        "direct": direct,
        "nested": nested,
        "chained": chained,
        "in_args": in_args,
        "interpolation": interpolation,
        "genlab_function": genlab_function,
    }


@pytest.mark.parametrize("kind", list(payloads(Path("x"))))
def test_a_checkpoint_config_never_runs_code(base_run, tmp_path, kind):
    marker = tmp_path / "marker"
    ckpt = hostile(
        base_run / "checkpoints" / "last.ckpt", tmp_path / "h.ckpt", payloads(marker)[kind]
    )
    with pytest.raises(GenlabError) as err:
        load_model(ckpt)
    text = str(err.value)
    assert "h.ckpt" in text and ("does not trust" in text or "interpolations" in text), text
    assert "model" in text  # the key path is named
    with pytest.raises(GenlabError):
        DomainFeatures(ckpt_path=str(ckpt))
    assert not marker.exists()


def test_run_config_yaml_fallback_is_checked_too(base_run, tmp_path):
    """A checkpoint without a stored config is rebuilt from RUN/config.yaml: the same checks."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = load(base_run / "checkpoints" / "last.ckpt")
    config = ckpt.pop(CONFIG_KEY)
    marker = tmp_path / "marker"
    config["model"]["encoder"] = opener(marker)
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    import yaml

    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(GenlabError, match=r"config\.yaml asks genlab to build .*builtins\.open"):
        load_model(run / "checkpoints" / "last.ckpt")
    # a YAML alias bomb in the same file is refused before it expands
    (run / "config.yaml").write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: [*b, *b, *b, *b, *b, *b, *b, *b]\nmodel: {c: *b}\n"
    )
    with pytest.raises(GenlabError, match="anchors"):
        load_model(run / "checkpoints" / "last.ckpt")
    assert not marker.exists()


def test_shipped_configs_pass_and_users_classes_need_an_opt_in(base_run, tmp_path):
    for experiment in ("gan_mnist", "pix2pix_edges_mnist", "pggan_mnist", "vae_mnist_full"):
        cfg = make_cfg(tmp_path, f"experiment={experiment}")
        from omegaconf import OmegaConf

        check_targets(OmegaConf.to_container(cfg, resolve=True), source=experiment)
    # a user's own module (tests/probes.py): refused, then allowed by trusted_targets
    ckpt = hostile(
        base_run / "checkpoints" / "last.ckpt",
        tmp_path / "user.ckpt",
        lambda c: c["model"].update(extra={"_target_": "probes.LayerProbe", "out": "x"}),
    )
    with pytest.raises(GenlabError, match=r"trusted_targets=\['your_package\.\*'\]"):
        check_targets(load(ckpt)[CONFIG_KEY], source="user.ckpt")
    try:
        trust(["probes.*"])
        check_targets(load(ckpt)[CONFIG_KEY], source="user.ckpt")
        with pytest.raises(GenlabError, match="would trust any code"):
            trust(["*"])
    finally:
        trust([])


ENTRY_POINTS = {
    "genlab.eval": [],
    "genlab.sample": ["n=4"],
    "genlab.latent": ["op=interpolate", "source=prior"],
    "genlab.translate": ["input_dir=."],
}


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_every_entry_point_refuses_a_hostile_checkpoint(base_run, tmp_path, module):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "marker"
    ckpt = hostile(
        base_run / "checkpoints" / "last.ckpt",
        run / "checkpoints" / "last.ckpt",
        payloads(marker)["nested"],
    )
    proc = run_cli(
        f"ckpt_path={ckpt}", *ENTRY_POINTS[module], cwd=tmp_path, module=module, check=False
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "model.net._target_='builtins.open'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    task = module.split(".")[1]
    folder = {"eval": "eval", "sample": "samples", "latent": "latent", "translate": "translate"}
    assert not (run / folder[task]).exists()  # no output folder is left behind


@pytest.mark.slow
def test_the_classifier_options_refuse_a_hostile_checkpoint(base_run, tmp_path):
    """tasks.generation.classifier_ckpt (eval) and callbacks.generation_metrics.
    classifier_ckpt (train) read a checkpoint too."""
    marker = tmp_path / "marker"
    clf = hostile(
        base_run / "checkpoints" / "last.ckpt", tmp_path / "clf.ckpt", payloads(marker)["nested"]
    )
    proc = run_cli(
        f"ckpt_path={base_run / 'checkpoints' / 'last.ckpt'}",
        "tasks=[generation]",
        f"tasks.generation.classifier_ckpt={clf}",
        cwd=tmp_path,
        module="genlab.eval",
        check=False,
    )
    assert proc.returncode == 2 and "builtins.open" in proc.stderr, proc.stderr[-3000:]
    cfg = make_cfg(
        tmp_path / "t",
        *QUIET,
        *TINY_GAN,
        "callbacks=[default,generation_metrics]",
        f"callbacks.generation_metrics.classifier_ckpt={clf}",
        "callbacks.generation_metrics.n_samples=8",
    )
    with pytest.raises(GenlabError, match="builtins.open"):
        train(cfg)
    assert not marker.exists()


def test_a_recompressed_checkpoint_is_refused_before_it_expands(base_run, tmp_path):
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * (64 << 20))  # 64 MiB in ~64 KB
    assert bomb.stat().st_size < 1 << 20
    started = time.time()
    with pytest.raises(GenlabError, match="would expand from"):
        load_checkpoint(bomb)
    assert time.time() - started < 5
    load_checkpoint(base_run / "checkpoints" / "last.ckpt")  # torch.save's own: fine


# --- resume continues the run's own config ----------------------------------------------------
@pytest.mark.slow
def test_resume_continues_with_the_stored_config_and_never_rewrites_it(tmp_path):
    """resume=auto where no run exists yet starts a new one. Then the README's `resume=auto
    trainer.max_epochs=N`: no need to repeat model=vae; the run continues in its own directory
    from its last step with its own config, config.yaml stays byte for byte, and each
    attempt's overrides are recorded. The history is kept: the CSV rows of the first part stay
    and the second part's are appended, TensorBoard gets a second event file beside the first,
    W&B continues the same run id at the checkpoint's step, and the continuation's own
    config/overrides/log go to .hydra/resume_*. (One chain of commands for what were four
    tests: this one, test_sweeps' resume=auto history, the W&B steps and resume=auto with no
    earlier run from test_promises; resume=RUN_DIR continuing: test_trust.py.)"""
    loggers = "logger=[csv,tensorboard,wandb]"
    first = [
        *FAST,
        "model=vae",
        "model.latent_dim=3",
        "test=false",
        "trainer.max_epochs=1",
        loggers,
        "resume=auto",
    ]
    run_cli(*first, cwd=tmp_path)
    (run,) = run_dirs(tmp_path)
    started = read_summary(run)
    assert started["status"] == "completed" and started["global_step"] == 4
    assert "attempts" not in started  # resume=auto found no run: a new one, not a continuation
    config = (run / "config.yaml").read_bytes()
    first_rows = (run / "csv" / "metrics.csv").read_text().splitlines()
    first_overrides = (run / ".hydra" / "overrides.yaml").read_text()
    proc = run_cli("resume=auto", "trainer.max_epochs=2", "test=false", cwd=tmp_path)
    assert "resume=auto: continuing" in proc.stderr + proc.stdout
    assert run_dirs(tmp_path) == [run]  # continued in the same directory
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["global_step"] == 8
    assert load(run / "checkpoints" / "last.ckpt")["global_step"] == 8
    assert (run / "config.yaml").read_bytes() == config
    assert summary["attempts"][0]["overrides"] == first
    assert summary["attempts"][0]["status"] == "completed"
    assert summary["attempts"][0]["global_step"] == 4
    assert summary["overrides"] == ["resume=auto", "trainer.max_epochs=2", "test=false"]
    # the run's own record of how it started is untouched; the continuation has its own
    assert (run / ".hydra" / "overrides.yaml").read_text() == first_overrides
    (attempt,) = (run / ".hydra").glob("resume_*")
    assert "resume=auto" in (attempt / "overrides.yaml").read_text()
    assert (attempt / "train.log").is_file()
    # CSV: the first part's rows unchanged at the top, then the steps of the second part; the
    # resumed segment logged steps 4..7 only (it started at the checkpoint's step)
    import csv

    with open(run / "csv" / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert steps == list(range(8))
    assert (run / "csv" / "metrics.csv").read_text().splitlines()[1 : len(first_rows)] == (
        first_rows[1:]
    )
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    # W&B: the same run id, continued at the checkpoint's step
    from wandb_records import history_rows, run_name

    assert summary["wandb_id"] == started["wandb_id"]
    segments = sorted((run / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and all(s.name.endswith(started["wandb_id"]) for s in segments)
    wandb_steps = []
    for segment in segments:
        (file,) = segment.glob("run-*.wandb")
        wandb_steps.append([r["_step"] for r in history_rows(file) if "_step" in r])
    assert wandb_steps[0] and wandb_steps[1]
    assert max(wandb_steps[0]) < min(wandb_steps[1]) and min(wandb_steps[1]) >= 4
    assert wandb_steps[1] == sorted(wandb_steps[1])
    # a single run is named after its overrides (resume= excluded)
    (records,) = segments[0].glob("run-*.wandb")
    name = run_name(records)
    assert "test=false" in name and "trainer.max_epochs=1" in name and "resume" not in name

    # asking for another objective is refused with a table; nothing in the run changes
    before = tree_digest(run)
    proc = run_cli(
        f"resume={run}", "model.optimizer.lr=0.5", "data.batch_size=8", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "model.optimizer.lr" in proc.stderr and "stored: 0.001" in proc.stderr
    assert "now: 0.5" in proc.stderr and "data.batch_size" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_digest(run) == before


def test_a_planted_run_is_not_what_resume_auto_picks(tmp_path):
    runs = tmp_path / "runs"
    for name, started in (("a", 100.0), ("b", 200.0), ("planted", time.time() + 10**6)):
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
        (runs / name / "summary.json").write_text(json.dumps({"started": started}))
    (runs / "no_summary" / "checkpoints").mkdir(parents=True)
    (runs / "no_summary" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    os.utime(runs / "a" / "checkpoints" / "last.ckpt", (2e9, 2e9))  # newest file time
    run, why = latest_run(runs)
    assert run == runs / "b"
    assert "planted (started in the future)" in why and "no_summary" in why


def test_summary_and_config_of_a_run_are_data(base_run, tmp_path):
    """summary.json's wandb_id and config.yaml enter the config as literal data: an
    interpolation there is refused, never resolved."""
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    shutil.copytree(base_run, run, symlinks=True)
    shutil.rmtree(run / "wandb", ignore_errors=True)
    summary = read_summary(run)
    bomb = "${oc.create:{_target_: builtins.open, _args_: [" + f"{marker}, w]}}}}"
    (run / "summary.json").write_text(json.dumps({**summary, "wandb_id": bomb}))
    cfg = make_cfg(
        tmp_path, *QUIET, *TINY_AE, "logger=wandb", f"resume={run}", "trainer.max_epochs=2"
    )
    with pytest.raises(GenlabError, match="not a W&B run id"):
        train(cfg)
    (run / "summary.json").write_text(json.dumps(summary))
    text = (run / "config.yaml").read_text().replace("latent_dim: 4", f"latent_dim: '{bomb}'")
    (run / "config.yaml").write_text(text)
    cfg = make_cfg(tmp_path, *QUIET, *TINY_AE, f"resume={run}", "trainer.max_epochs=2")
    with pytest.raises(GenlabError, match="interpolations"):
        train(cfg)
    assert not marker.exists()
    for garbage in ("[1, 2]", "[" * 100_000 + "]" * 100_000, "{"):
        (run / "summary.json").write_text(garbage)
        assert read_summary(run) == {}


def test_what_to_trust_comes_from_the_command_never_from_the_run(base_run, tmp_path):
    """A sent run directory whose stored config says model.trust_feature_code=true or
    trusted_targets=[builtins.*]: the resumed config takes neither."""
    from genlab.training import CONF_DIR
    from genlab.utils.resume import resumed_config

    run = tmp_path / "run"
    shutil.copytree(base_run, run, symlinks=True)
    text = (
        (run / "config.yaml")
        .read_text()
        .replace("trusted_targets: []", "trusted_targets:\n- builtins.*")
    )
    text = text.replace("  latent_dim: 4\n", "  latent_dim: 4\n  trust_feature_code: true\n")
    assert "- builtins.*" in text and "trust_feature_code: true" in text
    (run / "config.yaml").write_text(text)
    cfg = make_cfg(tmp_path, *QUIET, *TINY_AE, f"resume={run}")
    resumed = resumed_config(cfg, run, [f"resume={run}"], CONF_DIR, {})
    assert resumed.trusted_targets == [] and "trust_feature_code" not in resumed.model
    assert resumed.model.latent_dim == 4 and resumed.ckpt_path.endswith("last.ckpt")


@pytest.mark.slow
def test_a_run_directory_with_links_is_not_continued(base_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run, symlinks=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    for name in ("config_tree.log", ".summary.json.tmp", "csv/.metrics.csv.tmp"):
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(victim)
        proc = run_cli(f"resume={run}", "trainer.max_epochs=2", cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "symbolic link" in proc.stderr and name in proc.stderr
        assert "Traceback" not in proc.stderr
        (run / name).unlink()
    assert victim.read_text() == "mine"


# --- fine-tuning from a checkpoint applies the configured learning rate ----------------------
def test_ckpt_path_with_a_new_lr_trains_with_it(base_run, tmp_path, caplog):
    ckpt = base_run / "checkpoints" / "last.ckpt"
    assert load(ckpt)["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-3
    cfg = make_cfg(
        tmp_path,
        *QUIET,
        *TINY_AE,
        f"ckpt_path={ckpt}",
        "trainer.max_epochs=2",
        "model.optimizer.lr=1e-5",
    )
    with caplog.at_level("INFO"):
        summary = train(cfg)
    assert load(summary["last_ckpt"])["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-5
    assert "model.optimizer changed, so optimizer 0 trains with lr 1e-05" in caplog.text
    # the same lr as the checkpoint's: the loaded state is left exactly as it was
    assert not ConfiguredLR_seen(make_cfg(tmp_path / "b", *QUIET, *TINY_AE, f"ckpt_path={ckpt}"))


def ConfiguredLR_seen(cfg) -> bool:  # noqa: N802
    from genlab.training import optimizer_changes

    return bool(optimizer_changes(cfg))


# --- one writer per run directory -------------------------------------------------------------
def test_the_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path, caplog):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        lock = tmp_path / RunLock.NAME
        lock.write_text(
            json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": 1})
        )
        with pytest.raises(GenlabError, match=f"in use by genlab process {sleeper.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with caplog.at_level("WARNING"):
        held = RunLock(tmp_path)
        held.acquire()
    assert f"taking over the lock of process {sleeper.pid}" in caplog.text
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    held.release()
    assert not lock.exists()


@pytest.mark.slow
def test_two_runs_into_one_directory(tmp_path):
    """A second run into a live run's directory is refused with the first one's pid; a new run
    into a finished run's directory is refused too (continue it with resume=)."""
    shared = tmp_path / "shared"
    common = [*FAST, "test=false", f"hydra.run.dir={shared}"]
    # the first run's steps sleep (tests/slow_steps.py): it stays live without taking the CPU
    # the second one needs to start
    slow = [
        "+callbacks.slow._target_=slow_steps.SlowSteps",
        f"+callbacks.slow.out={tmp_path / 'step.txt'}",
        "+callbacks.slow.seconds=0.5",
    ]
    tests_dir = str(Path(__file__).resolve().parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]),
    }
    first = subprocess.Popen(
        [sys.executable, "-m", "genlab.train", *common, *slow, "trainer.max_epochs=1000"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and read_summary(shared).get("status") != "running":
            time.sleep(0.2)
        proc = run_cli(*common, "trainer.max_epochs=1", cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"in use by genlab process {first.pid}" in proc.stderr
        assert read_summary(shared)["pid"] == first.pid
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert read_summary(shared)["status"] == "interrupted"
    assert not (shared / RunLock.NAME).exists()
    proc = run_cli(*common, "trainer.max_epochs=1", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert read_summary(shared)["pid"] == first.pid


# --- refusals leave nothing behind ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("module", ["genlab.eval", "genlab.sample", "genlab.latent"])
def test_a_missing_checkpoint_creates_no_folder(tmp_path, module):
    missing = tmp_path / "logs" / "train" / "runs" / "typo" / "checkpoints" / "last.ckpt"
    proc = run_cli(f"ckpt_path={missing}", cwd=tmp_path, module=module, check=False)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Nothing was written" in proc.stderr
    assert "Traceback" not in proc.stderr and "exception formatting" not in proc.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_resume_of_a_typo_is_one_paragraph(tmp_path):
    proc = run_cli("resume=logs/train/runs/typo", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "resume='logs/train/runs/typo'" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and "exception formatting" not in proc.stderr
    assert not (tmp_path / "logs").exists()


# --- a full disk, a read-only folder ----------------------------------------------------------
def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_fails_cleanly(tmp_path):
    """Every file is limited to 64 KB (RLIMIT_FSIZE: what a full disk does to a write, without
    privileges): the first checkpoint cannot be written. genlab's paragraph names the folder
    and its free space; no partial file is left; summary.json says failed."""
    proc = subprocess.run(
        [sys.executable, "-m", "genlab.train", *FAST, "test=false", "trainer.max_epochs=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size(64 << 10),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "could not be written (File too large" in proc.stderr and "MiB free on" in proc.stderr
    assert "Traceback" not in proc.stderr
    (run,) = run_dirs(tmp_path)
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]
    assert not list(run.rglob("*.ckpt"))
    summary = read_summary(run)
    assert summary["status"] == "failed" and summary["last_ckpt"] is None


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs none /mnt",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.slow
def test_a_full_disk_mid_run_keeps_the_last_complete_checkpoint(tmp_path):
    """On a 1.1 MB file system a tiny AE's epoch-0 checkpoints fit and epoch 1's do not: the run
    stops with genlab's message; last.ckpt is epoch 0's complete file, summary.json points at
    it, and no partial or empty file is left."""
    assert _can_mount_tmpfs(), (
        "this test needs a small tmpfs in a private mount namespace (unshare --user "
        "--map-root-user --mount; Linux with unprivileged user namespaces, as CI has)"
    )
    disk = tmp_path / "disk"
    disk.mkdir()
    inspect = (
        "import json,sys,torch,pathlib;"
        "run=next(pathlib.Path(sys.argv[1]).glob('logs/train/runs/*'));"
        "s=json.loads((run/'summary.json').read_text());"
        "print(json.dumps({'status':s['status'],'last':s.get('last_ckpt'),"
        "'step':s.get('last_ckpt_step'),'files':[str(p) for p in run.rglob('*') if p.is_file()"
        " and (p.stat().st_size==0 or '.tmp' in p.name)],"
        "'loaded':torch.load(run/'checkpoints'/'last.ckpt',weights_only=True)['global_step']}))"
    )
    args = " ".join([*FAST, *TINY_AE, "test=false", "trainer.max_epochs=3", "logger=csv"])
    script = (
        f"mount -t tmpfs -o size=1100k none {disk} && cd {disk} && "
        f"{sys.executable} -m genlab.train {args}; echo rc=$?; "
        f'{sys.executable} -c "{inspect}" {disk}'
    )
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )
    assert "rc=2" in proc.stdout, proc.stderr[-3000:]
    assert "No space left on device" in proc.stderr and "MiB free on" in proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "failed" and result["files"] == []
    assert result["last"].endswith("last.ckpt") and result["loaded"] == result["step"] == 4


NO_CHATTR = (
    "this test makes a folder read-only: as root with chattr +i (a file system that supports "
    "the immutable flag, as CI's does), or as another user with chmod"
)


def _immutable(path: Path, on: bool) -> bool:
    if os.geteuid() != 0:
        path.chmod(0o555 if on else 0o755)
        return True
    return (
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode
        == 0
    )


@pytest.mark.slow
def test_a_read_only_run_directory_is_one_paragraph_before_training(base_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run, symlinks=True)
    before = tree_digest(run)
    for folder in (run / "checkpoints", run):
        if not _immutable(folder, True):
            pytest.fail(NO_CHATTR)
        try:
            proc = run_cli(f"resume={run}", "trainer.max_epochs=2", cwd=tmp_path, check=False)
        finally:
            _immutable(folder, False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"cannot write to {folder}" in proc.stderr and "Traceback" not in proc.stderr
        assert tree_digest(run) == before


@pytest.mark.parametrize("background", [False, True])
def test_a_checkpoint_write_that_fails_later_says_the_same(tmp_path, background):
    """The same paragraph when a write fails during training; a background write's failure
    surfaces at the next checkpoint (or when the run waits for its files)."""
    from genlab.callbacks.last_checkpoint import AtomicCheckpointIO

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    if not _immutable(folder, True):
        pytest.fail(NO_CHATTR)
    writer = AtomicCheckpointIO(background=background)
    try:
        with pytest.raises(GenlabError, match=f"cannot write to {folder}"):
            writer.save_checkpoint({"a": torch.ones(3)}, folder / "last.ckpt")
            writer.wait()
    finally:
        _immutable(folder, False)
        writer._pending.clear()
        writer.teardown()
    assert list(folder.iterdir()) == []


def test_a_background_checkpoint_is_the_state_when_it_was_taken(tmp_path):
    """The writer thread is held back until the weights have changed: the file still holds
    the values at the time of the save (the snapshot is a copy). Seen failing with the
    snapshot taking the tensors themselves."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from genlab.callbacks.last_checkpoint import AtomicCheckpointIO

    writer = AtomicCheckpointIO(background=True)
    writer._pool = ThreadPoolExecutor(max_workers=1)
    hold = threading.Event()
    writer._pool.submit(hold.wait)  # the thread is busy until released
    weights = torch.zeros(4)
    writer.save_checkpoint({"state_dict": {"w": weights}}, tmp_path / "last.ckpt")
    weights.add_(1.0)  # training goes on
    hold.set()
    writer.teardown()
    assert torch.equal(load(tmp_path / "last.ckpt")["state_dict"]["w"], torch.zeros(4))


def test_background_checkpoints_hold_the_same_state(tmp_path):
    """perf.async_checkpoints=true: the state is copied when the checkpoint is taken, so the
    files a thread writes later hold exactly what the synchronous writer writes; and a run
    resumed from them continues exactly."""
    common = [*QUIET, *TINY_AE, "trainer.max_epochs=3"]
    sync = train(make_cfg(tmp_path / "s", *common))
    bg = train(make_cfg(tmp_path / "b", *common, "perf.async_checkpoints=true"))
    assert_same_state(load(sync["last_ckpt"]), load(bg["last_ckpt"]))
    assert_same_state(load(sync["best_ckpt"]), load(bg["best_ckpt"]))
    assert not list((tmp_path / "b").rglob("*.tmp"))


# --- multiruns say when a job failed ------------------------------------------------------------
@pytest.mark.slow
def test_a_multirun_with_a_failed_job_exits_zero_when_told_to(tmp_path):
    """multirun_fail_exit=false: a multirun whose job failed exits 0. (Without it, the exit
    status is 1 and says how many jobs failed: test_sweeps.py's multirun.)"""
    proc = run_cli(
        "-m", *FAST, "data.batch_size=0", "test=false", "multirun_fail_exit=false", cwd=tmp_path
    )
    assert proc.returncode == 0
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert read_summary(sweep / "0")["status"] == "failed"  # the job did fail


# --- DDP: whichever rank dies, the run says which and ends failed ------------------------------
def _wait_for_training(root: Path, stderr: Path, timeout: float = 180) -> Path:
    """The run's directory once both ranks are training: its first epoch's last.ckpt is
    written (an epoch is 4 batches; the summary's step is refreshed every 30 s only)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = run_dirs(root)
        if runs and (runs[0] / "checkpoints" / "last.ckpt").is_file():
            return runs[0]
        time.sleep(0.3)
    raise AssertionError(f"the DDP run never got going; its stderr:\n{stderr.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["rank0", "rank1"])
def test_ddp_rank_death_is_named_and_recorded(tmp_path, victim):
    args = [
        *[o for o in FAST if "max_epochs" not in o],
        "trainer=ddp_sim",
        "trainer.max_epochs=10000",
        *TINY_GAN,
        "trainer.check_val_every_n_epoch=1000",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the output goes to files: a pipe nobody reads until the end blocks a chatty run
    err_file = tmp_path / "stderr.txt"
    with open(tmp_path / "stdout.txt", "w") as out, open(err_file, "w") as errors:
        main = subprocess.Popen(
            [sys.executable, "-m", "genlab.train", *args],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=errors,
            text=True,
        )
    try:
        run = _wait_for_training(tmp_path, err_file)
        children = subprocess.run(
            ["pgrep", "-P", str(main.pid)], capture_output=True, text=True
        ).stdout.split()
        assert children, "rank 1 was not started as a child of rank 0"
        killed = main.pid if victim == "rank0" else int(children[0])
        os.kill(killed, signal.SIGKILL)
        main.wait(timeout=120)
        err = err_file.read_text()
    finally:
        if main.poll() is None:
            main.kill()
    deadline = time.time() + 60
    while time.time() < deadline and read_summary(run).get("status") == "running":
        time.sleep(0.3)
    summary = read_summary(run)
    assert summary["status"] == "failed", summary
    if victim == "rank1":
        assert main.returncode == 2
        assert "rank 1 died (killed by SIGKILL), so rank 0 stopped" in summary["error"]
        assert "rank 1 died (killed by SIGKILL)" in err and "Traceback" not in err
    else:
        assert (
            f"rank 0 died (its process {main.pid} is gone), so rank 1 stopped" in summary["error"]
        )
