"""Train a model: `python -m genlab.train [model=...] [data=...] [trainer=...] [key=value ...]`.

The command line of genlab.training.train: composes the config, runs it, and tells a sweeper
how the job ended. The run directory (printed at start) receives config.yaml (resolved),
checkpoints/ (last and best by the model's declared metric), csv/metrics.csv, images/ and
summary.json.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.errors import NOT_HANDLED, GenlabError, exit_on_user_error
from genlab.utils.resolvers import in_multirun as _multirun
from genlab.utils.run import launch_rank, read_summary, write_json

__all__ = ["main", "train"]  # noqa: F822 (train is loaded lazily: __getattr__)

log = logging.getLogger("genlab.train")


def __getattr__(name: str) -> Any:
    # torch and Lightning load only when a run starts: `--help` and refusals made while
    # Hydra works out the run directory need neither
    if name == "train":
        from genlab.training import train

        return train
    raise AttributeError(name)


def objective(cfg: DictConfig, summary: dict[str, Any]) -> float | list[float | None] | None:
    """The value a sweeper optimises: `optimized_metric`, else the model's declared metric;
    for the declared metric, the best value the run reached (its best checkpoint's score).
    A list `optimized_metric` (a multi-objective search) gives a list of values. None when
    nothing was logged (e.g. train=false)."""
    metrics = summary.get("metrics", {})
    wanted = cfg.get("optimized_metric")
    names = list(wanted) if isinstance(wanted, ListConfig) else [wanted or summary.get("monitor")]
    values = []
    for name in names:
        if name and name == summary.get("monitor") and summary.get("best_score") is not None:
            values.append(summary["best_score"])
            continue
        if wanted and name not in metrics:
            raise GenlabError(
                f"optimized_metric={name!r} was not logged by this run; logged metrics are: "
                f"{', '.join(sorted(metrics)) or 'none'}."
            )
        values.append(metrics.get(name) if name else None)
    return values if isinstance(wanted, ListConfig) else values[0]


def release_distributed(env: dict[str, str]) -> None:
    """Between the jobs of a multirun in one process: end the DDP process group and restore
    the environment Lightning's DDP launcher changed (MASTER_PORT, WORLD_SIZE, ...), so the
    next job starts its own processes cleanly."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    os.environ.clear()
    os.environ.update(env)


def record_job(
    cfg: DictConfig,
    status: str,
    values: list[float | None] | None = None,
    error: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """How a job of a multirun ended, returned to the sweeper: its status (completed, pruned,
    failed, diverged, interrupted), objective values and error. Any other status than
    completed is written into the job's summary.json (keeping what train() recorded there);
    the job of an Optuna search also tells its trial (FAIL for failed/diverged runs: no fake
    worst value)."""
    run_dir = Path(cfg.paths.output_dir)
    if status != "completed" and launch_rank() == 0 and run_dir.is_dir():
        summary = read_summary(run_dir)
        summary.pop("error", None)
        summary.update(
            status=status, run_dir=str(run_dir), **({"error": error} if error else {}), **fields
        )
        write_json(run_dir / "summary.json", summary)
    if HydraConfig.get().sweeper.get("trial") is not None:  # a trial of an Optuna search
        from genlab.search.study import finish_job_trial

        finish_job_trial(status, values, error, str(run_dir))
    return {"status": status, "values": values, "error": error, "run_dir": str(run_dir)}


def job_failed(exc: Exception, user_error: GenlabError | None, cfg: DictConfig) -> Any:
    """genlab.train's failure hook (genlab.utils.errors.exit_on_user_error). A single run:
    an interruption exits 128 + signal, anything else goes to the wrapper (a GenlabError is
    one paragraph and exit 2). A job of a multirun: the failure is recorded (summary.json,
    the sweep summary, the Optuna trial) and the sweep goes on, unless
    multirun_on_error=raise or the job was interrupted."""
    from genlab.callbacks.last_checkpoint import RunInterrupted
    from genlab.training import describe, run_end_status

    pruned = getattr(exc, "run_status", None) == "pruned"
    if not _multirun():
        if pruned:
            sys.exit(0)  # a DDP child process of a pruned trial: rank 0 records it
        if isinstance(exc, RunInterrupted):
            print(f"\ngenlab: {exc}\n", file=sys.stderr)
            sys.exit(128 + int(exc.signum))
        return NOT_HANDLED
    status = run_end_status(exc)
    if pruned:  # the search's pruner stopped it: not an error
        log.info("%s", exc)
        return record_job(cfg, status, **getattr(exc, "summary_fields", {}))
    error = describe(exc)
    if status != "interrupted" and cfg.get("multirun_on_error", "record") == "record":
        log.error("job %s: %s", status, error, exc_info=user_error is None)
        return record_job(cfg, status, error=error)
    record_job(cfg, status, error=error)  # then stop the sweep
    if status == "interrupted":
        raise exc
    # Hydra's launchers catch a job's Exception and its sweepers look at it only after the
    # whole batch of jobs has run; an exit stops the sweep at this job, as promised
    log.error(
        "job %s, sweep stopped (multirun_on_error=raise): %s",
        status,
        error,
        exc_info=user_error is None,
    )
    print(
        f"\ngenlab: job {status}, sweep stopped (multirun_on_error=raise): {error}\n",
        file=sys.stderr,
    )
    sys.exit(2 if user_error is not None else 1)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error(on_error=job_failed)
def main(cfg: DictConfig) -> float | list[float | None] | dict[str, Any] | None:
    from genlab.training import train

    env = dict(os.environ)
    try:
        summary = train(cfg)
    finally:
        if _multirun():
            release_distributed(env)
    try:
        value = objective(cfg, summary)
    except GenlabError as exc:
        if not _multirun():
            raise
        log.error("job failed: %s", exc)
        return record_job(cfg, "failed", error=str(exc))
    if not _multirun():
        return value
    values = value if isinstance(value, list) else [value]
    if all(v is not None and math.isfinite(v) for v in values):
        return record_job(cfg, "completed", values=values)
    names = cfg.get("optimized_metric") or summary.get("monitor")
    return record_job(cfg, "diverged", values=values, error=f"objective {names} = {values}")


if __name__ == "__main__":
    main()
