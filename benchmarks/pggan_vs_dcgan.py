"""Progressive GAN against DCGAN on the bundled digits at equal wall-clock time.

    python benchmarks/pggan_vs_dcgan.py timing                      # seconds per iteration
    python benchmarks/pggan_vs_dcgan.py compare --classifier-ckpt CLF.ckpt --seeds 0 1 2 \
        --pggan-steps N                                              # train, evaluate
    python benchmarks/pggan_vs_dcgan.py curves --classifier-ckpt CLF.ckpt --seeds 0 1 2 \
        --budgets 1 4 --plot docs/images/gans/pggan_vs_dcgan_curves.png   # FID over time

`timing` trains both recipes as shipped (`experiment=dcgan_mnist`, `experiment=pggan_mnist`)
for a few dozen iterations each, alternating, `--repeats` times, in the same window of time
(the machine is shared: only ratios measured together mean anything). Progressive growing
changes the cost of an iteration with the stage, so the progressive run goes through every
phase of its schedule at 20 iterations per phase, and the median time of an iteration is
kept per phase. Validation, grids, checkpoints and loggers are off; only iterations count.
From the medians it prints the number of pggan_mnist iterations that take as long as
dcgan_mnist's full budget (trainer.max_epochs x iterations per epoch).

`curves` trains dcgan_mnist for the largest `--budgets` multiple of its iterations and
pggan_mnist once per budget (its phases and iterations scaled by the multiple: the recipe's
887 iterations of 100-iteration phases are one budget), per seed, with the domain FID (500
samples against the 500 validation digits, the `generation_metrics` callback) every
`--every` iterations (DCGAN) or every phase (progressive), and the training time of every
iteration (`IterationTimer`: validation, metrics and checkpoints excluded). Results:
pggan_vs_dcgan-curves.json / .md and a plot of FID against training CPU time
(`--plot`, e.g. docs/images/gans/pggan_vs_dcgan_curves.png). The DCGAN recipe has no
schedule, so the first budget's curve is the start of the longest run.

`compare` trains each recipe for each seed (`python -m genlab.train experiment=... seed=S`,
the CSV logger only; pggan with `trainer.max_steps=--pggan-steps`), then scores each run's
last checkpoint with `python -m genlab.eval tasks=[generation]` and the domain classifier
(`python -m genlab.train experiment=classifier_mnist`): FID/KID, precision/recall and
density/coverage in its feature space, 500 samples against the 500 test digits. Results:
pggan_vs_dcgan.json / .md in --out (default benchmarks/results/), with each run's wall time
and final sample grid.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L

HERE = Path(__file__).resolve().parent
PHASE_STEPS = 20  # iterations per phase in the timing run of pggan_mnist


class IterationTimer(L.Callback):
    """Wall and CPU time (this process, all threads) of every training iteration, grouped by
    the progressive stage it ran at ("r8-fade", "r8", ...; "all" for other models); written
    to RUN/iteration_times.json as {clock: {stage: [seconds, ...]}}."""

    def __init__(self) -> None:
        self.times: dict[str, dict[str, list[float]]] = {"wall": {}, "cpu": {}}
        self._t0 = (0.0, 0.0)

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        self._t0 = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        wall, cpu = time.perf_counter() - self._t0[0], time.process_time() - self._t0[1]
        progress = getattr(pl_module, "progress", None)
        key = "all"
        if progress is not None:
            key = f"r{progress.resolution}" + ("-fade" if progress.alpha < 1.0 else "")
        self.times["wall"].setdefault(key, []).append(wall)
        self.times["cpu"].setdefault(key, []).append(cpu)

    def on_train_end(self, trainer, pl_module) -> None:
        out = Path(trainer.default_root_dir) / "iteration_times.json"
        out.write_text(json.dumps(self.times))


class CurvePoints(IterationTimer):
    """IterationTimer, then genlab's GenerationMetrics every `every_n_steps` iterations (its
    options as keyword arguments): the iteration is timed before the metrics run, so the
    times are the training's alone whatever order the callbacks run in."""

    def __init__(self, **metrics) -> None:
        from genlab.callbacks import GenerationMetrics

        super().__init__()
        self.metrics = GenerationMetrics(**metrics)

    def setup(self, trainer, pl_module, stage) -> None:
        self.metrics.setup(trainer, pl_module, stage)

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        self.metrics.on_train_batch_end(trainer, pl_module, *args)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step % self.metrics.every_n_steps:  # the last iteration too
            self.metrics.compute(trainer, pl_module)
        super().on_train_end(trainer, pl_module)


def genlab(module: str, *args: str, cwd: Path, threads: int) -> float:
    """Run `python -m module args` in cwd; return the CPU seconds it used (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "disabled",
    }
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(f"{module} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def latest_run(root: Path, task: str = "train") -> Path:
    return max((root / "logs" / task / "runs").iterdir(), key=lambda p: p.stat().st_mtime)


QUIET = ["logger=csv", "extras.print_config=false", "~callbacks.rich_progress_bar"]


def timing(args: argparse.Namespace) -> dict:
    """Median seconds per iteration (wall and CPU) of dcgan_mnist, and of pggan_mnist per
    phase."""
    work = args.work / "timing"
    work.mkdir(parents=True, exist_ok=True)
    bare = [
        "logger=csv",
        "extras.print_config=false",
        "callbacks=none",
        "+callbacks.timer._target_=pggan_vs_dcgan.IterationTimer",
        "trainer.limit_val_batches=0",
        "trainer.max_epochs=-1",
        "test=false",
    ]
    per_phase = PHASE_STEPS * 64
    cases = {
        "dcgan": ["experiment=dcgan_mnist", f"trainer.max_steps={args.dcgan_timing_steps}"],
        "pggan": [
            "experiment=pggan_mnist",
            f"model.fade_images={per_phase}",
            f"model.stabilise_images={per_phase}",
            f"trainer.max_steps={PHASE_STEPS * 8}",
        ],
    }
    samples: dict[str, dict[str, list[float]]] = {"wall": {}, "cpu": {}}
    for _ in range(args.repeats):
        for name, overrides in cases.items():
            genlab("genlab.train", *overrides, *bare, cwd=work, threads=args.threads)
            times = json.loads((latest_run(work) / "iteration_times.json").read_text())
            for clock, groups in times.items():
                for key, values in groups.items():
                    label = "dcgan" if name == "dcgan" else f"pggan {key}"
                    # the first iterations of a run or stage warm up
                    samples[clock].setdefault(label, []).extend(values[3:])
    return {
        clock: {k: statistics.median(v) for k, v in groups.items()}
        for clock, groups in samples.items()
    } | {"n": {k: len(v) for k, v in samples["cpu"].items()}}


def equal_time_steps(medians: dict[str, float], dcgan_steps: int, phase_steps: int) -> int:
    """pggan_mnist iterations (phases of `phase_steps`: 4x4, then fade and stable per level,
    the last level stable) whose predicted time equals dcgan_steps x dcgan's median."""
    budget = dcgan_steps * medians["dcgan"]
    phases = ["r4", "r8-fade", "r8", "r16-fade", "r16", "r32-fade"]
    spent, steps = 0.0, 0
    for phase in phases:
        cost = medians[f"pggan {phase}"]
        if spent + phase_steps * cost > budget:
            return steps + int((budget - spent) / cost)
        spent, steps = spent + phase_steps * cost, steps + phase_steps
    return steps + int((budget - spent) / medians["pggan r32"])


def compare(args: argparse.Namespace) -> dict:
    """Train and score each recipe for each seed."""
    runs = []
    for seed in args.seeds:
        for name, overrides in (
            ("dcgan_mnist", ["experiment=dcgan_mnist"]),
            ("pggan_mnist", ["experiment=pggan_mnist", f"trainer.max_steps={args.pggan_steps}"]),
        ):
            work = args.work / f"{name}_s{seed}"
            work.mkdir(parents=True, exist_ok=True)
            start = time.time()
            cpu = genlab(
                "genlab.train", *overrides, *QUIET, f"seed={seed}", cwd=work, threads=args.threads
            )
            wall = time.time() - start
            run = latest_run(work)
            summary = json.loads((run / "summary.json").read_text())
            genlab(
                "genlab.eval",
                f"ckpt_path={summary['last_ckpt']}",
                "tasks=[generation]",
                f"tasks.generation.classifier_ckpt={args.classifier_ckpt}",
                "tasks.generation.n_samples=500",
                cwd=work,
                threads=args.threads,
            )
            result = json.loads((latest_eval(run) / "metrics.json").read_text())
            values = result["generation"]["samples"]["values"]
            grids = sorted((run / "images").glob("samples_s*.png"))
            runs.append(
                {
                    "recipe": name,
                    "seed": seed,
                    "global_step": summary["global_step"],
                    "wall_s": round(wall, 1),
                    "cpu_s": round(cpu, 1),
                    "fit_s": round(summary.get("ended", start) - summary["started"], 1),
                    "metrics": values,
                    "run_dir": str(run),
                    "last_grid": str(grids[-1]) if grids else None,
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    return {"runs": runs}


def cumulative(times: dict[str, dict[str, list[float]]], clock: str) -> list[float]:
    """Seconds of training after each iteration, from IterationTimer's per-stage lists (the
    stages are in the order they ran)."""
    total, out = 0.0, []
    for values in times[clock].values():
        for v in values:
            total += v
            out.append(total)
    return out


def curves(args: argparse.Namespace) -> dict:
    """FID over training time for both recipes at every budget (module doc)."""
    metrics = [
        "callbacks=[model_checkpoint]",  # last.ckpt; no grids inside the timed iterations
        "+callbacks.curve._target_=pggan_vs_dcgan.CurvePoints",
        f"+callbacks.curve.classifier_ckpt={args.classifier_ckpt}",
        "+callbacks.curve.extractor=domain",
        "+callbacks.curve.metrics=[fid]",
        "+callbacks.curve.every_n_epochs=null",
        "+callbacks.curve.time_budget_s=null",
        "test=false",
    ]
    top = max(args.budgets)
    plans = []
    for seed in args.seeds:
        dcgan_steps = args.dcgan_steps * top
        plans.append(
            ("dcgan_mnist", top, seed, args.every, [
                "experiment=dcgan_mnist", f"trainer.max_epochs={dcgan_steps // 62}",
            ])
        )  # fmt: skip
        for b in args.budgets:
            phase = args.phase_steps * b
            plans.append(
                ("pggan_mnist", b, seed, phase, [
                    "experiment=pggan_mnist", f"model.fade_images={phase * 64}",
                    f"model.stabilise_images={phase * 64}",
                    f"trainer.max_steps={args.pggan_steps_per_budget * b}",
                ])
            )  # fmt: skip
    runs = []
    for name, budget, seed, every, overrides in plans:
        work = args.work / f"curves_{name}_x{budget}_s{seed}"
        work.mkdir(parents=True, exist_ok=True)
        cpu = genlab(
            "genlab.train",
            *overrides,
            *[o for o in QUIET if "rich_progress_bar" not in o],  # callbacks= drops it
            *metrics,
            f"+callbacks.curve.every_n_steps={every}",
            f"seed={seed}",
            cwd=work,
            threads=args.threads,
        )
        run = latest_run(work)
        times = json.loads((run / "iteration_times.json").read_text())
        cpu_at, wall_at = cumulative(times, "cpu"), cumulative(times, "wall")
        points = []
        for line in (run / "metric-generation.jsonl").read_text().splitlines():
            record = json.loads(line)
            step = int(record["step"])
            points.append(
                {
                    "step": step,
                    "train_cpu_s": round(cpu_at[step - 1], 2),
                    "train_wall_s": round(wall_at[step - 1], 2),
                    "fid_domain": record["values"]["fid_domain"],
                }
            )
        runs.append(
            {
                "recipe": name,
                "budget": budget,
                "seed": seed,
                "iterations": len(cpu_at),
                "process_cpu_s": round(cpu, 1),
                "points": points,
                "run_dir": str(run),
            }
        )
        if name == "dcgan_mnist":  # the training CPU time of each budget of the DCGAN recipe
            runs[-1]["budget_cpu_s"] = {
                str(b): round(cpu_at[min(args.dcgan_steps * b, len(cpu_at)) - 1], 1)
                for b in args.budgets
            }
        print(json.dumps(runs[-1]), flush=True)
    return {"curves": runs, "dcgan_budget_steps": args.dcgan_steps}


def plot_curves(result: dict, path: Path) -> None:
    """FID (domain) against training CPU seconds, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = {"dcgan_mnist": "tab:blue", "pggan_mnist": "tab:orange"}
    styles = {1: ":", 2: "-.", 4: "-"}
    for run in result["curves"]:
        xs = [p["train_cpu_s"] for p in run["points"]]
        ys = [p["fid_domain"] for p in run["points"]]
        label = f"{run['recipe']} x{run['budget']} seed {run['seed']}"
        ax.plot(xs, ys, styles.get(run["budget"], "-"), color=colours[run["recipe"]],
                marker=".", label=label, alpha=0.85)  # fmt: skip
    budgets = {}  # the DCGAN recipe's budgets in training CPU s (mean over its seeds)
    for run in result["curves"]:
        for b, cpu_s in run.get("budget_cpu_s", {}).items():
            budgets.setdefault(b, []).append(cpu_s)
    for b, cpu_s in budgets.items():
        x = statistics.mean(cpu_s)
        ax.axvline(x, color="grey", lw=0.8)
        ax.annotate(f"x{b}", (x, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=7, color="grey")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("training CPU seconds (iterations only)")
    ax.set_ylabel("FID in the domain classifier's features")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def latest_eval(run: Path) -> Path:
    return max((run / "eval").iterdir(), key=lambda p: p.stat().st_mtime)


def markdown(result: dict) -> str:
    lines = [f"# Progressive GAN vs DCGAN ({result['date']}, {result['machine']})", ""]
    if "timing" in result:
        t = result["timing"]
        lines += [
            "| recipe / phase | median CPU s per iteration | median wall s | iterations timed |",
            "|---|---|---|---|",
        ]
        for k, v in t["cpu"].items():
            lines.append(f"| {k} | {v:.3f} | {t['wall'][k]:.3f} | {t['n'][k]} |")
        for clock, steps in result.get("equal_time_pggan_steps", {}).items():
            lines += ["", f"pggan_mnist iterations for equal {clock} time: {steps}"]
    if "curves" in result:
        lines += [
            "",
            "| recipe | budget | seed | iterations | training CPU s | FID (domain) at the end "
            "| best FID | FID at CPU s |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in result["curves"]:
            pts = r["points"]
            end = pts[-1] if pts else {"fid_domain": float("nan"), "train_cpu_s": float("nan")}
            best = min((p["fid_domain"] for p in pts), default=float("nan"))
            trail = ", ".join(f"{p['fid_domain']:.0f}@{p['train_cpu_s']:.0f}" for p in pts)
            lines.append(
                f"| {r['recipe']} | x{r['budget']} | {r['seed']} | {r['iterations']} | "
                f"{end['train_cpu_s']:.0f} | {end['fid_domain']:.1f} | {best:.1f} | {trail} |"
            )
    if "runs" in result:
        keys = ["fid_domain", "kid_domain", "precision_domain", "recall_domain", "coverage_domain"]
        head = "| recipe | seed | iterations | wall s | CPU s | " + " | ".join(keys) + " |"
        lines += ["", head, "|---" * (5 + len(keys)) + "|"]
        for r in result["runs"]:
            vals = " | ".join(f"{r['metrics'].get(k, float('nan')):.3f}" for k in keys)
            lines.append(
                f"| {r['recipe']} | {r['seed']} | {r['global_step']} | {r['wall_s']} | "
                f"{r['cpu_s']} | {vals} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["timing", "compare", "curves"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dcgan-timing-steps", type=int, default=60)
    parser.add_argument("--dcgan-steps", type=int, default=32 * 62, help="dcgan_mnist's budget")
    parser.add_argument(
        "--phase-steps", type=int, default=100, help="pggan_mnist's iterations per phase"
    )
    parser.add_argument("--classifier-ckpt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pggan-steps", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--every", type=int, default=248, help="DCGAN's FID interval (curves)")
    parser.add_argument(
        "--pggan-steps-per-budget", type=int, default=887, help="pggan_mnist's max_steps"
    )
    parser.add_argument("--plot", type=Path, help="curves: where to draw FID over time")
    parser.add_argument("--work", type=Path, default=Path("pggan_vs_dcgan_runs"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="pggan_vs_dcgan")
    args = parser.parse_args()
    args.work = args.work.resolve()
    result: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={args.threads}",
    }
    if args.what == "timing":
        result["timing"] = timing(args)
        result["equal_time_pggan_steps"] = {
            clock: equal_time_steps(result["timing"][clock], args.dcgan_steps, args.phase_steps)
            for clock in ("cpu", "wall")
        }
    elif args.what == "curves":
        if not args.classifier_ckpt:
            parser.error("curves needs --classifier-ckpt")
        result.update(curves(args))
        if args.plot:
            plot_curves(result, args.plot)
    else:
        if not (args.classifier_ckpt and args.pggan_steps):
            parser.error("compare needs --classifier-ckpt and --pggan-steps")
        result.update(compare(args))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{args.name}-{args.what}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
