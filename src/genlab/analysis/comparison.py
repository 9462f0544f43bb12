"""One table of many runs (e.g. the runs of a sweep): the library behind
`python -m genlab.compare DIR...`.

Every run directory under the given folders (one holding summary.json) becomes a row: its
status, the metric it is judged by and its best value, its final/test metrics, the latest
evaluation's results (RUN/eval/*/metrics.json: test, generation, report...) and the config
values that differ between the runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from genlab.analysis.tables import records_table, write_csv
from genlab.utils.errors import GenlabError
from genlab.utils.run import effective_status

# config keys that always differ between runs and say nothing about the model
IGNORED_CONFIG = ("paths.", "hydra.", "run_name", "extras.", "logger.", "callbacks.", "tags")


def find_runs(dirs: list[str | Path]) -> list[Path]:
    """Run directories (holding summary.json) at or under each of `dirs`, sorted."""
    runs: set[Path] = set()
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise GenlabError(f"{str(d)!r} does not exist: pass run or sweep directories.")
        if (d / "summary.json").is_file():
            runs.add(d.resolve())
        runs.update(p.parent.resolve() for p in d.rglob("summary.json") if "eval" not in p.parts)
    return sorted(runs)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {'a.b.c': value}; lists kept as their JSON text."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = json.dumps(data) if isinstance(data, list) else data
    return out


def eval_results(run: Path) -> dict[str, Any]:
    """Numbers of the run's latest evaluation (RUN/eval/<time>/metrics.json), flattened."""
    files = sorted((run / "eval").glob("*/metrics.json")) if (run / "eval").is_dir() else []
    if not files:
        return {}
    data = json.loads(files[-1].read_text())
    out = {}
    for key, value in flatten(
        {k: v for k, v in data.items() if k not in ("ckpt_path", "data")}
    ).items():
        if (
            ".provenance." in f".{key}."
            or not isinstance(value, (int, float))
            or isinstance(value, bool)
        ):
            continue
        out["eval/" + key.replace(".values.", ".").replace(".", "/")] = value
    return out


def run_row(run: Path, root: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(row of results, flattened config) of one run directory."""
    summary = json.loads((run / "summary.json").read_text())
    config_file = run / "config.yaml"
    config = (
        flatten(OmegaConf.to_container(OmegaConf.load(config_file), resolve=False))
        if config_file.is_file()
        else {}
    )
    try:
        name = str(run.relative_to(root)) if root is not None else run.name
    except ValueError:
        name = str(run)
    row: dict[str, Any] = {
        "run": name or run.name,
        "status": effective_status(summary),  # a killed "running" run: interrupted
        "model": config.get("model._target_", ""),
        "monitor": summary.get("monitor"),
        "best_score": summary.get("best_score"),
        "global_step": summary.get("global_step"),
    }
    row.update({k: v for k, v in (summary.get("metrics") or {}).items()})
    row.update(eval_results(run))
    return row, config


def compare_runs(dirs: list[str | Path]) -> list[dict[str, Any]]:
    """One row per run: results, then the config values that differ between runs.

    Sorted by best_score in the direction of the model's monitor_mode (failed runs last).
    """
    runs = find_runs(dirs)
    if not runs:
        raise GenlabError(
            f"no run directories (with summary.json) under {[str(d) for d in dirs]}: pass the "
            "folder of a training run or of a sweep (logs/train/multiruns/<time>)."
        )
    root = Path(dirs[0]).resolve() if len(dirs) == 1 else None
    pairs = [run_row(r, root) for r in runs]
    keys = sorted({k for _, cfg in pairs for k in cfg if not k.startswith(IGNORED_CONFIG)})
    differing = [
        k for k in keys if len({json.dumps(cfg.get(k), default=str) for _, cfg in pairs}) > 1
    ]
    rows = []
    for row, cfg in pairs:
        row.update({f"cfg/{k}": cfg.get(k) for k in differing})
        row["_mode"] = cfg.get("model.monitor_mode", "min")
        rows.append(row)

    def order(row: dict[str, Any]) -> tuple[int, float]:
        score = row.get("best_score")
        if (
            row.get("status") != "completed"
            or not isinstance(score, (int, float))
            or math.isnan(score)
        ):
            return (1, 0.0)
        return (0, -score if row["_mode"] == "max" else score)

    rows.sort(key=order)
    for row in rows:
        row.pop("_mode")
    return rows


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """The column order: the run and its score, differing config values, its metrics, then
    its evaluation results."""
    first = ["run", "status", "model", "monitor", "best_score", "global_step"]
    rest = sorted({k for r in rows for k in r} - set(first))
    metrics = [k for k in rest if not k.startswith(("cfg/", "eval/"))]
    return (
        first
        + [k for k in rest if k.startswith("cfg/")]
        + metrics
        + [k for k in rest if k.startswith("eval/")]
    )


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, columns in `columns` order."""
    return records_table(rows, columns(rows))


def write_tables(rows: list[dict[str, Any]], prefix: str | Path) -> tuple[Path, Path]:
    """Write PREFIX.csv and PREFIX.md; return their paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = prefix.with_suffix(".csv"), prefix.with_suffix(".md")
    write_csv(csv_path, rows, columns(rows))
    md_path.write_text(to_markdown(rows))
    return csv_path, md_path
