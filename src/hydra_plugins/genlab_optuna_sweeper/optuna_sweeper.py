"""genlab's Hydra sweeper: an Optuna study drives a multirun.

Hydra finds sweepers only inside the `hydra_plugins` namespace package, and imports every
module there at each start: Optuna and genlab.search are imported when a sweep begins, so this
module costs nothing to a run that does not search.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

from genlab.utils.errors import exit_on_user_error

log = logging.getLogger(__name__)


class OptunaSweeper(Sweeper):
    """Run an Optuna study as a Hydra multirun, one training job per trial.

    Each round this worker counts the study's trials (those of every worker sharing the
    storage), asks Optuna for up to `n_jobs` more, and launches them through Hydra's launcher
    (in this process, as local processes or as SLURM jobs) with the trial's parameters and
    `hydra.sweeper.trial=<number>` as overrides. It keeps a heartbeat on them while they run;
    each job tells the study its own outcome. It stops when the study holds `n_trials` trials
    that count (interrupted ones are replaced) and none is still running anywhere.
    """

    def __init__(
        self,
        storage: Any,
        study_name: str,
        n_trials: int,
        n_jobs: int = 1,
        direction: str | Sequence[str] = "minimize",
        sampler: Any = None,
        pruner: Any = None,
        params: dict[str, str] | None = None,
        heartbeat_s: float = 30.0,
        stale_after_s: float = 120.0,
        trial: int | None = None,  # set per job by this sweeper; unused here
    ) -> None:
        self.storage = storage
        self.study_name = study_name
        self.n_trials = int(n_trials)
        self.n_jobs = max(1, int(n_jobs))
        self.direction = direction
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner
        self.params = params or {}
        self.heartbeat_s = float(heartbeat_s)
        self.stale_after_s = float(stale_after_s)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # --- the loop ----------------------------------------------------------------------------

    @exit_on_user_error  # a bad search config: one paragraph, exit status 2, no traceback
    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        from genlab.callbacks.last_checkpoint import RunInterrupted
        from genlab.search.study import reading_journal

        try:
            # a study file that is cut short or altered: one paragraph naming it
            with reading_journal(self.storage):
                return self._sweep(arguments)
        except (RunInterrupted, KeyboardInterrupt) as exc:
            self._stop(exc)
            raise  # not reached: _stop exits

    def _sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        import optuna

        from genlab.search import study as st
        from genlab.search.space import as_override, search_space

        assert self.config is not None and self.launcher is not None
        space, fixed = search_space(self.params, arguments)
        directions = st.directions_of(self.direction)
        metrics = self._objective_names(len(directions))
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        with st.ask_lock(self.storage):
            study = optuna.create_study(
                storage=st.open_storage(self.storage),
                study_name=self.study_name,
                sampler=st.make_sampler(self.sampler_cfg),
                pruner=st.make_pruner(self.pruner_cfg),
                directions=directions,
                load_if_exists=True,
            )
            st.check_trials(study.get_trials(deepcopy=False), self.storage)  # before any write
            self._check_same_study(study, directions, fixed)
        log.info(
            "study %r in %s: %d trials of %d so far; %s",
            self.study_name,
            self.storage,
            len(study.trials),
            self.n_trials,
            ", ".join(f"{k} ~ {d}" for k, d in space.items()),
        )

        worker = st.worker_id()
        returns: list[Sequence[JobReturn]] = []
        job_idx, waiting_logged = 0, False
        try:
            while True:
                with st.ask_lock(self.storage):
                    st.fail_stale_trials(study, self.stale_after_s, self.storage)
                    trials = study.get_trials(deepcopy=False)
                    st.check_trials(trials, self.storage)
                    used = sum(st.counts_towards_budget(t) for t in trials)
                    running = [t.number for t in trials if t.state.name == "RUNNING"]
                    n_new = min(self.n_jobs, self.n_trials - used)
                    batch = [study.ask(space) for _ in range(n_new)]
                    for trial in batch:
                        trial.set_user_attr("worker", worker)
                        trial.set_user_attr("heartbeat", time.time())
                if not batch:
                    if not running:
                        break
                    if not waiting_logged:
                        log.info("waiting for trials %s of other workers to finish", running)
                        waiting_logged = True
                    time.sleep(min(5.0, self.heartbeat_s))
                    continue
                waiting_logged = False
                overrides = [
                    [
                        *fixed,
                        *(as_override(k, v) for k, v in trial.params.items()),
                        f"hydra.sweeper.trial={trial.number}",
                    ]
                    for trial in batch
                ]
                returns.append(self._launch(study, batch, overrides, job_idx))
                job_idx += len(batch)
                self._write_summary(study, sweep_dir, metrics)
        finally:  # also when stopped: the table shows where the study got to
            self._write_summary(study, sweep_dir, metrics, quiet=True)
        self._log_result(study, metrics, sweep_dir)
        return returns

    def _write_summary(
        self, study: Any, sweep_dir: Path, metrics: list[str], quiet: bool = False
    ) -> None:
        """sweep_summary.csv/.md from the study; `quiet` (while stopping on an error): a study
        that cannot be read any more is logged, so the error that stopped the search is the
        one reported."""
        from genlab.search.summary import write_summary

        if not quiet:
            write_summary(study, sweep_dir, metrics, storage=self.storage)
            return
        try:
            write_summary(study, sweep_dir, metrics, storage=self.storage)
        except Exception as exc:  # noqa: BLE001
            log.warning("the sweep summary could not be written: %s", exc)

    def _stop(self, exc: BaseException) -> None:
        """Ctrl-C or SIGTERM during the search: the running trials were recorded as
        interrupted (by their jobs or by `_launch`); say so and exit 128 + signal, as a single
        run does."""
        import signal

        signum = int(getattr(exc, "signum", signal.SIGINT))
        reason = str(exc) or "interrupted"
        print(
            f"\ngenlab: the search stopped ({reason}). Its running trials are recorded as "
            f"interrupted in {self.storage} and do not count towards n_trials: run the same "
            "command again to continue the study and replace them.\n",
            file=sys.stderr,
        )
        sys.exit(128 + signum)

    def _launch(
        self, study: Any, batch: list[Any], overrides: list[list[str]], job_idx: int
    ) -> Sequence[JobReturn]:
        from genlab.search.study import Heartbeat

        assert self.launcher is not None
        try:
            # composition errors (a misspelt key) show up here, before anything runs
            self.validate_batch_is_legal(overrides)
            with Heartbeat(batch, self.heartbeat_s):
                results = self.launcher.launch(overrides, initial_job_idx=job_idx)
        except Exception as exc:
            told = self._fail_unfinished(study, batch, "failed", f"{type(exc).__name__}: {exc}")
            if told == len(batch):
                raise  # no job recorded an outcome: the launch itself is broken
            log.exception("a job of this batch died without recording its outcome")
            return []
        except BaseException:  # Ctrl-C, SystemExit: the trials are replaced next time
            self._fail_unfinished(study, batch, "interrupted", "the search was stopped")
            raise
        failure = None
        for trial, result in zip(batch, results, strict=True):
            error = "the job ended without recording an outcome"
            if result.status == JobStatus.FAILED:
                try:
                    _ = result.return_value  # re-raises the job's exception
                except Exception as exc:
                    error, failure = f"{type(exc).__name__}: {exc}", failure or exc
            self._fail_unfinished(study, [trial], "failed", error)
        if failure is not None:
            raise failure  # the job raised instead of recording it (multirun_on_error=raise)
        return results

    @staticmethod
    def _fail_unfinished(study: Any, batch: list[Any], status: str, error: str) -> int:
        """Fail the trials of `batch` that are still RUNNING; return how many there were."""
        import optuna

        numbers = {t.number for t in batch}
        unfinished = [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.number in numbers
        ]
        for frozen in unfinished:
            (trial,) = [t for t in batch if t.number == frozen.number]
            try:
                trial.set_user_attr("status", status)
                trial.set_user_attr("error", error[:1000])
                study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                pass
        return len(unfinished)

    # --- checks and reporting ----------------------------------------------------------------

    def _objective_names(self, n_directions: int) -> list[str]:
        from genlab.utils.errors import GenlabError

        assert self.config is not None
        metric = self.config.get("optimized_metric")
        if metric is None:
            metric = OmegaConf.select(self.config, "model.monitor")
        names = [str(m) for m in (metric if isinstance(metric, ListConfig | list) else [metric])]
        if len(names) != n_directions:
            raise GenlabError(
                f"hydra.sweeper.direction has {n_directions} direction(s) but optimized_metric "
                f"names {len(names)} metric(s) ({names}): give one direction per metric, e.g. "
                "optimized_metric=[val/nelbo_nats,train/elapsed_s] "
                "hydra.sweeper.direction=[minimize,minimize]."
            )
        return names

    def _check_same_study(self, study: Any, directions: list[str], fixed: list[str]) -> None:
        """A study continued by a restart or shared by workers must be the same search."""
        from genlab.search.study import unreadable_study
        from genlab.utils.errors import GenlabError

        have = [d.name.lower() for d in study.directions]
        previous = study.user_attrs.get("overrides")
        if previous is not None and not (
            isinstance(previous, list) and all(isinstance(o, str) for o in previous)
        ):
            raise unreadable_study(
                self.storage, f"its overrides are {str(previous)[:60]!r}, not a list of text"
            )
        problem = None
        if have != directions:
            problem = f"directions {have}, this command {directions}"
        elif previous is not None and sorted(previous) != sorted(fixed):
            problem = f"overrides {sorted(previous)}, this command {sorted(fixed)}"
        if problem:
            raise GenlabError(
                f"study {self.study_name!r} in {self.storage} was started with {problem}. "
                "Run the command that started it to continue it, or start a new study with "
                "hydra.sweeper.study_name=<another name>."
            )
        if previous is None:
            study.set_user_attr("overrides", list(fixed))

    def _log_result(self, study: Any, metrics: list[str], sweep_dir: Path) -> None:
        from genlab.search.summary import best_trials

        best = best_trials(study)
        if not best:
            log.warning("study %r has no completed trial", self.study_name)
        for trial in best:
            values = ", ".join(f"{m}={v:.6g}" for m, v in zip(metrics, trial.values, strict=True))
            log.info("best trial %d: %s; %s", trial.number, values, trial.params)
        log.info(
            "summary: %s; browse the study with: optuna-dashboard %s",
            sweep_dir / "sweep_summary.md",
            self.storage,
        )
