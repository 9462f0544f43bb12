"""GAN inversion of faces it never saw, offline: the 100 LFW faces scikit-image ships.

    python benchmarks/lfw_inversion.py                          # 2 seeds (docs/editing.md)
    python benchmarks/lfw_inversion.py --seeds 0 --steps 300    # a quick look
    python benchmarks/lfw_inversion.py --strips docs/images/editing   # also the docs' strips

Per seed, as a user would: `python -m genlab.train experiment=dcgan_lfw_faces` (a DCGAN of the
80 training faces, 25x25 grey resized to 28x28; `--steps` iterations, 2,000 as shipped), then
`python -m genlab.edit attribute=null` (code the faces, change nothing) in subprocesses, each
with `OMP_NUM_THREADS=--threads`:

- `test, prior start`: the 10 held-out test faces, 300 Adam steps on z (pixel MSE) from a prior
  draw (the command's defaults);
- `test, encoder start`: the same from an encoder trained on 500 batches of the GAN's own
  samples (`inversion.encoder_steps=500`);
- `test, encoder + D features`: and 0.1 x the LPIPS-like distance in the discriminator's
  activations beside the pixel loss (`inversion.feature_weight=0.1 feature=discriminator`);
- `train, encoder start`: 10 of the training faces the GAN was fitted to, for contrast.

Baselines on the same 10 test faces, without the GAN: the mean training face, and the nearest
training face (least pixel MSE among the 80 and their mirror images, which training also
shows). PSNR (dB) and SSIM as genlab.edit measures them (torchmetrics, data range 1); `start`
is the PSNR of the inversion's starting point (its pixel loss before the first step). A
finished run found in `--work` is reused, not retrained.

Writes lfw_inversion.json and lfw_inversion.md into --out (default benchmarks/results/); with
`--strips DIR`, seed 0's strips (input | reconstruction per face) of the encoder-start test
and train inversions, copied from the edit folders (not re-drawn).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shutil
import statistics
import sys
from pathlib import Path

import torch
from runs import machine, run_timed

REPO = Path(__file__).resolve().parents[1]
ENCODER = ["inversion.encoder_steps=500"]
VARIANTS = {
    "test, prior start": ("test", []),
    "test, encoder start": ("test", ENCODER),
    "test, encoder + D features": (
        "test",
        [*ENCODER, "inversion.feature_weight=0.1", "feature=discriminator"],
    ),
    "train, encoder start": ("train", ENCODER),
}


def run(cmd: list[str], out_dir: Path, threads: int) -> dict:
    """One genlab subprocess writing into out_dir; its wall and CPU seconds. A finished one
    (its marker file beside out_dir) is not run again."""
    marker = out_dir.parent / f"{out_dir.name}.time.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    print("running:", " ".join(cmd[2:]), flush=True)
    times = run_timed(
        [sys.executable, *cmd, f"hydra.run.dir={out_dir}"],
        out_dir.parent / f"{out_dir.name}.log",
        threads,
        shown=" ".join(cmd),
    )
    marker.write_text(json.dumps(times))
    return times


def baselines(seed_of_split: int = 0) -> dict[str, dict[str, float]]:
    """The mean training face and the nearest training face (or its mirror image) against
    each test face, measured as genlab.edit measures reconstructions."""
    from genlab.analysis.inversion import reconstruction_quality
    from genlab.data.datamodules import materialize
    from genlab.data.lfw_faces import LFWFaces

    dm = LFWFaces(data_dir="unused", image_size=28, channels=1, split_seed=seed_of_split)
    train = materialize(dm.dataset("train"))[0].float() / 255  # (80, 1, 28, 28)
    test = materialize(dm.dataset("test"))[0].float() / 255  # (10, 1, 28, 28)
    mean = train.mean(0, keepdim=True).expand_as(test)
    pool = torch.cat([train, train.flip(-1)])
    mse = (test[:, None] - pool[None]).pow(2).flatten(2).mean(2)  # (10, 160)
    nearest = pool[mse.argmin(1)]
    return {
        "mean training face": reconstruction_quality(test, mean),
        "nearest training face": reconstruction_quality(test, nearest),
    }


def evaluate(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    rows: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    times: dict[str, dict] = {}
    for seed in args.seeds:
        run_dir = work / f"dcgan-s{seed}"
        times[f"train-s{seed}"] = run(
            [
                "-m", "genlab.train", "experiment=dcgan_lfw_faces", f"seed={seed}",
                f"trainer.max_steps={args.steps}", "trainer=cpu", "logger=csv",
                "extras.print_config=false", "~callbacks.rich_progress_bar", "test=false",
                f"threads={args.threads}",
            ],
            run_dir,
            args.threads,
        )  # fmt: skip
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        for i, (name, (split, extra)) in enumerate(VARIANTS.items()):
            out = work / f"edit-s{seed}-{i}"
            times[f"edit-s{seed}-{i}"] = run(
                [
                    "-m", "genlab.edit", f"ckpt_path={ckpt}", "attribute=null", "source=data",
                    f"split={split}", "n_inputs=10", f"seed={seed}", "device=cpu", *extra,
                ],
                out,
                args.threads,
            )  # fmt: skip
            summary = json.loads((out / "edit.json").read_text())
            quality = summary["methods"]["reconstruction"]["reconstruction"]
            coding = summary["coding"]
            row = {
                "seed": seed,
                "psnr_db": quality["psnr_db"],
                "ssim": quality["ssim"],
                "loss_start": coding["loss_start"],
                "loss_end": coding["loss_end"],
                "strip": str(out / "strip_reconstruction.png"),
            }
            if not float(coding.get("feature_weight") or 0):  # the loss is the pixel MSE
                row["start_psnr_db"] = 10 * math.log10(1 / coding["loss_start"])
            rows[name].append(row)
    means = {
        name: {
            key: statistics.mean(r[key] for r in found)
            for key in ("psnr_db", "ssim", "start_psnr_db")
            if all(key in r for r in found)
        }
        for name, found in rows.items()
    }
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "threads": args.threads,
        "steps": args.steps,
        "seeds": list(args.seeds),
        "inversions": rows,
        "means": means,
        "baselines": baselines(),
        "times": times,
    }


def markdown(result: dict) -> str:
    lines = [
        f"# GAN inversion of held-out LFW faces ({result['date']})",
        "",
        f"Machine: {result['machine']}, {result['threads']} thread(s). DCGAN of "
        f"`experiment=dcgan_lfw_faces` at {result['steps']} iterations, seeds "
        f"{', '.join(map(str, result['seeds']))}; 10 faces each, 28x28 grey. Means over the "
        "seeds (each seed in brackets).",
        "",
        "| faces, inversion | PSNR dB | SSIM | start PSNR dB |",
        "|---|---|---|---|",
    ]
    for name, found in result["inversions"].items():
        m = result["means"][name]

        def cell(key: str, fmt: str, m=m, found=found) -> str:
            if key not in m:
                return "-"
            per = "/".join(format(r[key], fmt) for r in found)
            return f"{format(m[key], fmt)} ({per})"

        lines.append(
            f"| {name} | {cell('psnr_db', '.1f')} | {cell('ssim', '.3f')} | "
            f"{cell('start_psnr_db', '.1f')} |"
        )
    for name, q in result["baselines"].items():
        lines.append(f"| test, {name} (no GAN) | {q['psnr_db']:.1f} | {q['ssim']:.3f} | - |")
    train_cpu = [v["cpu_s"] for k, v in result["times"].items() if k.startswith("train")]
    edit_cpu = [v["cpu_s"] for k, v in result["times"].items() if k.startswith("edit")]
    lines += [
        "",
        f"CPU time: training {min(train_cpu):.0f}-{max(train_cpu):.0f} s per seed, "
        f"each edit command {min(edit_cpu):.0f}-{max(edit_cpu):.0f} s (process start, "
        "checkpoint, encoder and inversion).",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=2000, help="GAN iterations (recipe: 2,000)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="/tmp/genlab_lfw_inversion")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--strips", default=None, help="copy seed 0's strips into this folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    result = evaluate(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lfw_inversion.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "lfw_inversion.md").write_text(markdown(result))
    print(markdown(result))
    if args.strips:
        folder = Path(args.strips)
        folder.mkdir(parents=True, exist_ok=True)
        for name, target in (
            ("test, encoder start", "lfw_inversion_test.png"),
            ("train, encoder start", "lfw_inversion_train.png"),
        ):
            shutil.copyfile(result["inversions"][name][0]["strip"], folder / target)


if __name__ == "__main__":
    main()
