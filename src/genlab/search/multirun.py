"""Multirun helpers: a summary table of a sweep, and DDP children that run one job."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from genlab.analysis.tables import cell, records_table, write_csv
from genlab.utils.errors import GenlabError
from genlab.utils.run import read_summary
from genlab.utils.untrusted import read_yaml

log = logging.getLogger(__name__)


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory of a sweep: job number, overrides, status, error, metrics."""
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=lambda p: p.name):
        overrides_file = job / ".hydra" / "overrides.yaml"
        summary_file = job / "summary.json"
        if not overrides_file.is_file() and not summary_file.is_file():
            continue
        overrides = read_overrides(overrides_file) if overrides_file.is_file() else []
        summary = read_summary(job)
        row: dict[str, Any] = {
            "job": job.name,
            "overrides": " ".join(overrides),
            "status": summary.get("status", "missing"),
            "error": summary.get("error", ""),
        }
        row.update(summary.get("metrics", {}))
        rows.append(row)
    return rows


def read_overrides(path: Path) -> list[str]:
    """A job's .hydra/overrides.yaml as a list of strings ([] with a warning when unreadable)."""
    try:
        data = read_yaml(path, what="overrides")
    except GenlabError as exc:
        log.warning("%s", exc)
        return []
    return [str(o) for o in data] if isinstance(data, list) else []


def write_table(
    rows: list[dict[str, Any]], csv_path: Path, md_path: Path, preamble: str = ""
) -> None:
    """Write rows as CSV and as a Markdown table (numbers with 4 significant digits) under
    `preamble`. Each file is replaced atomically: the workers of a search may write at once."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    tmp_csv = csv_path.with_name(f".{csv_path.name}.{os.getpid()}.tmp")
    write_csv(tmp_csv, rows, columns)
    tmp_csv.replace(csv_path)
    table = records_table(rows, columns, fmt=lambda v: cell(v, digits=4, max_len=120))
    tmp_md = md_path.with_name(f".{md_path.name}.{os.getpid()}.tmp")
    tmp_md.write_text(preamble + table)
    tmp_md.replace(md_path)


FAILED_STATUSES = ("failed", "diverged", "missing")


class SweepSummary(Callback):
    """Hydra callback: after a multirun, write sweep_summary.csv and sweep_summary.md in the
    sweep directory (one row per job: overrides, status, error, final metrics), and end the
    process with exit status 1 when a job failed or diverged (`multirun_fail_exit`), so that
    scripts and schedulers notice."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = sweep_rows(sweep_dir)
        # an Optuna search writes its summary from the study (genlab.search)
        if rows and not is_optuna_search(config):
            write_table(rows, sweep_dir / "sweep_summary.csv", sweep_dir / "sweep_summary.md")
            failed = sum(r["status"] != "completed" for r in rows)
            log.info(
                "sweep summary: %s (%d jobs, %d failed)",
                sweep_dir / "sweep_summary.md",
                len(rows),
                failed,
            )
        bad = [r for r in rows if r["status"] in FAILED_STATUSES]
        if bad and config.get("multirun_fail_exit", True):
            jobs = ", ".join(f"{r['job']} ({r['status']})" for r in bad[:10])
            print(
                f"\ngenlab: {len(bad)} of {len(rows)} jobs of the multirun in {sweep_dir} did "
                f"not complete: {jobs}. Exit status 1 (multirun_fail_exit=false keeps 0).\n",
                file=sys.stderr,
            )
            raise SystemExit(1)


def is_optuna_search(config: DictConfig) -> bool:
    """Whether this multirun is run by genlab's Optuna sweeper."""
    target = str(config.hydra.sweeper.get("_target_", ""))
    return target.startswith("hydra_plugins.genlab_optuna_sweeper.")


def single_job_argv_for_ddp_children() -> None:
    """Make Lightning's DDP child processes re-run THIS job, not the whole multirun.

    Lightning starts each DDP child as `python -m genlab.train <sys.argv[1:]>
    hydra.run.dir=<HydraConfig.run.dir>`. In a multirun that would be the sweep's arguments
    (`-m a=1,2`) and a fresh run directory, so every child would start a sweep of its own.
    Here argv becomes the job's own overrides (the values a sweeper such as Optuna chose, so
    every rank trains the same parameters) and run.dir the job's directory.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return
    sys.argv = [sys.argv[0], *hc.overrides.task, "hydra.mode=RUN"]
    with read_write(hc), open_dict(hc):
        hc.run.dir = hc.runtime.output_dir
