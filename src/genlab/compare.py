"""Compare runs (e.g. the runs of a sweep): `python -m genlab.compare DIR...`.

One row per run under the given folders (any directory holding summary.json): its status,
steps, wall time, the best value of the metric its model is judged by, its test metrics, and
only the options that differ between the runs; one table per model family. Written as
Markdown, CSV and an HTML page with the runs' sample grids side by side (`--out PREFIX`,
default FIRST_DIR/comparison) and printed. A run directory that cannot be read is skipped
with a warning (genlab.analysis.comparison).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from genlab.analysis.comparison import compare, to_markdown, write_tables
from genlab.utils.errors import exit_on_user_error

EXAMPLES = """examples:
  python -m genlab.compare logs/train/multiruns/<time>
  python -m genlab.compare logs/train/runs/<a> logs/train/runs/<b> --sort wall_s
  python -m genlab.compare logs/train/multiruns/<time> --all --out results/sweep

docs: docs/evaluation.md#comparing-runs
"""


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genlab.compare",
        description=textwrap.fill(" ".join(__doc__.split("\n\n")[1].split()), width=79),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dirs", nargs="+", help="run or sweep directories")
    parser.add_argument(
        "--out", help="output prefix: PREFIX.md, .csv, .html (default: FIRST_DIR/comparison)"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="every column: all metrics, the latest eval's numbers, every differing config value",
    )
    parser.add_argument("--sort", metavar="COLUMN", help="sort each table by this column")
    parser.add_argument("--desc", action="store_true", help="sort in descending order")
    parser.add_argument(
        "--columns",
        metavar="GLOB",
        action="append",
        default=[],
        help="also show the metrics or options matching GLOB, e.g. 'eval/*fid*' (repeatable)",
    )
    args = parser.parse_args(argv)
    comparison = compare(
        args.dirs,
        all_columns=args.all,
        sort=args.sort,
        descending=args.desc,
        extra=args.columns,
    )
    paths = write_tables(comparison, args.out or Path(args.dirs[0]) / "comparison")
    print(to_markdown(comparison))
    print(f"written: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
