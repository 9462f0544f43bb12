"""Compare runs (e.g. the runs of a sweep) in one table: `python -m genlab.compare DIR...`.

Every run directory under the given folders (one holding summary.json) becomes a row: its
status, the metric it is judged by and its best value, its final/test metrics, the latest
evaluation's results and the config values that differ between the runs. Written as CSV and
Markdown (`--out PREFIX`, default DIR/comparison) and printed (genlab.analysis.comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genlab.analysis.comparison import compare_runs, to_markdown, write_tables
from genlab.utils.errors import exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genlab.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("dirs", nargs="+", help="run or sweep directories")
    parser.add_argument("--out", help="output prefix (default: FIRST_DIR/comparison)")
    args = parser.parse_args(argv)
    rows = compare_runs(args.dirs)
    csv_path, md_path = write_tables(rows, args.out or Path(args.dirs[0]) / "comparison")
    print(to_markdown(rows))
    print(f"written: {csv_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
