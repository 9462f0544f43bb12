"""Likelihood against adversarial audio: WaveNet and WaveGAN on the synthesised spoken digits
at equal budget, over seeds, judged as docs/audio.md judges WaveNet.

    python benchmarks/audio_compare.py                         # the documented run
    python benchmarks/audio_compare.py --seeds 0 --wavenet-steps 50 --wavegan-steps 100

Each (family, seed) is one `python -m genlab.train experiment=wavenet_digits|wavegan_digits
seed=S threads=1 trainer.max_steps=N` subprocess (what a user types; CSV logger only,
`OMP_NUM_THREADS=--threads`), one at a time, its wall and CPU time recorded. The budget is
CPU time: the step counts (`--wavenet-steps`, `--wavegan-steps`) are chosen so both families
get about the same CPU seconds (the table says what each run used). Then, in this process:

- bits per sample: the run's `test/nll_bits_per_sample` (WaveNet; WaveGAN has no likelihood),
  beside the unigram baseline (genlab.metrics.audio_metrics.unigram_nll_bits, per digit);
- the spectrogram classifier (train_spectrogram_classifier, `--classifier-epochs` on the
  training clips, seed 0), trained once and shared: on `--per-digit` generated clips of each
  digit from the run's last checkpoint (its sampling generator: WaveGAN's EMA copy; WaveNet
  sampled with fast generation), the accuracy of the conditioned digit, the Inception score of
  its logits and the Fréchet distance of its features against the training clips
  (classifier_scores), beside held-out real test clips (the ceiling) and white noise (the
  floor, at the real clips' RMS).

A (family, seed) already trained in --work is read back, not redone (delete its folder to
redo it). `--image-dir` writes the spectrograms of the seed-0 runs' clips for the digits 0-9
(<family>_equal_budget_samples.png). Writes audio_compare.json and .md into --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch
from runs import train_once

QUIET = ["logger=csv", "extras.print_config=false"]
FAMILIES = ("wavenet", "wavegan")


def train_run(family: str, seed: int, args: argparse.Namespace) -> dict:
    """One genlab.train run (skipped when its time.json says it finished): its times and
    summary.json."""
    run_dir = Path(args.work) / f"{family}_seed{seed}"
    steps = args.wavenet_steps if family == "wavenet" else args.wavegan_steps
    overrides = [
        f"experiment={family}_digits",
        f"seed={seed}",
        f"threads={args.threads}",
        f"trainer.max_steps={steps}",
        f"paths.data_dir={args.data_dir}",
        *QUIET,
    ]
    if family == "wavegan":  # its recipe's callbacks=gan has a progress bar; wavenet's none
        overrides.append("~callbacks.rich_progress_bar")
    times = train_once(f"{family} seed {seed}", overrides, run_dir, 1)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {**times, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--wavenet-steps", type=int, default=1100)
    parser.add_argument("--wavegan-steps", type=int, default=450)
    parser.add_argument("--per-digit", type=int, default=10)
    parser.add_argument("--classifier-epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--work", default="/tmp/genlab_audio_compare")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--image-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.data_dir = str(Path(args.data_dir).resolve())

    from genlab.data.spoken_digits import SynthesizedDigits, clips_of
    from genlab.metrics.audio_metrics import (
        classifier_scores,
        train_spectrogram_classifier,
        unigram_nll_bits,
    )
    from genlab.utils.checkpoint import load_model

    runs = {(f, s): train_run(f, s, args) for f in FAMILIES for s in args.seeds}

    # the recipes' data (experiment=wavenet_digits and wavegan_digits share it)
    dm = SynthesizedDigits(data_dir=args.data_dir, length=2048, batch_size=8)
    dm.prepare_data()
    dm.setup()
    x_train, y_train = clips_of(dm.dataset("train"))
    x_test, y_test = clips_of(dm.dataset("test"))
    unigram = unigram_nll_bits(x_train, x_test, train_y=y_train, test_y=y_test)

    start = time.process_time()
    judge = train_spectrogram_classifier(
        x_train, y_train, rate=dm.sample_rate, epochs=args.classifier_epochs, seed=0
    )
    judge_cpu = time.process_time() - start
    rms = float(x_test.pow(2).mean().sqrt())
    noise = torch.randn(x_test.shape, generator=torch.Generator().manual_seed(0)) * rms
    rows = {
        "real test clips (ceiling)": classifier_scores(judge, x_test, y_test, x_train),
        "white noise (floor)": classifier_scores(judge, noise.clamp(-1, 1), y_test, x_train),
    }
    digits = torch.arange(10).repeat_interleave(args.per_digit)
    results = []
    for (family, seed), run in runs.items():
        model, _ = load_model(run["summary"]["last_ckpt"])
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            fake = model.sample(
                len(digits), y=digits, generator=torch.Generator().manual_seed(1000 + seed)
            ).float()
        gen_s = time.perf_counter() - start
        scores = classifier_scores(judge, fake, digits, x_train)
        metrics = run["summary"]["metrics"]
        results.append(
            {
                "family": family,
                "seed": seed,
                "steps": run["summary"]["global_step"],
                "train_cpu_s": run["cpu_s"],
                "train_wall_s": run["wall_s"],
                "generate_s": round(gen_s, 1),
                "test_bits_per_sample": metrics.get("test/nll_bits_per_sample"),
                **scores,
            }
        )
        print(f"  judged {family} seed {seed}: {scores}", flush=True)
        if args.image_dir and seed == args.seeds[0]:
            from torchvision.utils import save_image

            from genlab.writers.waveform_writer import preview

            folder = Path(args.image_dir)
            folder.mkdir(parents=True, exist_ok=True)
            first = fake[:: args.per_digit]  # one clip per digit, 0..9
            save_image(
                preview(first, modality=dm.modality, n_per_row=10),
                folder / f"{family}_equal_budget_samples.png",
            )

    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}",
        "threads": args.threads,
        "args": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
        "unigram_bits_per_sample": unigram,
        "classifier_cpu_s": round(judge_cpu, 1),
        "references": rows,
        "runs": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audio_compare.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "audio_compare.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [
        f"# WaveNet vs WaveGAN on the synthesised digits ({report['date']})",
        "",
        f"{report['machine']}; {report['threads']} thread(s). Unigram (per digit): "
        f"{report['unigram_bits_per_sample']:.2f} bits per sample.",
        "",
        "| clips | seed | steps | train CPU s | test bits/sample | accuracy | IS | FID |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["references"].items():
        lines.append(f"| {name} | | | | | {s['accuracy']:.2f} | {s['is']:.2f} | {s['fid']:.1f} |")
    for r in report["runs"]:
        bits = r["test_bits_per_sample"]
        lines.append(
            f"| {r['family']} | {r['seed']} | {r['steps']} | {r['train_cpu_s']:.0f} | "
            f"{'' if bits is None else f'{bits:.2f}'} | {r['accuracy']:.2f} | {r['is']:.2f} | "
            f"{r['fid']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
