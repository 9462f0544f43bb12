"""One table of many runs (e.g. the runs of a sweep): the library behind
`python -m genlab.compare DIR...`.

Every run directory under the given folders (one holding summary.json) becomes a row: its
status, steps and wall time, the metric its model is judged by (summary.json's `monitor`, its
best value) and its test metrics, then only the options that differ between the runs. Options
are the values of the runs' config.yaml, named by the command-line override that set them
where the runs have one (`.hydra/overrides.yaml`); what is the run's own (paths, directories,
names, the logger and its W&B id) is left out, and options that always take the same values
as another one (`model.encoder.out_dim` beside `model.latent_dim`) are shown once. Runs of
different model families get a table each. `all_columns` shows everything instead.

A run directory may come from anyone: every file is read through genlab.utils.untrusted
(bounded, no YAML aliases, depth-limited), checked for the types genlab writes, and never
turned into a config. A run that cannot be read is skipped with a warning naming the file and
why, and listed as unreadable; it is an error only when it is the only run.
"""

from __future__ import annotations

import fnmatch
import html
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from genlab.analysis.tables import cell, markdown_table, write_csv
from genlab.utils.errors import GenlabError
from genlab.utils.run import STATUSES, effective_status
from genlab.utils.untrusted import read_json_object, read_yaml

# the run's own values, never an option: where it ran, what it was called, how it logged
RUN_SPECIFIC_PREFIXES = ("paths.", "hydra.", "extras.", "logger.")
RUN_SPECIFIC_KEYS = frozenset({"run_name", "task_name", "tags", "resume", "ckpt_path"})
RUN_SPECIFIC_LEAVES = frozenset(
    {
        "data_dir",
        "cache_dir",
        "save_dir",
        "dirpath",
        "default_root_dir",
        "output_dir",
        "log_dir",
        "root_dir",
        "run_dir",
        "dir",
        "path",
        "ckpt_path",
    }
)
MAX_OPTIONS = 12  # more differing options are counted under the table (all_columns shows them)
# the grids a run writes under RUN/images/: <kind>_e<epoch>.png or <kind>_s<step>.png
GRID = re.compile(r"^(?P<kind>[a-z][a-z0-9_]*?)_(?P<stamp>[es]\d{1,12})\.png$")
GRID_ORDER = ("samples", "reconstructions", "translations")
MISSING = "—"  # an option a run does not have


@dataclass
class Run:
    """What compare read from one run directory."""

    name: str
    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]  # flattened: {'model.latent_dim': 16, ...}
    overrides: dict[str, str] | None  # the command line's `key=value`s, None when unknown
    evals: dict[str, Any]
    grids: dict[str, Path]

    @property
    def family(self) -> str:
        target = self.config.get("model._target_")
        return str(target).rsplit(".", 1)[-1] if target else "unknown"

    @property
    def mode(self) -> str:
        return "max" if self.config.get("model.monitor_mode") == "max" else "min"


@dataclass
class Unreadable:
    """A run directory that could not be read, and why."""

    name: str
    path: Path
    reason: str


@dataclass
class Group:
    """The table of one model family: its columns, rows (in order) and the differing options
    not shown (`hidden`), with the options shown once for several (`aliases`)."""

    family: str
    columns: list[str]
    rows: list[dict[str, Any]]
    runs: list[Run]
    hidden: list[str] = field(default_factory=list)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    partial: list[str] = field(default_factory=list)  # options only some runs' configs have


@dataclass
class Comparison:
    groups: list[Group]
    unreadable: list[Unreadable]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every readable run's row, group after group."""
        return [row for group in self.groups for row in group.rows]


# --- finding and reading runs ------------------------------------------------------------------


def find_runs(dirs: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(run directory, the folder it was found under) for every directory holding a
    summary.json at or under each of `dirs` (evaluation folders RUN/eval/* excluded), without
    following symbolic links; sorted, each once."""
    found: dict[Path, Path] = {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise GenlabError(f"{str(d)!r} is not a directory: pass run or sweep directories.")
        for top, subdirs, files in os.walk(d, followlinks=False):
            here = Path(top)
            subdirs[:] = sorted(s for s in subdirs if not (here / s).is_symlink())
            if here.name == "eval":
                subdirs[:] = []  # RUN/eval/<time>/ holds an evaluation's records, not runs
                continue
            if "summary.json" in files:
                found.setdefault(here.resolve(), d.resolve())
    return sorted(found.items())


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {'a.b.c': value}; lists kept as their JSON text."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = json.dumps(data, default=str) if isinstance(data, list) else data
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# summary.json fields compare reads, and the types genlab writes them with
_SUMMARY_TYPES: dict[str, tuple[str, Any]] = {
    "status": ("text", lambda v: isinstance(v, str)),
    "monitor": ("text", lambda v: isinstance(v, str)),
    "host": ("text", lambda v: isinstance(v, str)),
    "best_score": ("a number", _number),
    "started": ("a number", _number),
    "ended": ("a number", _number),
    "heartbeat": ("a number", _number),
    "global_step": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "epoch": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "pid": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "metrics": ("an object of numbers", lambda v: isinstance(v, dict)),
}


def check_summary(summary: dict[str, Any], path: Path) -> None:
    """Refuse a summary.json whose fields are not of the types genlab writes."""
    for key, (kind, ok) in _SUMMARY_TYPES.items():
        value = summary.get(key)
        if value is not None and not ok(value):
            raise GenlabError(
                f"the run record {path} has {key}={str(value)[:60]!r}, not {kind}: it was not "
                "written by genlab (or was altered)."
            )
    if summary.get("status") is not None and summary["status"] not in STATUSES:
        raise GenlabError(
            f"the run record {path} has status={summary['status'][:60]!r}, not one of "
            f"{list(STATUSES)}: it was not written by genlab (or was altered)."
        )
    bad = [
        k for k, v in (summary.get("metrics") or {}).items() if v is not None and not _number(v)
    ]
    if bad:
        raise GenlabError(
            f"the run record {path} has metrics that are not numbers ({bad[0][:60]!r}): it was "
            "not written by genlab (or was altered)."
        )


def _regular_file(path: Path) -> bool:
    """A plain file (not a link, a pipe or a device): reading it cannot block or loop."""
    return path.is_file() and not path.is_symlink()


def read_overrides(run: Path) -> dict[str, str] | None:
    """The run's command-line overrides (`.hydra/overrides.yaml`) as {key: value}; None
    when the run has no such file."""
    path = run / ".hydra" / "overrides.yaml"
    if not path.exists() and not path.is_symlink():
        return None
    if not _regular_file(path):
        raise GenlabError(f"the run's overrides {path} is not a plain file.")
    data = read_yaml(path, what="the run's overrides")
    if data is None:
        return {}
    if not isinstance(data, list) or not all(isinstance(o, str) for o in data):
        raise GenlabError(
            f"the run's overrides {path} is not a list of key=value lines: it was not written by "
            "Hydra (or was altered)."
        )
    out = {}
    for override in data:
        key, eq, value = override.partition("=")
        out[key.lstrip("+~")] = value if eq else ""
    return out


def eval_results(run: Path) -> dict[str, Any]:
    """Numbers of the run's latest evaluation (RUN/eval/<time>/metrics.json), flattened."""
    folder = run / "eval"
    if not folder.is_dir() or folder.is_symlink():
        return {}
    files = sorted(p for p in folder.glob("*/metrics.json") if _regular_file(p))
    if not files:
        return {}
    data = read_json_object(files[-1], what="the run's evaluation record")
    out = {}
    for key, value in flatten(
        {k: v for k, v in data.items() if k not in ("ckpt_path", "data")}
    ).items():
        if ".provenance." in f".{key}." or not _number(value):
            continue
        out["eval/" + key.replace(".values.", ".").replace(".", "/")] = value
    return out


def grids(run: Path) -> dict[str, Path]:
    """The latest grid of each kind the run wrote under RUN/images/ ({kind: file}); plain
    files named as genlab names them, nothing is opened."""
    folder = run / "images"
    if not folder.is_dir() or folder.is_symlink():
        return {}
    latest: dict[str, tuple[tuple[str, int], Path]] = {}
    for path in folder.iterdir():
        match = GRID.match(path.name)
        if match is None or not _regular_file(path):
            continue
        stamp = match["stamp"]
        key = (stamp[0], int(stamp[1:]))
        kind = match["kind"]
        if kind not in latest or key > latest[kind][0]:
            latest[kind] = (key, path)
    return {kind: path for kind, (_, path) in latest.items()}


def read_run(run: Path, name: str) -> Run:
    """One run directory, read as untrusted data; a GenlabError naming the file and why when
    any of its records is not what genlab writes."""
    summary_path = run / "summary.json"
    if not _regular_file(summary_path):
        raise GenlabError(f"the run record {summary_path} is not a plain file.")
    summary = read_json_object(summary_path, what="the run record")
    check_summary(summary, summary_path)
    config_path = run / "config.yaml"
    config: dict[str, Any] = {}
    if config_path.exists() or config_path.is_symlink():
        if not _regular_file(config_path):
            raise GenlabError(f"the run's config {config_path} is not a plain file.")
        data = read_yaml(config_path, what="the run's config")
        if not isinstance(data, dict):
            raise GenlabError(
                f"the run's config {config_path} holds a {type(data).__name__}, not a mapping: "
                "it was not written by genlab (or was altered)."
            )
        config = flatten(data)
    return Run(
        name=name,
        path=run,
        summary=summary,
        config=config,
        overrides=read_overrides(run),
        evals=eval_results(run),
        grids=grids(run),
    )


def run_names(found: Sequence[tuple[Path, Path]], *, several: bool) -> list[str]:
    """A short, unique name per run: its path under the folder it was found in (under that
    folder's parent when several folders were given); the full path where two would clash."""
    names = []
    for path, root in found:
        base = root.parent if several else root
        names.append(str(path.relative_to(base)) if path != base else path.name)
    clashes = {n for n in names if names.count(n) > 1}
    return [str(p) if n in clashes else n for (p, _), n in zip(found, names, strict=True)]


def read_runs(dirs: Sequence[str | Path]) -> tuple[list[Run], list[Unreadable]]:
    """Every run under `dirs`, read; the unreadable ones apart, each with its reason. An
    error when there is no run, or when no run could be read (the only one's reason)."""
    found = find_runs(dirs)
    if not found:
        raise GenlabError(
            f"no run directories (with summary.json) under {[str(d) for d in dirs]}: pass the "
            "folder of a training run or of a sweep (logs/train/multiruns/<time>)."
        )
    names = run_names(found, several=len(dirs) > 1)
    runs, unreadable = [], []
    for (path, _), name in zip(found, names, strict=True):
        try:
            runs.append(read_run(path, name))
        except GenlabError as exc:
            unreadable.append(Unreadable(name, path, str(exc)))
    if not runs:
        if len(unreadable) == 1:
            raise GenlabError(unreadable[0].reason)
        shown = "; ".join(f"{u.name}: {u.reason}" for u in unreadable[:3])
        raise GenlabError(f"none of the {len(unreadable)} runs could be read: {shown}")
    return runs, unreadable


# --- rows and columns --------------------------------------------------------------------------


def wall_s(summary: dict[str, Any]) -> float | None:
    """Seconds from the run's start to its end (or its last heartbeat while it runs)."""
    start = summary.get("started")
    end = summary.get("ended") or summary.get("heartbeat")
    if start is None or end is None:
        return None
    return round(max(0.0, float(end) - float(start)), 1)


def best_column(monitor: str) -> str:
    return f"best {monitor}"


def base_row(run: Run) -> dict[str, Any]:
    """The results of a run: name, family, status, steps, wall time, the best value of its
    declared metric, every final metric and the latest evaluation's numbers."""
    s = run.summary
    # the run's metrics first: a metric named like a field of the row does not replace it
    row: dict[str, Any] = {**(s.get("metrics") or {}), **run.evals}
    row |= {
        "run": run.name,
        "family": run.family,
        "status": effective_status(s),  # a killed "running" run: interrupted
        "steps": s.get("global_step"),
        "wall_s": wall_s(s),
        "epoch": s.get("epoch"),
        "monitor": s.get("monitor"),
        "best_score": s.get("best_score"),
    }
    if s.get("monitor"):
        row[best_column(s["monitor"])] = s.get("best_score")
    return row


def run_specific(key: str, value: Any, run: Run) -> bool:
    """Whether a config value is the run's own (a path, a directory, a name, the logger)."""
    if f"{key}.".startswith(RUN_SPECIFIC_PREFIXES) or key in RUN_SPECIFIC_KEYS:
        return True
    if key.rsplit(".", 1)[-1] in RUN_SPECIFIC_LEAVES:
        return True
    return isinstance(value, str) and str(run.path) in value


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differing_options(
    runs: Sequence[Run], *, everything: bool = False
) -> tuple[dict[str, list[Any]], dict[str, list[str]], list[str]]:
    """The options whose values differ between `runs`: {name: value per run} in display order;
    the options shown once for others that take the same values ({shown: [others]}); and the
    options that only some runs have, with one value among those that do (a key added to
    genlab's configs between two runs: not shown by default).

    Override keys (the command line) come first, named as typed (a group choice such as
    `model=vae` hides the config values under `model.`), then config keys. `everything`: every
    differing config value, run-specific ones too, nothing merged."""
    keys = sorted({k for r in runs for k in r.config})

    def values_of(key: str) -> list[Any]:
        return [r.config.get(key, MISSING) for r in runs]

    def differs(values: list[Any]) -> bool:
        return len({_shown(v) for v in values}) > 1

    def presence_only(values: list[Any]) -> bool:
        return len({_shown(v) for v in values if v is not MISSING}) <= 1

    if everything:
        return {k: v for k in keys if differs(v := values_of(k))}, {}, []
    options: dict[str, list[Any]] = {}
    partial: list[str] = []
    covered: list[str] = []  # group choices: config keys under them are explained by them
    if runs and all(r.overrides is not None for r in runs):
        override_keys: list[str] = []
        for r in runs:
            override_keys += [k for k in r.overrides or {} if k not in override_keys]
        for key in override_keys:
            if f"{key}.".startswith(RUN_SPECIFIC_PREFIXES) or key in RUN_SPECIFIC_KEYS:
                continue
            group = not any(key in r.config for r in runs)
            # a value: as the config holds it (typed, also where the default was kept); a
            # group choice (model=vae): as typed, "—" where the run kept the default
            if group:
                values = [(r.overrides or {}).get(key, MISSING) for r in runs]
            else:
                values = values_of(key)
            if not differs(values):
                continue
            if group and any(k.startswith(key + ".") for k in keys):
                covered.append(key + ".")
            elif not group and presence_only(values):
                partial.append(key)
                continue
            if all(run_specific(key, v, r) for v, r in zip(values, runs, strict=True)):
                continue
            options[key] = values
    aliases: dict[str, list[str]] = {}
    by_values = {_shown(v): k for k, v in options.items()}
    from_config: dict[str, list[Any]] = {}
    # the shallowest key of those that always agree is shown (model.latent_dim, not
    # model.encoder.out_dim, which the config derives from it)
    for key in sorted(keys, key=lambda k: (k.count("."), k)):
        if key in options or key in partial or key.startswith(tuple(covered)):
            continue
        values = values_of(key)
        if not differs(values) or any(
            run_specific(key, v, r) for v, r in zip(values, runs, strict=True)
        ):
            continue
        if presence_only(values):
            partial.append(key)
            continue
        same = by_values.get(_shown(values))
        if same is not None:  # derived from a shown option (an interpolation of it)
            aliases.setdefault(same, []).append(key)
            continue
        from_config[key] = values
        by_values[_shown(values)] = key
    options.update(sorted(from_config.items()))
    return options, {k: sorted(v) for k, v in aliases.items()}, sorted(partial)


def _sort_value(value: Any) -> tuple[int, Any]:
    if _number(value) and not math.isnan(value):
        return (0, float(value))
    if value is None or value == "" or value == MISSING or _number(value):
        return (2, "")
    return (1, str(value))


def sort_rows(
    rows: list[dict[str, Any]], runs: list[Run], sort: str | None, descending: bool
) -> tuple[list[dict[str, Any]], list[Run]]:
    """Rows by column `sort` (numbers by value, then text; missing values last), or by the
    best value of the declared metric in its direction, runs that did not complete last."""
    pairs = list(zip(rows, runs, strict=True))
    if sort is not None:
        present = [p for p in pairs if _sort_value(p[0].get(sort))[0] < 2]
        absent = [p for p in pairs if _sort_value(p[0].get(sort))[0] == 2]
        present.sort(key=lambda p: (_sort_value(p[0][sort]), p[0]["run"]), reverse=descending)
        pairs = present + absent
    else:

        def order(pair: tuple[dict[str, Any], Run]) -> tuple[int, float, str]:
            row, run = pair
            score = row.get("best_score")
            if row["status"] != "completed" or not _number(score) or math.isnan(score):
                return (1, 0.0, row["run"])
            return (0, -score if run.mode == "max" else score, row["run"])

        pairs.sort(key=order)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _matches(column: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(column, p) for p in patterns)


def group_table(
    family: str,
    runs: list[Run],
    *,
    all_columns: bool = False,
    extra: Sequence[str] = (),
    max_options: int = MAX_OPTIONS,
) -> Group:
    """The table of runs of one family (columns in order, rows unsorted)."""
    rows = [base_row(r) for r in runs]
    options, aliases, partial = differing_options(runs, everything=all_columns)
    monitors = []
    for r in runs:
        m = r.summary.get("monitor")
        if m and best_column(m) not in monitors:
            monitors.append(best_column(m))
    present = {k for row in rows for k in row}
    if all_columns:
        first = ["run", "status", "steps", "wall_s", "epoch", "monitor", "best_score", *monitors]
        metrics = sorted(present - set(first) - {"family"})
        metrics = [k for k in metrics if not k.startswith("eval/")] + [
            k for k in metrics if k.startswith("eval/")
        ]
        shown_options, hidden = list(options), []
        first_cols = first + metrics
    else:
        tests = sorted(k for k in present if k.startswith("test/"))
        wanted = sorted(k for k in present if _matches(k, extra) and k not in tests)
        first_cols = ["run", "status", "steps", "wall_s", *monitors, *tests, *wanted]
        shown_options = [k for k in options if _matches(k, extra)]
        for key in options:
            if key not in shown_options and len(shown_options) < max_options:
                shown_options.append(key)
        hidden = [k for k in options if k not in shown_options]
    for i, row in enumerate(rows):
        row.update({k: options[k][i] for k in shown_options})
    # option names never shadow results (a metric and an option share no name: '/' vs '.')
    columns = first_cols + [k for k in shown_options if k not in first_cols]
    shown_aliases = {k: v for k, v in aliases.items() if k in columns}
    return Group(family, columns, rows, runs, hidden, shown_aliases, partial)


def compare(
    dirs: Sequence[str | Path],
    *,
    all_columns: bool = False,
    sort: str | None = None,
    descending: bool = False,
    extra: Sequence[str] = (),
    warn: bool = True,
) -> Comparison:
    """The comparison of every run under `dirs`: one table per model family (one table when
    all runs are of one family), each sorted by `sort` (a column name) or by the best value of
    its declared metric. Unreadable runs are skipped with a warning on stderr (`warn`)."""
    runs, unreadable = read_runs(dirs)
    for u in unreadable:
        if warn:
            print(f"genlab: warning: skipped run {u.path}: {u.reason}", file=sys.stderr)
    families: dict[str, list[Run]] = {}
    for run in runs:
        families.setdefault(run.family, []).append(run)
    groups = [
        group_table(family, members, all_columns=all_columns, extra=extra)
        for family, members in sorted(families.items())
    ]
    if sort is not None:
        known = {c for g in groups for c in g.columns}
        if sort not in known:
            raise GenlabError(
                f"--sort {sort!r} is not a column of this comparison; its columns: "
                f"{', '.join(sorted(known))}. (--all shows every column.)"
            )
    for group in groups:
        group.rows, group.runs = sort_rows(group.rows, group.runs, sort, descending)
    return Comparison(groups, unreadable)


def compare_runs(dirs: Sequence[str | Path], **options: Any) -> list[dict[str, Any]]:
    """One row per readable run (see `compare`), group after group."""
    return compare(dirs, warn=False, **options).rows


# --- output ------------------------------------------------------------------------------------


def _count(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _fmt(value: Any) -> str:
    if value == MISSING:
        return MISSING
    return cell(value, digits=4, max_len=60)


def group_notes(group: Group, *, markdown: bool = True) -> list[str]:
    """What the table of `group` does not show, in sentences (Markdown or plain text)."""
    tick = "`" if markdown else ""

    def name(key: str) -> str:
        return f"{tick}{cell(key, max_len=80, markdown=markdown)}{tick}"

    def names(keys: Sequence[str], limit: int = 8) -> str:
        more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
        return ", ".join(name(k) for k in keys[:limit]) + more

    notes = [
        f"{name(k)} stands also for {names(v)} (same values in every run)."
        for k, v in group.aliases.items()
    ]
    if group.hidden:
        notes.append(f"{len(group.hidden)} more options differ: {names(group.hidden)}.")
    if group.partial:
        notes.append(
            "Set in only some of these runs' configs (another genlab version?): "
            f"{names(group.partial)}."
        )
    if group.hidden or group.partial:
        notes[-1] += f" {tick}--all{tick} shows every column."
    return notes


def to_markdown(comparison: Comparison) -> str:
    """The tables in Markdown: a heading per family, the table, then what is not shown and
    the unreadable runs."""
    parts = []
    n = sum(len(g.rows) for g in comparison.groups)
    for group in comparison.groups:
        title = f"## {group.family}: {_count(len(group.rows))}"
        if len(comparison.groups) > 1:
            title += f" of {n}"
        cells = ([r.get(c) for c in group.columns] for r in group.rows)
        lines = [title, "", markdown_table(group.columns, cells, fmt=_fmt).rstrip()]
        notes = group_notes(group)
        if notes:
            lines += ["", *(f"- {note}" for note in notes)]
        parts.append("\n".join(lines) + "\n")
    if comparison.unreadable:
        lines = ["## Unreadable runs (skipped)", ""]
        lines += [f"- `{cell(u.name)}`: {cell(u.reason)}" for u in comparison.unreadable]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def csv_columns(comparison: Comparison) -> list[str]:
    """One header for every group: the run, its family, then each group's columns in order."""
    columns = ["run", "family"]
    for group in comparison.groups:
        columns += [c for c in group.columns if c not in columns]
    return [*columns, "problem"] if comparison.unreadable else columns


def csv_rows(comparison: Comparison) -> list[dict[str, Any]]:
    rows = comparison.rows
    rows += [
        {"run": u.name, "status": "unreadable", "problem": u.reason} for u in comparison.unreadable
    ]
    return rows


_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}"
    "th{background:#f3f3f3}td.n{text-align:right}img{width:220px;image-rendering:pixelated}"
    "figure{margin:0}figcaption{font-size:11px;color:#666}"
)


def _html_cell(value: Any) -> str:
    text = html.escape(cell(value, digits=4, max_len=200, markdown=False))
    return f'<td class="n">{text}</td>' if _number(value) else f"<td>{text}</td>"


def _img_src(image: Path, page_dir: Path) -> str:
    try:
        rel = os.path.relpath(image, page_dir)
    except ValueError:  # another drive
        return image.resolve().as_uri()
    return quote(Path(rel).as_posix())


def to_html(comparison: Comparison, page_dir: Path) -> str:
    """An HTML page: each family's table, then its runs' latest grids side by side (one
    column per run, one row per kind of grid), linked relative to `page_dir`."""
    esc = html.escape
    out = [
        "<!doctype html>",
        '<html><head><meta charset="utf-8"><title>genlab: comparison of runs</title>',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Comparison of {_count(len(comparison.rows))}</h1>",
    ]
    for group in comparison.groups:
        out.append(f"<h2>{esc(group.family)}: {_count(len(group.rows))}</h2>")
        out.append("<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in group.columns) + "</tr>")
        for row in group.rows:
            out.append("<tr>" + "".join(_html_cell(row.get(c)) for c in group.columns) + "</tr>")
        out.append("</table>")
        notes = group_notes(group, markdown=False)
        if notes:
            out.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
        kinds = sorted(
            {k for r in group.runs for k in r.grids},
            key=lambda k: (GRID_ORDER.index(k) if k in GRID_ORDER else len(GRID_ORDER), k),
        )
        if not kinds:
            out.append("<p>No sample grids under these runs' images/ folders.</p>")
            continue
        out.append("<h3>Grids (the latest of each kind)</h3>")
        out.append(
            "<table><tr><th></th>"
            + "".join(f"<th>{esc(r.name)}</th>" for r in group.runs)
            + "</tr>"
        )
        for kind in kinds:
            cells = []
            for run in group.runs:
                image = run.grids.get(kind)
                if image is None:
                    cells.append("<td></td>")
                    continue
                cells.append(
                    f'<td><figure><img src="{esc(_img_src(image, page_dir))}" alt="{esc(kind)}" '
                    f'loading="lazy"><figcaption>{esc(image.name)}</figcaption></figure></td>'
                )
            out.append(f"<tr><th>{esc(kind)}</th>{''.join(cells)}</tr>")
        out.append("</table>")
    if comparison.unreadable:
        out.append("<h2>Unreadable runs (skipped)</h2><ul>")
        out += [
            f"<li>{esc(cell(u.name, markdown=False))}: {esc(cell(u.reason, markdown=False))}</li>"
            for u in comparison.unreadable
        ]
        out.append("</ul>")
    out.append(f"<p>Written by python -m genlab.compare, {time.strftime('%Y-%m-%d %H:%M')}.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _write_atomic(path: Path, write: Any) -> None:
    """Write `path` through a new temp file beside it, then rename: never through a link
    planted at `path`, never half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tables(comparison: Comparison, prefix: str | Path) -> tuple[Path, Path, Path]:
    """Write PREFIX.csv, PREFIX.md and PREFIX.html; return their paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, html_path = (
        prefix.with_name(prefix.name + s) for s in (".csv", ".md", ".html")
    )
    _write_atomic(csv_path, lambda f: write_csv(f, csv_rows(comparison), csv_columns(comparison)))
    _write_atomic(md_path, lambda f: f.write(to_markdown(comparison)))
    _write_atomic(html_path, lambda f: f.write(to_html(comparison, html_path.parent.resolve())))
    return csv_path, md_path, html_path
