"""Tables of results: GitHub-flavoured Markdown and CSV, written one way everywhere (eval
tasks, the comparison of runs, sweep summaries)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

# control characters (a terminal escape in a run's name) never reach a table
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def cell(value: Any, *, digits: int = 5, max_len: int | None = None, markdown: bool = True) -> str:
    """A table cell: empty for None, floats to `digits` significant digits, line breaks and
    other control characters flattened to spaces (so any text keeps the table intact and the
    terminal unchanged), `|` escaped for Markdown (`markdown`), cut at `max_len`."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    text = _CONTROL.sub(" ", str(value))
    text = text[:max_len] if max_len is not None else text
    return text.replace("|", "\\|") if markdown else text


def markdown_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    align: str = "l",
    fmt: Callable[[Any], str] = cell,
) -> str:
    """A Markdown table: a header of `columns`, one line per row of cells formatted by `fmt`;
    `align` is 'l' or 'r' for every column, or one letter per column ('lrr')."""
    aligns = list(align) if len(align) == len(columns) else [align] * len(columns)
    lines = [
        "| " + " | ".join(cell(c) for c in columns) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def records_table(
    records: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    fmt: Callable[[Any], str] = cell,
) -> str:
    """A Markdown table of dicts, one row per record, `columns` in order (missing: empty)."""
    return markdown_table(columns, ([r.get(c) for c in columns] for r in records), fmt=fmt)


def write_csv(
    path: str | Path | TextIO, records: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> None:
    """Records as CSV with a header of `columns` (missing values empty), to a file path or an
    open text file (opened with newline="")."""
    if not isinstance(path, str | Path):
        _write_csv(path, records, columns)
        return
    with open(path, "w", newline="") as f:
        _write_csv(f, records, columns)


def _write_csv(f: TextIO, records: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow({c: record.get(c) for c in columns})
