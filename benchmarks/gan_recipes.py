"""Does a GAN recipe draw every digit? Train it for several seeds, judge the samples with an
independent classifier, report per-class counts.

    python benchmarks/gan_recipes.py experiment=gan_mnist --seeds 0 1 2
    python benchmarks/gan_recipes.py experiment=dcgan_mnist --seeds 0 1 2 --threads 2
    python benchmarks/gan_recipes.py --runs logs/train/runs/2026-...   # judge finished runs

Each seed is one `python -m genlab.train <overrides> seed=S` subprocess (what a user types;
CSV logger only), with `OMP_NUM_THREADS=--threads`. Its last checkpoint's sampling generator
(the EMA copy the run's sample grids use) draws `--samples` images from fixed noise; a
classifier trained here, in plain PyTorch, on the same training digits the GAN saw (it
shares no code with genlab's models) labels them. Reported per run: the count of each class,
the smallest class fraction, how many classes reach `--min-fraction`, the judge's mean
confidence (mean max softmax), the Inception-style score exp E KL(p(y|x) || p(y)) in the
judge's outputs (1 = one class; 10 = ten confident, balanced classes), and for conditional
models the fraction of samples the judge reads as the class they were asked for. The same
numbers for real test digits are the yardstick. With `--classifier-ckpt` (a checkpoint of
`python -m genlab.train experiment=classifier_mnist`), each run also gets the domain FID of
`python -m genlab.eval ckpt_path=... tasks=[generation]`.

A GAN's trajectory is chaotic: another CPU's rounding, another thread count or another seed
gives another run. A recipe is robust when every seed passes, not when one does.
Writes gan_recipes-<name>.json and .md into --out (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from genlab.data import MNIST5k
from genlab.utils.checkpoint import load_model


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


def train_run(overrides: list[str], seed: int, run_dir: Path, threads: int) -> float:
    """One `python -m genlab.train` subprocess into run_dir; returns its wall time in s."""
    cmd = [
        sys.executable, "-m", "genlab.train", *overrides, f"seed={seed}", "logger=csv",
        "extras.print_config=false", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "offline"}
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed; see {run_dir.parent / run_dir.name}.log")
    return time.perf_counter() - start


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


def evaluate_run(run_dir: Path, net: nn.Module, n: int) -> dict:
    """Judge n samples of a finished run's last checkpoint (its sampling generator)."""
    model, _ = load_model(str(run_dir / "checkpoints" / "last.ckpt"))
    gen = torch.Generator().manual_seed(0)
    asked = model.default_labels(n)  # classes 0..9 in turn for a conditional GAN, else None
    with torch.no_grad():
        x = model.sample(n, generator=gen, y=asked)
    return judge(net, x, asked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=gan_mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--min-fraction", type=float, default=0.02)
    parser.add_argument("--runs", type=Path, nargs="*", help="judge these run dirs, no training")
    parser.add_argument("--classifier-ckpt", help="also report fid_domain (genlab.eval)")
    parser.add_argument("--name", help="results file name (default: from the overrides)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = args.name or "_".join(o.split("=")[-1] for o in args.overrides) or "runs"
    work = args.out / f"gan_recipes-{name}-runs"

    net, acc = train_judge()
    print(f"judge: test accuracy {acc:.4f} on the 500 test digits", flush=True)
    if acc < 0.95:
        raise SystemExit(f"the judge reaches only {acc:.3f} test accuracy: not a fair judge")
    x_real, _ = split_tensors("test")
    rows = [{"run": "real test digits", **judge(net, x_real)}]

    runs = [(str(p), None, p) for p in args.runs or []]
    for seed in [] if args.runs else args.seeds:
        run_dir = work / f"seed{seed}"
        wall = train_run(args.overrides, seed, run_dir, args.threads)
        runs.append((f"seed {seed}", wall, run_dir))
    for label, wall, run_dir in runs:
        row = {"run": label, "train_s": wall, **evaluate_run(run_dir, net, args.samples)}
        if args.classifier_ckpt:
            ckpt = run_dir / "checkpoints" / "last.ckpt"
            row["fid_domain"] = domain_fid(ckpt, args.classifier_ckpt, args.threads)
        row["classes_drawn"] = sum(c >= args.min_fraction * row["n"] for c in row["counts"])
        rows.append(row)
        print(json.dumps(row), flush=True)

    result = {
        "overrides": args.overrides,
        "threads": args.threads,
        "min_fraction": args.min_fraction,
        "judge_test_accuracy": acc,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"gan_recipes-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"gan_recipes-{name}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    """A Markdown table of a result."""
    lines = [
        f"`{' '.join(result['overrides'])}`, OMP_NUM_THREADS={result['threads']}, "
        f"{result['date']}, {result['machine']}, torch {result['torch']}; judge test accuracy "
        f"{result['judge_test_accuracy']:.3f}",
        "",
        "| run | counts of digits 0-9 | min class | confidence | score | FID (domain) | train s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        fid = f"{r['fid_domain']:.2f}" if "fid_domain" in r else ""
        wall = f"{r['train_s']:.0f}" if r.get("train_s") else ""
        lines.append(
            f"| {r['run']} | {' '.join(map(str, r['counts']))} | {100 * r['min_fraction']:.1f} % "
            f"| {r['confidence']:.3f} | {r['score']:.2f} | {fid} | {wall} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
