"""The pictures of the family pages (docs/autoencoders.md, vaes.md, gans.md, translation.md),
made by the shipped recipes, so they can be refreshed with one command:

    python benchmarks/docs_pictures.py                                  # all four families
    python benchmarks/docs_pictures.py --families gan                   # one
    python benchmarks/docs_pictures.py --families ae vae --out docs/images --threads 1

For each recipe of a family (RECIPES below) it trains as a user would, in a subprocess from the
repository root:

    python -m genlab.train [experiment=X] seed=0 logger=csv threads=T <budget> \
        hydra.run.dir=WORK/<recipe>

with OMP_NUM_THREADS=T and the CPU-sized budget stated in RECIPES (trainer.max_epochs=N), then
draws the training curves of that run as a user would, with genlab's report:

    python -m genlab.eval ckpt_path=WORK/<recipe>/checkpoints/last.ckpt tasks=[report] \
        hydra.run.dir=WORK/<recipe>/eval

and copies, unchanged, the files genlab wrote: the run's final grids (images/<kind>_<stamp>.png,
the latest of each kind) and the report's curves.png, into OUT/<family>/<recipe>_<kind>.png.
Beside them, OUT/<family>/<recipe>.json holds the commands, the date, the machine, the wall
time of each command, which file each picture was copied from, and the run's final metrics
(summary.json). Nothing is re-drawn. If a family's pictures weigh more than --max-kb in
total, the script ends with an error once every family is done (the pages must stay light).

The budgets are the recipes' own: the default run (experiment=ae_mnist) 20 epochs,
vae_mnist_classic 50, gan_mnist 48 (2,976 iterations), pix2pix_edges_mnist 10 (620
iterations). Measured 2026-12-04/05 with one thread on a shared 2-core machine: 30 s, 56 s,
127 s (224 s for the recipe of
2026-12-05, under load) and 132 s of training, plus about 10 s of report each.

WORK defaults to logs/docs_pictures/<date>_<time> (git-ignored); the run directories stay
there for a closer look.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import runs

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Recipe:
    """One shipped recipe, the budget it is trained at, and the pictures kept from its run."""

    name: str  # prefix of the files in OUT/<family>/
    recipe: tuple[str, ...]  # the recipe's options (experiment=...); () is the default run
    budget: tuple[str, ...]  # the CPU-sized budget, appended to the recipe
    grids: tuple[str, ...]  # kinds of images/<kind>_<stamp>.png to keep (the final one of each)
    curves: bool = True  # keep the report's training curves (report/curves.png)
    note: str = ""  # how the budget relates to the recipe's own, for the JSON


RECIPES: dict[str, list[Recipe]] = {
    "ae": [
        Recipe(
            name="ae_mnist",
            recipe=(),
            budget=("trainer.max_epochs=20",),
            grids=("reconstructions", "interpolation_linear"),
            note="the default run (experiment=ae_mnist), at its own budget of 20 epochs",
        ),
    ],
    "vae": [
        Recipe(
            name="vae_mnist_classic",
            recipe=("experiment=vae_mnist_classic",),
            budget=("trainer.max_epochs=50",),
            grids=("reconstructions", "samples", "interpolation_linear"),
            note="the recipe's own budget: 50 epochs, 1,550 steps",
        ),
    ],
    "gan": [
        Recipe(
            name="gan_mnist",
            recipe=("experiment=gan_mnist",),
            budget=("trainer.max_epochs=48",),
            grids=("samples", "prior_interpolation_spherical"),
            note="the recipe's own budget: 48 epochs, 2,976 GAN iterations",
        ),
    ],
    "translation": [
        Recipe(
            name="pix2pix_edges_mnist",
            recipe=("experiment=pix2pix_edges_mnist",),
            budget=("trainer.max_epochs=10",),
            grids=("translations",),
            note="the recipe's own budget: 10 epochs, 620 iterations",
        ),
        # sr_x4_mnist is left out: its own 10 epochs take ~9 min with one thread on a 2-core
        # machine (about 4x pix2pix's), too long for a refresh of the pages
    ],
}
STAMP = re.compile(r"^(?P<kind>.+)_(?:e\d{4}|s\d{8})\.png$")


def machine() -> str:
    """The CPU's model name (Linux) or architecture, its core count and the load average."""
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{runs.machine()}, {platform.system()}{load}"


def versions() -> dict[str, str]:
    """Python's, torch's and Lightning's versions and the repository's commit."""
    out = {"python": platform.python_version()}
    for name in ("torch", "lightning"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    with contextlib.suppress(OSError):
        out["genlab_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    return out


def genlab(module: str, args: list[str], *, threads: int, log: Path) -> tuple[str, float]:
    """Run `python -m genlab.<module> args` from the repository root, its output in `log`;
    return the command as a user types it and its wall time in seconds."""
    # paths under the repository as the user (who runs from there) would type them
    command = shlex.join(["python", "-m", f"genlab.{module}", *args]).replace(f"{REPO}/", "")
    print(f"$ OMP_NUM_THREADS={threads} {command}", flush=True)
    times = runs.run_timed(
        [sys.executable, "-m", f"genlab.{module}", *args],
        log,
        threads,
        cwd=REPO,
        wandb_mode="disabled",
        shown=f"`{command}`",
        tail=3000,
    )
    return command, times["wall_s"]


def final_grids(images: Path) -> dict[str, Path]:
    """The latest grid of each kind in a run's images/ folder (by the time it was written:
    epoch stamps and step stamps do not sort against each other)."""
    latest: dict[str, Path] = {}
    for path in images.glob("*.png"):
        match = STAMP.match(path.name)
        if match is None:
            continue
        kind = match.group("kind")
        if kind not in latest or path.stat().st_mtime_ns > latest[kind].stat().st_mtime_ns:
            latest[kind] = path
    return latest


def make(family: str, recipe: Recipe, *, out: Path, work: Path, threads: int) -> dict:
    """Train the recipe, draw its report, copy the pictures; return what the JSON holds."""
    where = machine()  # the load average before this run's own
    run_dir = work / recipe.name
    run_dir.mkdir(parents=True, exist_ok=False)
    train_args = [
        *recipe.recipe,
        "seed=0",
        "logger=csv",
        f"threads={threads}",
        *recipe.budget,
        f"hydra.run.dir={run_dir}",
    ]
    train_cmd, train_s = genlab(
        "train", train_args, threads=threads, log=work / f"{recipe.name}.log"
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("status") != "completed":
        sys.exit(f"{run_dir}: status {summary.get('status')!r}, not completed")

    dest = out / family
    dest.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, dict] = {}
    grids = final_grids(run_dir / "images")
    missing = [kind for kind in recipe.grids if kind not in grids]
    if missing:
        sys.exit(f"{run_dir}/images has no {missing} grid (it has {sorted(grids)})")
    for kind in recipe.grids:
        name = f"{recipe.name}_{kind}.png"
        shutil.copyfile(grids[kind], dest / name)
        pictures[name] = {"from": str(grids[kind].relative_to(run_dir))}

    eval_cmd, eval_s = None, None
    if recipe.curves:
        eval_dir = run_dir / "eval"
        eval_cmd, eval_s = genlab(
            "eval",
            [
                f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                "tasks=[report]",
                f"hydra.run.dir={eval_dir}",
            ],
            threads=threads,
            log=work / f"{recipe.name}_eval.log",
        )
        curves = eval_dir / "report" / "curves.png"
        if not curves.is_file():
            sys.exit(f"{eval_dir}: the report drew no curves.png")
        name = f"{recipe.name}_curves.png"
        shutil.copyfile(curves, dest / name)
        pictures[name] = {"from": str(curves.relative_to(run_dir))}

    for name in pictures:
        pictures[name]["kb"] = round((dest / name).stat().st_size / 1024)
    record = {
        "family": family,
        "recipe": recipe.name,
        "budget": " ".join(recipe.budget),
        "budget_note": recipe.note,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": where,
        "threads": threads,
        "versions": versions(),
        "refresh": f"python benchmarks/docs_pictures.py --families {family}",
        "train_command": f"OMP_NUM_THREADS={threads} {train_cmd}",
        "train_wall_s": round(train_s, 1),
        "eval_command": f"OMP_NUM_THREADS={threads} {eval_cmd}" if eval_cmd else None,
        "eval_wall_s": round(eval_s, 1) if eval_s is not None else None,
        "global_step": summary.get("global_step"),
        "epochs": summary.get("epoch"),
        "monitor": summary.get("monitor"),
        "best_score": summary.get("best_score"),
        "metrics": summary.get("metrics", {}),
        "pictures": pictures,
    }
    (dest / f"{recipe.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (OMP_NUM_THREADS)")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="where the runs go (default: logs/docs_pictures/<date>_<time>)",
    )
    parser.add_argument(
        "--max-kb", type=int, default=300, help="the most a family's pictures may weigh"
    )
    args = parser.parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    work = (args.work or REPO / "logs" / "docs_pictures" / stamp).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    too_heavy = []
    for family in args.families:
        records = [
            make(family, recipe, out=out, work=work, threads=args.threads)
            for recipe in RECIPES[family]
        ]
        total = sum(
            (out / family / name).stat().st_size for r in records for name in r["pictures"]
        )
        for r in records:
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(r["metrics"].items()))
            print(
                f"{family}/{r['recipe']}: {r['budget']}, step {r['global_step']}, "
                f"train {r['train_wall_s']} s; {metrics}"
            )
        print(
            f"{family}: {len(records)} recipe(s), pictures {total / 1024:.0f} KB in {out / family}"
        )
        if total > args.max_kb * 1024:
            too_heavy.append(f"{family} ({total / 1024:.0f} KB)")
    if too_heavy:
        sys.exit(f"pictures over --max-kb {args.max_kb}: {', '.join(too_heavy)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
