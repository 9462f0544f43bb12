"""ShapeHD's ablation on the procedural shapes: the completion net fine-tuned with and without
the naturalness loss (the frozen voxel GAN prior's D), against the mean training shape and the
visual hull of the one silhouette, per seed.

    python benchmarks/shapehd_ablation.py --prior PRIOR_RUN \
        --completion 1=COMPLETION_RUN_1 2=COMPLETION_RUN_2 --out benchmarks/results/shapehd_shapes

PRIOR_RUN is an `experiment=voxel_gan_shapes` run, COMPLETION_RUN_S an
`experiment=shape_completion_shapes data.size=16` run of seed S (the same data as the prior:
data.size 16). For each seed S, two `python -m genlab.train experiment=shapehd_shapes seed=S`
subprocesses start from its completion checkpoint: one with the naturalness loss
(`model.naturalness_weight=--weight`), one without (`model.naturalness_weight=0`: the same
fine-tuning steps, voxel cross-entropy only), `--epochs` epochs each, one at a time,
`OMP_NUM_THREADS=1`. Every predictor is then scored with genlab.metrics.shape_metrics.
completion_table on the test views, at the threshold best on the validation views: IoU and
Chamfer (surface voxels, units of the grid's side). Writes OUT.json and OUT.md; the fine-tuning
runs go to --runs-dir (an existing run there is scored, not trained again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from genlab.metrics.shape_metrics import completion_table
from genlab.utils.checkpoint import load_model


def fine_tune(seed: int, completion: Path, prior: Path, weight: float, args) -> Path:
    run = args.runs_dir / f"w{weight:g}_s{seed}"
    if (run / "summary.json").is_file():
        return run
    cmd = [
        sys.executable,
        "-m",
        "genlab.train",
        "experiment=shapehd_shapes",
        f"seed={seed}",
        f"model.init_ckpt={completion / 'checkpoints' / 'last.ckpt'}",
        f"model.prior_ckpt={prior / 'checkpoints' / 'last.ckpt'}",
        f"model.naturalness_weight={weight}",
        f"trainer.max_epochs={args.epochs}",
        f"paths.data_dir={args.data_dir}",
        f"hydra.run.dir={run}",
        "threads=1",
        "logger=csv",
        "~callbacks.rich_progress_bar",
        "test=false",
    ]
    start = time.time()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    print(f"fine-tuned w={weight:g} seed {seed} in {time.time() - start:.0f} s", flush=True)
    return run


def score(run: Path) -> dict[str, dict[str, float]]:
    model, _ = load_model(run / "checkpoints" / "last.ckpt")
    dm = instantiate(OmegaConf.load(run / "config.yaml").data)
    dm.setup()
    torch.set_num_threads(1)
    return completion_table(model.eval().reconstruct3d, dm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", type=Path, required=True)
    parser.add_argument("--completion", nargs="+", required=True, help="SEED=RUN_DIR ...")
    parser.add_argument("--weight", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shapehd_shapes"))
    parser.add_argument("--runs-dir", type=Path, default=Path("logs/shapehd_ablation"))
    args = parser.parse_args()
    runs = {int(s): Path(r) for s, r in (item.split("=", 1) for item in args.completion)}
    rows: list[dict] = []
    for seed, completion in runs.items():
        table = score(completion)
        if not rows:
            for name in ("mean_shape", "visual_hull"):
                rows.append({"predictor": name, "seed": None, **table[name]})
        rows.append({"predictor": "completion", "seed": seed, **table["model"]})
        for weight, name in ((0.0, "fine-tuned, no naturalness"), (args.weight, "ShapeHD")):
            run = fine_tune(seed, completion, args.prior, weight, args)
            row = {"predictor": name, "seed": seed, **score(run)["model"]}
            row["naturalness_weight"] = weight
            rows.append(row)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "prior": str(args.prior),
        "epochs": args.epochs,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = args.out.parent / args.out.name  # OUT.json, OUT.md (OUT may hold dots: w0.001)
    out.with_name(out.name + ".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| predictor | seed | threshold (val) | IoU | Chamfer |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['predictor']} | {r['seed'] if r['seed'] is not None else ''} | "
            f"{r['threshold']:g} | {r['iou']:.3f} | {r['chamfer']:.4f} |"
        )
    out.with_name(out.name + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
