"""The sweep summary of a search, written from the study itself (so it covers the trials of
every worker): one row per trial with its state, genlab status, objective values, parameters
and run directory, and the best trial or the Pareto front; sweep_summary.csv and .md."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from genlab.search.multirun import write_table
from genlab.search.study import status_of


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial of a single-objective study, the Pareto front of a multi-objective one
    (by trial number); [] while no trial has completed."""
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    try:
        return [study.best_trial]
    except ValueError:
        return []


def study_rows(study: optuna.Study, metrics: list[str]) -> list[dict[str, Any]]:
    """One row per trial: number, Optuna state, genlab status, one column per objective
    (a pruned trial shows its last reported value), best or pareto, parameters, duration,
    run directory, error."""
    mark = "pareto" if len(study.directions) > 1 else "best"
    best = {t.number for t in best_trials(study)}
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "trial": trial.number,
            "state": trial.state.name.lower(),
            "status": status_of(trial),
        }
        values = trial.values or []
        row.update({m: values[i] if i < len(values) else None for i, m in enumerate(metrics)})
        row[mark] = "yes" if trial.number in best else ""
        row.update(trial.params)
        row["duration_s"] = round(trial.duration.total_seconds(), 1) if trial.duration else None
        row["run_dir"] = trial.user_attrs.get("run_dir", "")
        row["error"] = trial.user_attrs.get("error", "")
        rows.append(row)
    return rows


def headline(study: optuna.Study, metrics: list[str], storage: Any) -> str:
    """The Markdown lines above the table: counts by status, the best trial or the front,
    and how to open the study in optuna-dashboard."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(status_of(t) for t in trials)
    lines = [
        f"# Optuna study `{study.study_name}`",
        "",
        f"{len(trials)} trials: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + ".",
        "",
    ]
    best = best_trials(study)
    if len(study.directions) > 1:
        goal = ", ".join(
            f"{d.name.lower()} {m}" for d, m in zip(study.directions, metrics, strict=True)
        )
        front = ", ".join(str(t.number) for t in best) or "none yet"
        lines.append(f"Pareto front ({goal}): trials {front}.")
    elif best:
        (trial,) = best
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
        )
        lines.append(f"Best: trial {trial.number}, {metrics[0]} = {trial.value:.6g} ({params}).")
    if isinstance(storage, str):
        lines += ["", f"Browse the study: `optuna-dashboard {storage}`"]
    return "\n".join(lines) + "\n\n"


def write_summary(study: optuna.Study, sweep_dir: Path, metrics: list[str], storage: Any) -> None:
    """Write sweep_summary.csv and sweep_summary.md for `study` into `sweep_dir`."""
    rows = study_rows(study, metrics)
    if rows:
        write_table(
            rows,
            sweep_dir / "sweep_summary.csv",
            sweep_dir / "sweep_summary.md",
            preamble=headline(study, metrics, storage),
        )
