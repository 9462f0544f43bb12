"""The study a search lives in: its storage, its budget of trials shared by every worker,
heartbeats that tell a live trial from one whose worker was killed, and the job's side of a
trial (open it by number, tell it how the run ended).

Optuna's own heartbeat exists only for RDB storages; here a running trial's worker refreshes a
`heartbeat` user attribute every `heartbeat_s`, which works on every storage, the journal file
included. A RUNNING trial silent for `stale_after_s` is failed (status "interrupted") and does
not count towards `n_trials`, so a restarted search runs a replacement.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig
from optuna.trial import FrozenTrial, Trial, TrialState

from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

# genlab's statuses of a finished trial (summary.json's vocabulary) -> Optuna's state
STATES = {
    "completed": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "failed": TrialState.FAIL,
    "diverged": TrialState.FAIL,
    "interrupted": TrialState.FAIL,
}


def worker_id() -> str:
    """`host:pid` of this process, recorded on the trials it asks for."""
    return f"{socket.gethostname()}:{os.getpid()}"


# --- storage and study ---------------------------------------------------------------------


def storage_file(spec: Any) -> Path | None:
    """The file a storage spec keeps its data in: a journal path or an SQLite database."""
    if isinstance(spec, str):
        if spec.startswith("sqlite:///"):
            return Path(spec[len("sqlite:///") :])
        if "://" not in spec:
            return Path(spec).expanduser()
    return None


def open_storage(spec: Any) -> optuna.storages.BaseStorage:
    """A storage from the sweeper's `storage`: a file path is Optuna's JournalStorage on that
    file (many processes, also on a shared file system); a URL (`sqlite:///x.db`,
    `postgresql://...`) an RDBStorage; a config with `_target_` that object."""
    if isinstance(spec, optuna.storages.BaseStorage):
        return spec
    if isinstance(spec, DictConfig | dict):
        return instantiate(spec)
    if not spec:
        raise GenlabError(
            "hydra.sweeper.storage is empty: a search needs a storage that its jobs can open, "
            "e.g. hydra.sweeper.storage=logs/my_study.journal or sqlite:///my_study.db."
        )
    spec = str(spec)
    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = Path(spec).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with reading_journal(spec):  # the storage replays the whole file here
        return JournalStorage(JournalFileBackend(str(path)))


# --- a study file from elsewhere -----------------------------------------------------------
# A journal is a file anyone could have edited or cut short; Optuna reads it with json.loads
# and replays it op by op, so what it holds (a line that is not JSON, an op of the wrong shape,
# a heartbeat that is not a number) would surface as a traceback deep in Optuna or here.
# These turn it into genlab's one paragraph naming the file.

JOURNAL_MODULE = "optuna/storages/journal/"


def _what_to_do(spec: Any) -> str:
    path = storage_file(spec)
    if path is None:
        return (
            f"Repair or drop the study in {spec}, or start a new one with "
            "hydra.sweeper.study_name=<another name>."
        )
    return (
        f"Move it aside (mv {path} {path}.broken) and run the command again to start the study "
        "afresh, restore it from a copy, or start another study with "
        "hydra.sweeper.storage=<another file>; the trials' run directories are kept either way."
    )


def unreadable_study(spec: Any, why: str) -> GenlabError:
    """genlab's error for a study file it cannot use: which file, why, what to do."""
    return GenlabError(
        f"the Optuna study in {spec} cannot be read: {why}. It was cut short, altered or "
        f"written by another program. {_what_to_do(spec)}"
    )


def from_journal(exc: BaseException) -> bool:
    """Whether `exc` was raised while Optuna read or replayed a journal file."""
    tb = exc.__traceback__
    while tb is not None:
        if JOURNAL_MODULE in tb.tb_frame.f_code.co_filename.replace(os.sep, "/"):
            return True
        tb = tb.tb_next
    return False


@contextlib.contextmanager
def reading_journal(spec: Any) -> Iterator[None]:
    """Turn an error of Optuna's journal reader (a line that is not JSON, an op it cannot
    replay, a file it cannot open) into genlab's paragraph naming the file; errors raised
    elsewhere pass through."""
    try:
        yield
    except GenlabError:
        raise
    except Exception as exc:
        if not from_journal(exc):
            raise
        if isinstance(exc, OSError):
            why = str(exc.strerror or exc)
        else:
            first = (str(exc).splitlines() or [""])[0][:200]
            why = f"a line Optuna cannot replay ({type(exc).__name__}: {first})"
        raise unreadable_study(spec, why) from exc


# the user attributes genlab writes on a trial and reads back
TEXT_ATTRS = ("worker", "run_dir", "error")


def check_trials(trials: Sequence[FrozenTrial], spec: Any) -> None:
    """Refuse a study whose trials carry user attributes genlab never writes (a heartbeat that
    is not a finite number, an unknown status, a worker or run directory that is not text):
    the sweeper reads them to count the budget, find stale trials and write the summary."""
    for trial in trials:
        attrs = trial.user_attrs
        beat = attrs.get("heartbeat")
        problem = None
        if beat is not None and (
            not isinstance(beat, int | float) or isinstance(beat, bool) or not math.isfinite(beat)
        ):
            problem = f"its heartbeat is {str(beat)[:60]!r}, not a time in seconds"
        elif "status" in attrs and attrs["status"] not in STATES:
            problem = f"its status is {str(attrs['status'])[:60]!r}, not one of {sorted(STATES)}"
        else:
            bad = [k for k in TEXT_ATTRS if k in attrs and not isinstance(attrs[k], str)]
            if bad:
                problem = f"its {bad[0]} is {str(attrs[bad[0]])[:60]!r}, not text"
        if problem:
            raise unreadable_study(spec, f"trial {trial.number}: {problem}")


def directions_of(direction: Any) -> list[str]:
    """`minimize`, `maximize` or a list of them (one per objective)."""
    if isinstance(direction, ListConfig | list | tuple):
        return [str(d) for d in direction]
    return [str(direction)]


def built(cfg: Any) -> Any:
    """A `_target_` config instantiated; an object Hydra already built, as it is."""
    return instantiate(cfg) if isinstance(cfg, DictConfig | dict) else cfg


def make_pruner(cfg: Any) -> optuna.pruners.BasePruner:
    """The configured pruner; none configured is NopPruner (Optuna's own default would be a
    MedianPruner)."""
    return built(cfg) if cfg else optuna.pruners.NopPruner()


def make_sampler(cfg: Any) -> optuna.samplers.BaseSampler | None:
    """The configured sampler (None: Optuna's default, TPE)."""
    return built(cfg) if cfg else None


@contextlib.contextmanager
def ask_lock(storage_spec: Any) -> Iterator[None]:
    """Serialise "count the trials, then ask for more" among workers that share a storage
    file, so no worker overshoots n_trials. A database server has no file to lock: there,
    workers asking at the same instant can overshoot by at most one trial each."""
    path = storage_file(storage_spec)
    if path is None:
        yield
        return
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path) + ".ask")
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


# --- the budget ----------------------------------------------------------------------------


def status_of(trial: FrozenTrial) -> str:
    """genlab's status of a trial: what its job recorded; a FAIL without a record was
    interrupted (its worker killed, found stale); otherwise Optuna's state."""
    status = trial.user_attrs.get("status")
    if status:
        return status
    if trial.state == TrialState.FAIL:
        return "interrupted"
    return {TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}.get(
        trial.state, trial.state.name.lower()
    )


def counts_towards_budget(trial: FrozenTrial) -> bool:
    """Whether a trial uses one of the study's n_trials: every trial that ran or runs, except
    an interrupted one (a restarted search replaces it). Enqueued (WAITING) trials are the
    next ones asked for."""
    if trial.state == TrialState.WAITING:
        return False
    return not (trial.state == TrialState.FAIL and status_of(trial) == "interrupted")


def last_sign_of_life(trial: FrozenTrial) -> float:
    """The trial's last heartbeat (its start when it has none); `check_trials` refuses a
    heartbeat that is not a number before this is asked."""
    beat = trial.user_attrs.get("heartbeat")
    if isinstance(beat, int | float) and not isinstance(beat, bool):
        return float(beat)
    start = trial.datetime_start
    return start.timestamp() if start is not None else 0.0


def fail_stale_trials(
    study: optuna.Study, stale_after_s: float, storage: Any = "the study's storage"
) -> list[int]:
    """Fail the RUNNING trials whose worker has been silent for `stale_after_s` seconds
    (they become "interrupted"); return their numbers. A trial whose heartbeat is not a
    number is genlab's error naming `storage`."""
    now = time.time()
    failed = []
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    check_trials(running, storage)
    for trial in running:
        silent = now - last_sign_of_life(trial)
        if silent <= stale_after_s:
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError, ValueError):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            failed.append(trial.number)
            log.warning(
                "trial %d: no heartbeat from its worker (%s) for %.0f s: recorded as failed "
                "(interrupted); it will be replaced",
                trial.number,
                trial.user_attrs.get("worker", "?"),
                silent,
            )
    return failed


class Heartbeat:
    """While open, refresh the `heartbeat` attribute of `trials` every `interval_s` seconds
    from a background thread (trials that finish meanwhile are left alone)."""

    def __init__(self, trials: Sequence[Trial], interval_s: float) -> None:
        self.trials = list(trials)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for trial in list(self.trials):
                try:
                    trial.set_user_attr("heartbeat", time.time())
                except (optuna.exceptions.UpdateFinishedTrialError, ValueError, KeyError):
                    self.trials.remove(trial)
                except Exception as exc:  # a storage hiccup must not end the search
                    log.warning("heartbeat of trial %d failed: %s", trial.number, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the job's side of a trial -------------------------------------------------------------


def job_trial_number() -> int | None:
    """The number of the Optuna trial this job runs (the sweeper passes it as
    `hydra.sweeper.trial`), or None when the job is not part of a search."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    number = HydraConfig.get().sweeper.get("trial")
    return int(number) if number is not None else None


def open_job_trial() -> Trial | None:
    """This job's trial, opened from the study's storage by its number; None outside a
    search. Its study has the search's sampler and pruner, so `should_prune` and `tell`
    behave as in the sweeper."""
    from hydra.core.hydra_config import HydraConfig

    number = job_trial_number()
    if number is None:
        return None
    settings = HydraConfig.get().sweeper
    storage = open_storage(settings.storage)
    study = optuna.load_study(
        study_name=settings.study_name,
        storage=storage,
        sampler=make_sampler(settings.get("sampler")),
        pruner=make_pruner(settings.get("pruner")),
    )
    study_id = storage.get_study_id_from_name(settings.study_name)
    # Trial(study, id) is how Optuna itself hands out a trial; a job of another process has
    # only the trial's number, which the storage maps to its id
    return Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def finish_job_trial(
    status: str,
    values: Sequence[float] | None = None,
    error: str | None = None,
    run_dir: str | None = None,
) -> None:
    """Tell this job's trial how the run ended: completed (with its objective values), pruned,
    or failed/diverged (FAIL: the sampler learns nothing from it, as from a crash). A trial
    another worker already failed as stale is left as it is."""
    trial = open_job_trial()
    if trial is None:
        return
    study = trial.study
    try:
        trial.set_user_attr("status", status)
        if run_dir:
            trial.set_user_attr("run_dir", run_dir)
        if error:
            trial.set_user_attr("error", error[:1000])
        if status == "completed":
            study.tell(trial, list(values or []))
        else:
            study.tell(trial, state=STATES[status])
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning(
            "trial %d was already finished by another worker (its heartbeat had stopped): "
            "this run's result is kept in its run directory only",
            trial.number,
        )


def finite(values: Sequence[float | None]) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)
