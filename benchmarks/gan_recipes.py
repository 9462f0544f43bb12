"""Does a GAN recipe draw every digit, well? Train it for several seeds, judge the samples with
an independent classifier, report per-class counts, and what each of its additions does.

    python benchmarks/gan_recipes.py experiment=gan_mnist --seeds 0 1 2
    python benchmarks/gan_recipes.py experiment=dcgan_mnist --ablation --jobs 2
    python benchmarks/gan_recipes.py experiment=gan_mnist --grid-dir docs/images/gans
    python benchmarks/gan_recipes.py --runs logs/train/runs/2026-...   # judge finished runs

Each (variant, seed) is one `python -m genlab.train <overrides> seed=S` subprocess (what a user
types; CSV logger only), with `OMP_NUM_THREADS=--threads`; `--jobs` of them at a time. Its wall
and CPU time (user + system of that process alone) are recorded. Its last checkpoint's sampling
generator (the EMA copy the run's sample grids use) draws `--samples` images from fixed noise;
a classifier trained here, in plain PyTorch, on the same training digits the GAN saw (it shares
no code with genlab's models) labels them. Reported per run: the count of each class, the
smallest class fraction, the judge's mean confidence (mean max softmax), the Inception-style
score exp E KL(p(y|x) || p(y)) in the judge's outputs (1 = one class; 10 = ten confident,
balanced classes), ADA's final p when the run used ADA, whether it meets the targets
(`--target-score`, `--target-fraction`: every digit), and for conditional models the
fraction of samples the judge reads as the class they were asked for. The same numbers for
real test digits are the yardstick. `--truncation PSI ...` also judges samples drawn with the
truncation trick. With `--classifier-ckpt` (a checkpoint of `python -m genlab.train
experiment=classifier_mnist`), each run also gets the domain FID of `python -m genlab.eval
ckpt_path=... tasks=[generation]`.

`--ablation`: the recipe as shipped, then the recipe without each of its additions (its
`model.augment`, each of its `model.penalties`), without any of them, and with each addition
it does not use (DiffAugment, ADA, R1, LeCam) -- each over the same seeds. `--variant NAME
OVERRIDES` adds a variant of one's own (repeatable). A finished (variant, seed) run found in
the work folder is judged again, not retrained (delete its folder to retrain).

A GAN's trajectory is chaotic: another CPU's rounding, another thread count or another seed
gives another run. A recipe is robust when every seed passes, not when one does.
Writes gan_recipes-<name>.json and .md into --out (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from runs import machine, run_timed
from torch import nn

from genlab.data import MNIST5k
from genlab.utils.checkpoint import load_model

# what an ablation adds to a recipe that does not use it: (name, kind, override)
ADDITIONS = [
    ("diffaugment", "augment", "+model/augment=diffaugment"),
    ("ada", "augment", "+model/augment=ada"),
    ("r1", "penalty", "+model/penalties=r1"),
    ("lecam", "penalty", "+model/penalties=lecam"),
]


AUGMENTS = {
    "diffaugment": "genlab.nets.gan_augment.DiffAugment",
    "ada": "genlab.nets.gan_augment.AdaptiveAugment",
}


def judge_net() -> nn.Module:
    """A small conv classifier for 28x28 digits: (b, 1, 28, 28) in [0, 1] -> 10 logits."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (b, 32, 14, 14)
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (b, 64, 7, 7)
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def split_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (n, 1, 28, 28) in [0, 1] and labels (n,) of a split of mnist_5k."""
    data = MNIST5k(image_size=28, channels=1).dataset(split)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([int(data[i][1]) for i in range(len(data))])
    return x, y


def train_judge(epochs: int = 8, seed: int = 0) -> tuple[nn.Module, float]:
    """The judge, trained on the 4,000 training digits (small random shifts, so that slightly
    off-centre samples are still read as digits); returns it and its test accuracy."""
    x, y = split_tensors("train")
    torch.manual_seed(seed)
    net = judge_net()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(x)).split(64):
            dx, dy = torch.randint(-2, 3, (2,)).tolist()
            xb = torch.roll(x[idx], shifts=(dx, dy), dims=(2, 3))
            loss = nn.functional.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    x_test, y_test = split_tensors("test")
    with torch.no_grad():
        acc = (net(x_test).argmax(1) == y_test).float().mean().item()
    return net, acc


@torch.no_grad()
def judge(net: nn.Module, x: torch.Tensor, asked: torch.Tensor | None = None) -> dict:
    """Class statistics of images x (n, 1, 28, 28) in [0, 1] as the judge reads them."""
    probs = torch.cat([net(b).softmax(1) for b in x.split(500)])  # (n, 10)
    counts = torch.bincount(probs.argmax(1), minlength=10)
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (probs.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1)
    out = {
        "n": len(x),
        "counts": counts.tolist(),
        "min_fraction": counts.min().item() / len(x),
        "confidence": probs.max(1).values.mean().item(),
        "score": kl.mean().exp().item(),
    }
    if asked is not None:
        out["label_agreement"] = (probs.argmax(1) == asked).float().mean().item()
    return out


def train_run(overrides: list[str], seed: int, run_dir: Path, threads: int) -> dict:
    """One `python -m genlab.train` subprocess into run_dir; its wall and CPU seconds (the
    child's own rusage, so parallel jobs do not count each other). Kept in run_dir/../
    <name>.time.json, which marks the run as finished."""
    cmd = [
        sys.executable, "-m", "genlab.train", *overrides, f"seed={seed}", "logger=csv",
        "extras.print_config=false", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    run = run_timed(cmd, run_dir.parent / f"{run_dir.name}.log", threads)
    times = {"train_s": run["wall_s"], "cpu_s": run["cpu_s"]}
    (run_dir.parent / f"{run_dir.name}.time.json").write_text(json.dumps(times))
    return times


def domain_fid(ckpt: Path, classifier_ckpt: str, threads: int) -> float:
    """`python -m genlab.eval ckpt_path=ckpt tasks=[generation]`'s fid_domain (1,000 samples
    against the 500 test digits)."""
    cmd = [
        sys.executable, "-m", "genlab.eval", f"ckpt_path={ckpt}", "tasks=[generation]",
        f"tasks.generation.classifier_ckpt={classifier_ckpt}", "tasks.generation.metrics=[fid]",
        "tasks.generation.reconstructions=false", "extras.print_config=false",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    latest = max(ckpt.parents[1].glob("eval/*/metrics.json"), key=lambda p: p.stat().st_mtime)
    values = json.loads(latest.read_text())["generation"]
    return float(find_key(values, "fid_domain"))


def find_key(tree: object, key: str) -> object:
    """The first value stored under `key` anywhere in a nested dict/list."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


def draw(run_dir: Path, n: int, truncation: float | None = None) -> tuple:
    """n samples of a finished run's last checkpoint (its sampling generator, fixed noise),
    the classes asked for (conditional models, else None), and ADA's p (or None)."""
    model, _ = load_model(str(run_dir / "checkpoints" / "last.ckpt"))
    gen = torch.Generator().manual_seed(0)
    asked = model.default_labels(n)  # classes 0..9 in turn for a conditional GAN, else None
    options = {"truncation": truncation} if truncation is not None else {}
    with torch.no_grad():
        x = model.sample(n, generator=gen, y=asked, **options)
    p = getattr(getattr(model, "augment", None), "p", None)
    return x, asked, (float(p) if p is not None else None)


def evaluate_run(run_dir: Path, net: nn.Module, args: argparse.Namespace) -> dict:
    """Judge args.samples samples of a finished run (and with each --truncation)."""
    x, asked, ada_p = draw(run_dir, args.samples)
    row = judge(net, x, asked)
    if ada_p is not None:
        row["ada_p"] = ada_p
    row["classes_drawn"] = sum(c >= args.min_fraction * row["n"] for c in row["counts"])
    row["passes"] = bool(
        row["score"] >= args.target_score and row["min_fraction"] >= args.target_fraction
    )
    for psi in args.truncation or []:
        xt, _, _ = draw(run_dir, args.samples, psi)
        t = judge(net, xt, asked)
        row.setdefault("truncated", {})[str(psi)] = {
            k: t[k] for k in ("score", "min_fraction", "confidence", "counts")
        }
    if args.grid_dir is not None:
        from torchvision.utils import save_image

        args.grid_dir.mkdir(parents=True, exist_ok=True)
        save_image(x[:64], args.grid_dir / f"{run_dir.parent.name}-{run_dir.name}.png", nrow=8)
    return row


def compose(overrides: list[str]):  # noqa: ANN201 (a DictConfig)
    """The training config `python -m genlab.train overrides` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    import genlab.utils.resolvers  # noqa: F401

    with initialize_config_module(version_base="1.3", config_module="genlab.conf"):
        return hydra_compose("train", overrides=overrides)


def ablation(overrides: list[str]) -> list[tuple[str, list[str]]]:
    """The variants of an ablation of the recipe `overrides` (module doc)."""
    model = compose(overrides).model
    has_augment = model.get("augment") is not None
    penalties = list((model.get("penalties") or {}).keys())
    variants: list[tuple[str, list[str]]] = [("recipe", [])]
    removed: list[str] = []
    if has_augment:
        target = str(model.augment.get("_target_", "")).rsplit(".", 1)[-1]
        variants.append((f"without augment ({target})", ["~model.augment"]))
        removed.append("~model.augment")
    for name in penalties:
        variants.append((f"without {name}", [f"~model.penalties.{name}"]))
        removed.append(f"~model.penalties.{name}")
    if len(removed) > 1:
        variants.append(("without any", removed))
    used = str(model.augment.get("_target_", "")) if has_augment else ""
    for name, kind, override in ADDITIONS:
        if kind == "augment" and not has_augment:
            variants.append((f"with {name}", [override]))
        elif kind == "augment" and AUGMENTS[name] != used:
            # the recipe picks its augmentation in its defaults list: choose another there
            variants.append((f"{name} instead", [override.lstrip("+")]))
        elif kind == "penalty" and name not in penalties:
            variants.append((f"with {name}", [override]))
    return variants


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_") or "recipe"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=gan_mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at a time")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--min-fraction", type=float, default=0.02)
    parser.add_argument("--target-score", type=float, default=6.0)
    parser.add_argument("--target-fraction", type=float, default=0.05)
    parser.add_argument("--ablation", action="store_true", help="with and without each addition")
    parser.add_argument(
        "--variant", nargs="+", action="append", metavar=("NAME", "OVERRIDE"), default=[]
    )
    parser.add_argument("--truncation", type=float, nargs="*", help="also judge with these psi")
    parser.add_argument("--grid-dir", type=Path, help="write an 8x8 grid of each run's samples")
    parser.add_argument("--runs", type=Path, nargs="*", help="judge these run dirs, no training")
    parser.add_argument("--classifier-ckpt", help="also report fid_domain (genlab.eval)")
    parser.add_argument("--name", help="results file name (default: from the overrides)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--work", type=Path, help="run folders (default: next to the results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = args.name or "_".join(o.split("=")[-1] for o in args.overrides) or "runs"
    work = args.work or args.out / f"gan_recipes-{name}-runs"

    net, acc = train_judge()
    print(f"judge: test accuracy {acc:.4f} on the 500 test digits", flush=True)
    if acc < 0.95:
        raise SystemExit(f"the judge reaches only {acc:.3f} test accuracy: not a fair judge")
    x_real, _ = split_tensors("test")
    rows = [{"run": "real test digits", "variant": "", **judge(net, x_real)}]

    variants = ablation(args.overrides) if args.ablation else [("recipe", [])]
    variants += [(v[0], v[1:]) for v in args.variant]
    jobs = [] if args.runs else [(v, s) for v in variants for s in args.seeds]

    def run_one(job: tuple[tuple[str, list[str]], int]) -> dict:
        (variant, extra), seed = job
        run_dir = work / slug(variant) / f"seed{seed}"
        done = run_dir.parent / f"seed{seed}.time.json"
        if done.exists() and (run_dir / "checkpoints" / "last.ckpt").exists():
            times = json.loads(done.read_text()) | {"reused": True}
        else:
            times = train_run([*args.overrides, *extra], seed, run_dir, args.threads)
        print(f"trained {variant} seed {seed}: {times}", flush=True)
        return {"variant": variant, "overrides": extra, "seed": seed, "dir": run_dir, **times}

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        trained = list(pool.map(run_one, jobs))
    trained += [{"variant": "", "seed": None, "dir": p, "run": str(p)} for p in args.runs or []]
    for t in trained:
        row = {k: v for k, v in t.items() if k != "dir"}
        row.setdefault("run", f"{t['variant']}, seed {t['seed']}")
        row.update(evaluate_run(t["dir"], net, args))
        if args.classifier_ckpt:
            ckpt = t["dir"] / "checkpoints" / "last.ckpt"
            row["fid_domain"] = domain_fid(ckpt, args.classifier_ckpt, args.threads)
        rows.append(row)
        print(json.dumps(row), flush=True)

    result = {
        "overrides": args.overrides,
        "threads": args.threads,
        "jobs": args.jobs,
        "min_fraction": args.min_fraction,
        "targets": {"score": args.target_score, "min_fraction": args.target_fraction},
        "judge_test_accuracy": acc,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "torch": torch.__version__,
        "variants": [{"name": n, "overrides": o} for n, o in variants],
        "rows": rows,
        "summary": summary(rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"gan_recipes-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"gan_recipes-{name}.md").write_text(markdown(result))
    print(markdown(result))


def summary(rows: list[dict]) -> list[dict]:
    """Per variant: seeds, score mean/min/max, the smallest class over seeds, seeds passing,
    mean CPU and wall seconds."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows if r.get("seed") is not None):
        runs = [r for r in rows if r.get("seed") is not None and r["variant"] == variant]
        scores = [r["score"] for r in runs]
        entry = {
            "variant": variant,
            "seeds": len(runs),
            "score_mean": statistics.fmean(scores),
            "score_min": min(scores),
            "score_max": max(scores),
            "min_fraction": min(r["min_fraction"] for r in runs),
            "passing": sum(r["passes"] for r in runs),
            "cpu_s": statistics.fmean(r.get("cpu_s", float("nan")) for r in runs),
            "train_s": statistics.fmean(r.get("train_s", float("nan")) for r in runs),
        }
        if any("ada_p" in r for r in runs):
            entry["ada_p"] = [r.get("ada_p") for r in runs]
        out.append(entry)
    return out


def markdown(result: dict) -> str:
    """Markdown tables of a result: per variant, then per run."""
    t = result["targets"]
    lines = [
        f"`{' '.join(result['overrides'])}`, OMP_NUM_THREADS={result['threads']}, "
        f"{result['jobs']} run(s) at a time, {result['date']}, {result['machine']}, torch "
        f"{result['torch']}; judge test accuracy {result['judge_test_accuracy']:.3f}; target: "
        f"score >= {t['score']:g} with every digit >= {100 * t['min_fraction']:g} %",
        "",
    ]
    if result.get("summary"):
        lines += [
            "| variant | seeds passing | score mean (min-max) | smallest class (worst seed) "
            "| CPU s | wall s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s in result["summary"]:
            lines.append(
                f"| {s['variant']} | {s['passing']}/{s['seeds']} | {s['score_mean']:.2f} "
                f"({s['score_min']:.2f}-{s['score_max']:.2f}) | {100 * s['min_fraction']:.1f} % "
                f"| {s['cpu_s']:.0f} | {s['train_s']:.0f} |"
            )
        lines.append("")
    lines += [
        "| run | counts of digits 0-9 | min class | confidence | score | ADA p | FID (domain) "
        "| CPU s | wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        fid = f"{r['fid_domain']:.2f}" if "fid_domain" in r else ""
        p = f"{r['ada_p']:.3f}" if "ada_p" in r else ""
        cpu = f"{r['cpu_s']:.0f}" if r.get("cpu_s") else ""
        wall = f"{r['train_s']:.0f}" if r.get("train_s") else ""
        lines.append(
            f"| {r['run']} | {' '.join(map(str, r['counts']))} | {100 * r['min_fraction']:.1f} % "
            f"| {r['confidence']:.3f} | {r['score']:.2f} | {p} | {fid} | {cpu} | {wall} |"
        )
    truncated = [(r, psi, v) for r in result["rows"] for psi, v in r.get("truncated", {}).items()]
    if truncated:
        lines += ["", "| run | truncation psi | min class | score |", "|---|---:|---:|---:|"]
        for r, psi, v in truncated:
            lines.append(
                f"| {r['run']} | {psi} | {100 * v['min_fraction']:.1f} % | {v['score']:.2f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
