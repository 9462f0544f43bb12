"""Optuna searches (genlab's Hydra sweeper): search space, pruning, parallel workers sharing a
journal file, resuming a killed search, failed trials, multi-objective fronts; through the
real CLI on tiny budgets."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import FAST, run_cli
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from genlab.search.space import as_override, search_space
from genlab.search.study import counts_towards_budget, fail_stale_trials, status_of
from genlab.utils.errors import GenlabError

# conftest's FAST run (32 digits a batch, 2 validation batches), its epochs and training
# batches per epoch set by each test
TINY = [
    o
    for o in FAST
    if o.split("=")[0] not in ("trainer", "trainer.max_epochs", "trainer.limit_train_batches")
]


def search_args(sweep_dir, *extra: str, batches: int = 4, trainer: str = "cpu") -> list[str]:
    return [
        "-m",
        "hparams_search=ae_optuna",
        f"hydra.sweep.dir={sweep_dir}",
        f"trainer={trainer}",
        *TINY,
        f"trainer.limit_train_batches={batches}",
        *extra,
    ]


def load(sweep_dir, name="ae") -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def create(sweep_dir, name="ae", directions=("minimize",)) -> optuna.Study:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    return optuna.create_study(study_name=name, storage=storage, directions=list(directions))


def summary_rows(sweep_dir) -> dict[int, dict[str, str]]:
    with open(sweep_dir / "sweep_summary.csv") as f:
        return {int(r["trial"]): r for r in csv.DictReader(f)}


def run_summary(trial: optuna.trial.FrozenTrial) -> dict:
    return json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())


def start_worker(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """`python -m genlab.train args...` in the background, its output in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "genlab.train", *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


# --- the search space --------------------------------------------------------------------


def test_search_space_reads_hydra_sweep_grammar():
    params = {
        "model.optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
        "model.latent_dim": "choice(8, 16, 32)",
        "data.batch_size": "range(32, 129, step=32)",
        "model.beta": "interval(0.5, 2)",
    }
    space, fixed = search_space(
        params, ["trainer.max_epochs=3", "model.beta=1.0", "model.loss=bce,hinge"]
    )
    assert space == {
        "model.optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "model.latent_dim": CategoricalDistribution([8, 16, 32]),
        # Hydra's range is half-open: 32, 64, 96, 128
        "data.batch_size": IntDistribution(32, 128, step=32),
        # a sweep on the command line adds a dimension ...
        "model.loss": CategoricalDistribution(["bce", "hinge"]),
    }  # ... and a plain value there fixes one (model.beta)
    assert fixed == ["trainer.max_epochs=3", "model.beta=1.0"]
    with pytest.raises(GenlabError, match=r"hydra.sweeper.params.model.latent_dim: `16`"):
        search_space({"model.latent_dim": 16}, [])
    with pytest.raises(GenlabError, match="not a valid Optuna distribution"):
        search_space({"model.optimizer.lr": "tag(log, interval(0, 1))"}, [])


@pytest.mark.parametrize("value", [1.2e-05, 3, True, None, "bce", "a b", "true", "8", "x'y"])
def test_trial_values_round_trip_through_hydra_overrides(value):
    override = OverridesParser.create().parse_override(as_override("model.x", value))
    assert override.value() == value and type(override.value()) is type(value)


def test_stale_trial_is_failed_and_leaves_the_budget(tmp_path):
    study = create(tmp_path)
    dead, alive = study.ask(), study.ask()
    dead.set_user_attr("heartbeat", time.time() - 60)
    alive.set_user_attr("heartbeat", time.time())
    assert fail_stale_trials(study, stale_after_s=30) == [dead.number]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING]
    assert [status_of(t) for t in trials] == ["interrupted", "running"]
    assert [counts_towards_budget(t) for t in trials] == [False, True]


# --- a study file that is not genlab's ---------------------------------------------------


def broken_journal_line(sweep: Path) -> str:
    """A study whose journal has a line that is not JSON between two good ones."""
    study = create(sweep)
    study.set_user_attr("note", "before")
    path = sweep / "optuna.journal"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines[:1], '{"op_code": 5, "study_id": 0, "va\n', *lines[1:]]))
    return "a line Optuna cannot replay (JSONDecodeError"


def heartbeat_not_a_number(sweep: Path) -> str:
    """A study whose running trial has a heartbeat that is text."""
    trial = create(sweep).ask()
    trial.set_user_attr("heartbeat", "soon")
    return "trial 0: its heartbeat is 'soon', not a time in seconds"


@pytest.mark.parametrize("damage", [broken_journal_line, heartbeat_not_a_number])
def test_a_broken_study_file_is_one_paragraph_naming_it(tmp_path, damage):
    """A journal line that is not JSON, or a heartbeat that is not a number: genlab's paragraph
    naming the journal and how to move it aside (exit 2, no traceback), before any trial
    runs. Broken variants checked: without `reading_journal` in open_storage the first is
    Optuna's JSONDecodeError traceback (exit 1); without `check_trials` the second is a
    ValueError from float('soon')."""
    sweep = tmp_path / "search"
    why = damage(sweep)
    journal = sweep / "optuna.journal"
    proc = run_cli(
        *search_args(sweep, "trainer.max_epochs=1", "hydra.sweeper.n_trials=2"),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    message = proc.stderr[proc.stderr.index("genlab: error:") :]
    assert f"the Optuna study in {journal} cannot be read: {why}" in message
    assert f"mv {journal} {journal}.broken" in message
    assert not (sweep / "0").exists()  # no trial ran
    if damage is heartbeat_not_a_number:  # nothing was asked for, told or failed
        (trial,) = load(sweep).trials
        assert trial.state == TrialState.RUNNING and trial.user_attrs["heartbeat"] == "soon"


# --- end to end --------------------------------------------------------------------------


@pytest.mark.slow
def test_hopeless_trial_is_pruned_before_its_budget_ends_on_every_ddp_rank(tmp_path):
    """A learning rate of 1e-7 learns nothing: after one epoch its validation loss is far above
    that of a trial at 1e-2 (seen here with 2 DDP processes, seed 42: 181 vs 54 after 8
    steps), so the median pruner, with one finished trial to compare against, stops it at its
    first report. Each trial trains with 2 DDP processes: rank 0 decides, both stop."""
    sweep = tmp_path / "search"
    study = create(sweep)
    study.enqueue_trial({"model.optimizer.lr": 1e-2, "model.latent_dim": 16})
    study.enqueue_trial({"model.optimizer.lr": 1e-7, "model.latent_dim": 16})
    budget_epochs = 2
    run_cli(
        *search_args(
            sweep,
            f"trainer.max_epochs={budget_epochs}",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.pruner.n_startup_trials=1",
            "hydra.sweeper.pruner.n_warmup_steps=0",
            batches=8,
            trainer="ddp_sim",
        ),
        cwd=tmp_path,
    )
    good, bad = load(sweep).trials
    assert good.state == TrialState.COMPLETE
    assert sorted(good.intermediate_values) == list(range(budget_epochs))
    assert good.value == pytest.approx(min(good.intermediate_values.values()))
    assert bad.state == TrialState.PRUNED and list(bad.intermediate_values) == [0]
    assert bad.intermediate_values[0] > good.intermediate_values[0]
    summary = run_summary(bad)
    assert summary["status"] == "pruned" and summary["pruned_at"]["epoch"] == 0
    assert summary["global_step"] == 8 < budget_epochs * 8  # one epoch of the four
    assert [r["status"] for r in summary_rows(sweep).values()] == ["completed", "pruned"]
    for trial in (good, bad):  # rank 1 trained the same trial, in its directory
        assert (Path(trial.user_attrs["run_dir"]) / "train_ddp_process_1.log").is_file()
    assert not (tmp_path / "logs").exists()  # no DDP child started a run or study of its own


@pytest.mark.slow
def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(tmp_path):
    sweep = tmp_path / "search"
    n_trials = 6
    args = search_args(sweep, "trainer.max_epochs=2", f"hydra.sweeper.n_trials={n_trials}")
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_worker(args, tmp_path, log) for log in logs]
    assert [w.wait(timeout=600) for w in workers] == [0, 0], logs[0].read_text()[-3000:]
    trials = load(sweep).trials
    assert [t.number for t in trials] == list(range(n_trials))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # both processes took trials (they start together; a trial takes ~1 s of a ~6 s start)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    run_dirs = {t.user_attrs["run_dir"] for t in trials}
    assert len(run_dirs) == n_trials
    for trial in trials:  # each run trained exactly its trial's parameters, once
        config = yaml.safe_load((Path(trial.user_attrs["run_dir"]) / "config.yaml").read_text())
        assert config["model"]["optimizer"]["lr"] == trial.params["model.optimizer.lr"]
        assert config["model"]["latent_dim"] == trial.params["model.latent_dim"]
        assert run_summary(trial)["status"] == "completed"
    assert sorted(summary_rows(sweep)) == list(range(n_trials))


@pytest.mark.slow
def test_killed_search_resumes_and_replaces_the_interrupted_trial(tmp_path):
    sweep = tmp_path / "search"
    study = create(sweep)
    # the first trial is long, so that it is surely killed in the middle; the others short
    for epochs in (40, 1, 1):
        study.enqueue_trial(
            {"model.optimizer.lr": 1e-3, "model.latent_dim": 16, "trainer.max_epochs": epochs}
        )
    args = search_args(
        sweep,
        "trainer.max_epochs=choice(1,40)",
        "hydra.sweeper.n_trials=2",
        "~hydra/sweeper/pruner",
        "hydra.sweeper.heartbeat_s=1",
        "hydra.sweeper.stale_after_s=3",
    )
    log = tmp_path / "killed.log"
    worker = start_worker(args, tmp_path, log)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it in the middle of its first trial
        trials = load(sweep).trials
        if trials[0].intermediate_values:
            break
        assert worker.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert load(sweep).trials[0].state == TrialState.RUNNING  # nobody could record anything

    run_cli(*args, cwd=tmp_path)  # the same command again
    trials = load(sweep).trials
    assert [(t.number, t.state, status_of(t)) for t in trials] == [
        (0, TrialState.FAIL, "interrupted"),
        (1, TrialState.COMPLETE, "completed"),
        (2, TrialState.COMPLETE, "completed"),
    ]
    assert sum(counts_towards_budget(t) for t in trials) == 2
    assert summary_rows(sweep)[0]["status"] == "interrupted"


@pytest.mark.slow
def test_failed_and_diverged_trials_are_fail_and_the_search_goes_on(tmp_path):
    sweep = tmp_path / "search"
    study = create(sweep)
    study.enqueue_trial({"model.optimizer.lr": 1e30, "model.latent_dim": 8})  # NaN loss
    study.enqueue_trial({"model.optimizer.lr": 1e-3, "model.latent_dim": -4})  # bad option
    args = search_args(
        sweep,
        "trainer.max_epochs=1",
        "hydra.sweeper.n_trials=3",
        "model.latent_dim=choice(-4,8,16)",  # a dimension of the command line
        # the search's trial states are checked here, not the exit status of a multirun
        # whose jobs failed (1 where genlab's multirun_fail_exit is on); ++ adds or overrides
        "++multirun_fail_exit=false",
    )
    run_cli(*args, cwd=tmp_path)
    diverged, bad_option, good = load(sweep).trials
    assert (diverged.state, status_of(diverged)) == (TrialState.FAIL, "diverged")
    assert (bad_option.state, status_of(bad_option)) == (TrialState.FAIL, "failed")
    assert diverged.values is None and bad_option.values is None  # no fake worst value
    assert "diverged" in diverged.user_attrs["error"]
    assert run_summary(diverged)["status"] == "diverged"
    assert run_summary(bad_option)["status"] == "failed"
    assert good.state == TrialState.COMPLETE and good.value < 1e4
    rows = summary_rows(sweep)
    assert [rows[i]["status"] for i in range(3)] == ["diverged", "failed", "completed"]
    assert rows[2]["best"] == "yes"


@pytest.mark.slow
def test_multi_objective_search_writes_the_pareto_front(tmp_path):
    sweep = tmp_path / "search"
    run_cli(
        *search_args(
            sweep,
            "trainer.max_epochs=1",
            "hydra.sweeper.n_trials=4",
            "optimized_metric=[val/loss,train/elapsed_s]",
            "hydra.sweeper.direction=[minimize,minimize]",
            "hydra/sweeper/sampler=nsga2",
        ),
        cwd=tmp_path,
    )
    study = load(sweep)
    trials = study.trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:  # the time objective is the trial's training time
        assert 0 < trial.values[1] < trial.duration.total_seconds()

    def dominated(t):
        return any(
            all(a <= b for a, b in zip(o.values, t.values, strict=True)) and o.values != t.values
            for o in trials
        )

    front = {t.number for t in trials if not dominated(t)}
    rows = summary_rows(sweep)
    assert {n for n, r in rows.items() if r["pareto"] == "yes"} == front
    assert {t.number for t in study.best_trials} == front
    for n, row in rows.items():
        assert float(row["val/loss"]) == pytest.approx(trials[n].values[0])
        assert float(row["train/elapsed_s"]) == pytest.approx(trials[n].values[1])
    numbers = ", ".join(str(n) for n in sorted(front))
    assert (
        f"Pareto front (minimize val/loss, minimize train/elapsed_s): trials {numbers}."
        in (sweep / "sweep_summary.md").read_text()
    )


@pytest.mark.slow
def test_search_runs_from_the_built_wheel(tmp_path):
    """The sweeper ships in the wheel (hydra_plugins/ beside genlab/) and Hydra finds it."""
    from conftest import REPO

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + [str(REPO), "-w", str(tmp_path / "wheel")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "wheel").glob("genlab-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert not (site / "hydra_plugins" / "__init__.py").exists()  # a namespace shared by plugins
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {"PYTHONPATH": str(site)}
    sweep = cwd / "search"
    run_cli(
        *search_args(sweep, "trainer.max_epochs=1", "hydra.sweeper.n_trials=1"), cwd=cwd, env=env
    )
    assert [t.state for t in load(sweep).trials] == [TrialState.COMPLETE]
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import hydra_plugins.genlab_optuna_sweeper as m; print(m.__file__)",
        ],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(site))  # the built package, not src/


@pytest.mark.slow
def test_ctrl_c_records_the_trial_as_interrupted_and_a_rerun_replaces_it(tmp_path):
    """Ctrl-C in the middle of a trial: the run stops after its step, with last.ckpt and a
    summary.json that say interrupted; its trial is FAIL ("interrupted"), does not count
    towards n_trials, and the worker ends with one paragraph and exit 130 (128 + SIGINT)
    instead of a traceback. The study remembers the overrides of the command that started it:
    another command is refused before any trial is asked for; the same command again (in any
    order of its overrides) replaces the trial. Broken variants checked: the sweeper
    re-raising the job's RunInterrupted (as it did) exits 1 with a traceback;
    `_check_same_study` without its overrides comparison lets the other command through (exit
    0, the queued trial run)."""
    sweep = tmp_path / "search"
    study = create(sweep)
    for epochs in (40, 1):  # the first trial is long, so that it is surely stopped midway
        study.enqueue_trial(
            {"model.optimizer.lr": 1e-3, "model.latent_dim": 16, "trainer.max_epochs": epochs}
        )
    extra = (
        "trainer.max_epochs=choice(1,40)",
        "hydra.sweeper.n_trials=1",
        "~hydra/sweeper/pruner",
    )
    args = search_args(sweep, *extra)
    log = tmp_path / "stopped.log"
    worker = start_worker(args, tmp_path, log)
    deadline = time.time() + 300
    while time.time() < deadline:  # stop it once its first trial has reported an epoch
        trials = load(sweep).trials
        if trials and trials[0].intermediate_values:
            break
        assert worker.poll() is None, log.read_text()[-3000:]
        time.sleep(0.3)
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=120) == 128 + signal.SIGINT, log.read_text()[-3000:]
    output = log.read_text()
    assert "Traceback" not in output
    assert "genlab: the search stopped (interrupted by SIGINT after step" in output
    trial, queued = load(sweep).trials
    assert (trial.state, status_of(trial)) == (TrialState.FAIL, "interrupted")
    assert queued.state == TrialState.WAITING  # the next trial was never started
    assert "RunInterrupted" in trial.user_attrs["error"] and not counts_towards_budget(trial)
    summary = run_summary(trial)
    assert summary["status"] == "interrupted"
    assert (Path(trial.user_attrs["run_dir"]) / "checkpoints" / "last.ckpt").is_file()
    assert summary_rows(sweep)[0]["status"] == "interrupted"

    # the study remembers the overrides of the command that started it: another command
    # (other batches) is refused with the two lists and what to do, before any trial is asked
    # for (the queued one stays queued)
    recorded = load(sweep).user_attrs["overrides"]
    assert "trainer.limit_train_batches=4" in recorded and "trainer=cpu" in recorded
    other = search_args(sweep, *extra, batches=2)
    proc = run_cli(*other, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "study 'ae' in" in proc.stderr and "was started with overrides" in proc.stderr
    assert "'trainer.limit_train_batches=4'" in proc.stderr
    assert "'trainer.limit_train_batches=2'" in proc.stderr
    assert "hydra.sweeper.study_name=<another name>" in proc.stderr
    assert [t.state for t in load(sweep).trials] == [TrialState.FAIL, TrialState.WAITING]

    # the same command again, its overrides in another order, continues the study
    run_cli(*args[:2], *reversed(args[2:]), cwd=tmp_path)
    trials = load(sweep).trials
    assert [(t.number, t.state, status_of(t)) for t in trials] == [
        (0, TrialState.FAIL, "interrupted"),
        (1, TrialState.COMPLETE, "completed"),
    ]
    assert trials[1].params["trainer.max_epochs"] == 1
