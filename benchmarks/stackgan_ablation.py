"""Does the picture say what its caption says? StackGAN's parts, measured on captioned digits:
Stage-I alone against Stage-I + Stage-II, conditioning augmentation (CA) on and off, the
matching-aware D on and off, over seeds, beside the real images, a class-conditional GAN told
only the digits, and the shuffled-caption baseline.

    python benchmarks/stackgan_ablation.py                        # the documented run (~80 min)
    python benchmarks/stackgan_ablation.py --steps 200 --seeds 0  # a quick look
    python benchmarks/stackgan_ablation.py --grid-dir docs/images/text-to-image   # + pictures

Each (variant, seed) is one `python -m genlab.train experiment=stackgan_digits ... seed=S`
subprocess (what a user types; CSV logger only, `OMP_NUM_THREADS=--threads`), one at a time,
its wall and CPU time recorded; then `python -m genlab.eval ckpt_path=... tasks=[captions]`
judges its last checkpoint (its sampling generator) on `--n-captions` test captions of seen
digit/quadrant combinations and as many of held-out ones (genlab.evaluation.caption_task):

- caption accuracy (`caption_acc`; per aspect `digit_acc`, `position_acc`): a caption reader
  trained on the 10,000 training canvases and their true layouts reads each image back;
- R-precision: a text-image encoder trained on real training pairs ranks each image's
  caption among 100 (chance 0.01);
- domain FID (`fid_domain`): features of a classifier of the canvases' (digit, quadrant)
  pairs trained here (`model=classifier data.labels=layout`), generated against real test
  images.

The judges are trained once (the first evaluation trains the reader and the encoder, a
`genlab.train` run the classifier) and shared by every evaluation. Rows beside the variants:
`real` (the real images of the same captions: the judges' ceiling), `shuffled` (each
variant's images judged against other canvases' captions: what an image that ignores its
caption scores), `chance` (real canvases against those captions) and `cgan` (the same GAN
loop given only the class of the digits a caption names: `model=cgan data.labels=digits`,
DCGAN nets as wide as the recipe's, the same steps; its images judged against the full
captions).

Variants (`--variants` picks some; all by default):
  stage1              the recipe: Stage-I at 32 pixels, CA, matching-aware D
  stage1_no_ca        model.ca=false
  stage1_no_matching  model.matching_aware=false
  stage1_16           Stage-I alone at 16 pixels (model.low_size=16; judged upsampled to 32)
  stage2              Stage-II (16 -> 32) on the frozen stage1_16 of the same seed, --steps more
  stage2_no_ema       the same, sampled from G itself (model.ema_decay=null): see the docs
  cgan                the class-conditional baseline

A (variant, seed) already trained and judged in --work is read back, not redone (delete its
folder to redo it); `--grid-dir` writes the captioned grids of seed 0 (the same test and held-out
captions for every variant). Writes stackgan_ablation.json and .md into --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
from pathlib import Path

import torch
from runs import cpu_model, run_cli, train_once

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "stage1": ("Stage-I at 32, CA, matching-aware D (the recipe)", []),
    "stage1_no_ca": ("Stage-I at 32, no CA", ["model.ca=false"]),
    "stage1_no_matching": ("Stage-I at 32, plain conditional D", ["model.matching_aware=false"]),
    "stage1_16": ("Stage-I alone at 16 (upsampled)", ["model.low_size=16"]),
    "stage2": ("Stage-I at 16 + Stage-II to 32", ["model.stage=2", "model.low_size=16"]),
    "stage2_no_ema": (
        "Stage-I at 16 + Stage-II to 32, sampled from G itself",
        ["model.stage=2", "model.low_size=16", "model.ema_decay=null"],
    ),
    "cgan": (
        "class-conditional GAN, digits only",
        [
            "model=cgan",
            "data=captioned_digits",
            "data.labels=digits",
            "model.num_classes=65",
            "model/generator=dcgan",
            "model/discriminator=dcgan",
            # the StackGAN recipe's sizes: z 32-d, widths 8f..f with f = 16
            "model.latent_dim=32",
            "model.generator.base_channels=16",
            "model.discriminator.base_channels=16",
        ],
    ),
}
# what every run shares: 32-pixel captioned digits without attributes (the recipe's data)
DATA = ["data.image_size=32", "data.n_val=256", "data.n_test=1000", "data.n_heldout=1000"]
QUIET = ["logger=csv", "extras.print_config=false", "~callbacks.rich_progress_bar", "test=false"]
METRICS = ("caption_acc", "digit_acc", "position_acc", "r_precision", "fid_domain")
SPLITS = ("test", "test_heldout")


def train_run(name: str, overrides: list[str], run_dir: Path, threads: int) -> dict:
    """One genlab.train run into run_dir (skipped when run_dir/time.json says it finished)."""
    return train_once(name, [*overrides, *QUIET], run_dir, threads)


def variant_overrides(name: str, seed: int, args: argparse.Namespace, work: Path) -> list[str]:
    """The genlab.train overrides of (variant, seed)."""
    _, extra = VARIANTS[name]
    steps = [f"trainer.max_steps={args.steps}", "trainer.max_epochs=-1"]
    val = ["trainer.val_check_interval=1.0", "trainer.limit_val_batches=2"]
    if name == "cgan":
        # the same canvases in the digits view; DCGAN nets as wide as the StackGAN recipe's,
        # its optimizers (Adam 2e-4, 0.5) and batch
        return [*extra, *DATA, "trainer=cpu", *steps, *val, f"seed={seed}", "data.batch_size=64"]
    # the recipe validates every N steps (check_val_every_n_epoch=null): once, at the end
    val = [f"trainer.val_check_interval={args.steps}", "trainer.limit_val_batches=2"]
    out = ["experiment=stackgan_digits", *DATA, "trainer=cpu", *steps, *val, f"seed={seed}"]
    out += extra + list(args.override)
    if name.startswith("stage2"):
        stage1 = work / f"stage1_16-s{seed}" / "checkpoints" / "last.ckpt"
        out.append(f"model.stage1_ckpt={stage1}")
    return out


def train_classifier(work: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """The domain feature network: a multilabel classifier of the canvases' 40 (digit,
    quadrant) pairs (captioned digits' layout view)."""
    run = work / "layout_classifier"
    overrides = [
        "model=classifier",
        "data=captioned_digits",
        "data.labels=layout",
        "model.multilabel=true",
        "model.net.num_classes=40",
        *DATA,
        "trainer=cpu",
        f"trainer.max_steps={args.classifier_steps}",
        "trainer.max_epochs=-1",
        "trainer.val_check_interval=1.0",
        "seed=0",
    ]
    times = train_run("layout classifier", overrides, run, args.threads)
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    return (best[-1] if best else run / "checkpoints" / "last.ckpt"), times


def evaluate(run: Path, judges: dict[str, str], args: argparse.Namespace) -> dict:
    """`genlab.eval tasks=[captions]` of a finished StackGAN run (cached in run/captions)."""
    out = run / "captions"
    done = out / "captions.json"
    if not done.exists():
        opts = [
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            "tasks=[captions]",
            f"tasks.captions.n_captions={args.n_captions}",
            f"tasks.captions.n_fid={args.n_captions}",
            f"tasks.captions.reader_steps={args.reader_steps}",
            f"tasks.captions.rp_steps={args.rp_steps}",
            "tasks.captions.metrics=[fid]",
            "extras.print_config=false",
            f"hydra.run.dir={out}",
        ]
        for key, path in judges.items():
            opts.append(f"tasks.captions.{key}={path}")
        run_cli("genlab.eval", opts, run / "captions.log", args.threads)
    return json.loads(done.read_text())


def judges_of(first_eval: Path, judges: dict[str, str]) -> dict[str, str]:
    """The reader and encoder the first evaluation trained, for every other one."""
    out = dict(judges)
    for key, name in (("reader_ckpt", "reader.pt"), ("rprecision_ckpt", "text_image_encoder.pt")):
        if key not in out and (first_eval / name).exists():
            out[key] = str(first_eval / name)
    return out


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarise(runs: dict[str, dict[int, dict]]) -> dict[str, dict[str, dict]]:
    """{row: {split/metric: spread over seeds}}: each variant, and the real, shuffled,
    chance and cgan rows (from the evaluations that have them)."""
    rows: dict[str, dict[str, list[float]]] = {}

    def add(row: str, key: str, value: object) -> None:
        if isinstance(value, int | float) and value == value:  # not NaN
            rows.setdefault(row, {}).setdefault(key, []).append(float(value))

    for name, seeds in runs.items():
        if name == "cgan":  # its caption rows come with every evaluation (baseline)
            for result in seeds.values():
                add("baseline", "train_wall_s", result["train"]["wall_s"])
                add("baseline", "train_cpu_s", result["train"]["cpu_s"])
            continue
        for result in seeds.values():
            for split in SPLITS:
                table = result["captions"].get(split, {})
                for metric in METRICS:
                    add(name, f"{split}/{metric}", table.get("model", {}).get(metric))
                    add(
                        f"{name} shuffled",
                        f"{split}/{metric}",
                        table.get("shuffled", {}).get(metric),
                    )
                    if name == "stage2":
                        add(
                            "stage2's Stage-I",
                            f"{split}/{metric}",
                            table.get("stage1", {}).get(metric),
                        )
                    if name == "stage1":  # the same items for every variant: one copy
                        for row in ("real", "chance", "baseline"):
                            add(row, f"{split}/{metric}", table.get(row, {}).get(metric))
            add(name, "train_wall_s", result["train"]["wall_s"])
            add(name, "train_cpu_s", result["train"]["cpu_s"])
    return {row: {k: spread(v) for k, v in keys.items()} for row, keys in rows.items()}


def cell(s: dict | None, digits: int = 2) -> str:
    if not s:
        return "–"
    if s["n"] == 1 or round(s["min"], digits) == round(s["max"], digits):
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def markdown(result: dict) -> str:
    a = result["args"]
    head = [
        "# StackGAN ablation on captioned digits",
        "",
        f"{result['date']}, {result['machine']} ({result['note'] or 'no note'}); "
        f"torch {result['torch']}. "
        f"{a['steps']} iterations of batch 64 per run (Stage-II: {a['steps']} more on its "
        f"Stage-I), seeds {', '.join(map(str, a['seeds']))}; {a['n_captions']} test captions "
        "of seen and as many of held-out combinations (evenly spaced (canvas, caption) items). "
        "Cells: mean over seeds (min-max).",
        "",
    ]
    cols = [
        ("test/caption_acc", "caption acc (seen)", 2),
        ("test_heldout/caption_acc", "caption acc (held-out)", 2),
        ("test/digit_acc", "digit acc (seen)", 2),
        ("test/position_acc", "position acc (seen)", 2),
        ("test_heldout/position_acc", "position acc (held-out)", 2),
        ("test/r_precision", "R-precision (seen)", 2),
        ("test/fid_domain", "domain FID (seen)", 1),
        ("train_cpu_s", "train CPU s", 0),
    ]
    lines = ["| images | " + " | ".join(c[1] for c in cols) + " |"]
    lines.append("|---|" + "---:|" * len(cols))
    order = [
        "real",
        *[n for n in VARIANTS if n != "cgan"],
        "stage2's Stage-I",
        "baseline",
        *[f"{n} shuffled" for n in VARIANTS if n != "cgan"],
        "chance",
    ]
    names = {"baseline": "cgan (digits only)", "real": "real images (ceiling)"}
    for row in order:
        values = result["summary"].get(row)
        if not values:
            continue
        cells = [cell(values.get(k), d) for k, _, d in cols]
        lines.append(f"| {names.get(row, row)} | " + " | ".join(cells) + " |")
    return "\n".join(head + lines) + "\n"


def write_grids(work: Path, grid_dir: Path, names: list[str], n: int) -> list[str]:
    """Captioned grids of seed 0 (small PNGs, grid_dir/<variant>_<split>.png): the same n test
    and n held-out captions for every variant, the real canvases of those captions, the
    cGAN's images of the digits they name, and for stage2 each caption's Stage-I image
    beside its Stage-II image (one draw)."""
    from hydra.utils import instantiate

    from genlab.data.captioned_digits import spec_digit_class
    from genlab.data.subsets import evenly_spaced
    from genlab.utils.checkpoint import data_config, load_model
    from genlab.writers import caption_writer

    grid_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    models = {}
    for name in names:
        ckpt = work / f"{name}-s0" / "checkpoints" / "last.ckpt"
        if ckpt.exists():
            models[name] = load_model(ckpt)
    text_runs = [cfg for name, (_, cfg) in models.items() if name != "cgan"]
    if not text_runs:
        return written
    dm = instantiate(data_config(text_runs[0]))
    dm.setup()

    def save(images: torch.Tensor, stem: Path, captions: list[str], per_row: int) -> None:
        files = caption_writer.save(
            images, stem, modality=dm.modality, n_per_row=per_row, captions=captions
        )
        for f in files:  # the PNG is what the docs show; the tables stay out of docs/
            if f.suffix != ".png":
                f.unlink()
        written.append(str(stem.with_suffix(".png")))

    for split in SPLITS:
        data = dm.dataset(split)
        idx = [c * data.per_image for c in evenly_spaced(len(data) // data.per_image, n)]
        tokens = torch.stack([data.caption_tokens(i) for i in idx])
        texts = [data.caption(i) for i in idx]
        save(torch.stack([data[i][0] for i in idx]), grid_dir / f"real_{split}", texts, 4)
        for name, (model, _) in models.items():
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                if name == "cgan":  # told only the digits each caption names
                    labels = torch.tensor([spec_digit_class(data.spec(i)) for i in idx])
                    save(
                        model.sample(n, generator=gen, y=labels),
                        grid_dir / f"cgan_{split}",
                        texts,
                        4,
                    )
                    continue
                stages = model.generate_stages(tokens, generator=gen)
            if name.startswith("stage2"):
                images = torch.stack([stages["stage1"], stages["stage2"]], 1).flatten(0, 1)
                captions = [f"{w}: {t}" for t in texts for w in ("Stage-I", "Stage-II")]
                save(images, grid_dir / f"{name}_{split}", captions, 8)
            else:
                save(stages["stage1"], grid_dir / f"{name}_{split}", texts, 4)
    return written


def machine() -> str:
    """The CPU and its core count, as this benchmark's results name them."""
    return f"{cpu_model()}, {os.cpu_count()} cores"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=1500, help="G iterations per run (default 1500)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--override", nargs="*", default=[], help="more genlab.train overrides")
    p.add_argument("--n-captions", type=int, default=500, help="test captions per split")
    p.add_argument("--reader-steps", type=int, default=3000)
    p.add_argument("--rp-steps", type=int, default=400)
    p.add_argument("--classifier-steps", type=int, default=1500)
    p.add_argument("--no-fid", action="store_true", help="skip the domain FID (no classifier)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("logs/bench/stackgan_ablation"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--name", default="stackgan_ablation")
    p.add_argument("--grid-dir", type=Path, default=None)
    p.add_argument("--grid-n", type=int, default=8, help="captions per grid")
    p.add_argument("--note", default="", help="a line about the machine's load, for the record")
    args = p.parse_args()
    two = [v for v in args.variants if v.startswith("stage2")]
    if two and "stage1_16" not in args.variants:
        args.variants.insert(args.variants.index(two[0]), "stage1_16")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    judges: dict[str, str] = {}
    extra_times: dict[str, dict] = {}
    if not args.no_fid:
        print("layout classifier (domain FID features)", flush=True)
        classifier, extra_times["layout_classifier"] = train_classifier(work, args)
        judges["classifier_ckpt"] = str(classifier)
    runs: dict[str, dict[int, dict]] = {}
    for seed in args.seeds:
        if "cgan" in args.variants:
            run = work / f"cgan-s{seed}"
            print(f"cgan seed {seed}", flush=True)
            times = train_run(
                "cgan", variant_overrides("cgan", seed, args, work), run, args.threads
            )
            runs.setdefault("cgan", {})[seed] = {"train": times}
        for name in args.variants:
            if name == "cgan":
                continue
            run = work / f"{name}-s{seed}"
            print(f"{name} seed {seed}", flush=True)
            times = train_run(name, variant_overrides(name, seed, args, work), run, args.threads)
            seed_judges = dict(judges)
            if "cgan" in args.variants:
                baseline = work / f"cgan-s{seed}" / "checkpoints" / "last.ckpt"
                seed_judges["baseline_ckpt"] = str(baseline)
            captions = evaluate(run, seed_judges, args)
            judges = judges_of(run / "captions", judges)
            runs.setdefault(name, {})[seed] = {"train": times, "captions": captions}
            row = {s: captions.get(s, {}).get("model", {}).get("caption_acc") for s in SPLITS}
            print(f"  caption_acc {row}", flush=True)

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "note": args.note,
        "torch": torch.__version__,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "variants": {k: {"what": v[0], "overrides": v[1]} for k, v in VARIANTS.items()},
        "judges": judges,
        "judge_training": extra_times,
        "runs": {name: {str(s): r for s, r in seeds.items()} for name, seeds in runs.items()},
        "summary": summarise(runs),
    }
    if args.grid_dir is not None:
        result["grids"] = write_grids(work, args.grid_dir, args.variants, args.grid_n)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
