"""Editing measured on the digits: how much of the asked change each method makes, and what else
moves. Trains here, as a user would, then edits the same real test digits with every method.

    python benchmarks/editing_eval.py                       # 2 seeds (docs/editing.md)
    python benchmarks/editing_eval.py --seeds 0 --caae-steps 300 --gan-steps 300 --n-inputs 32
    python benchmarks/editing_eval.py --strips docs/images/editing   # also the docs' strips

Per seed, two `python -m genlab.train` subprocesses (CSV logger, `OMP_NUM_THREADS=--threads`):
the CAAE of `experiment=caae_digits_thickness` (conditioned on the measured thickness and
slant; `--caae-steps`, 2,000 of the recipe's 3,000 by default) and the DCGAN of
`experiment=dcgan_mnist` (`--gan-steps`); once, the digit classifier of
`experiment=classifier_mnist`, the identity judge. A finished run found in
`--work` is reused, not retrained (delete its folder to retrain).

The inputs are `--n-inputs` digits evenly spaced over morpho_digits' test split as drawn
(thickness step 0; every class), at 28x28. The methods, for each attribute (thickness in px,
slant in degrees):

- `caae_condition`: the CAAE's code of the digit, decoded with the attribute set to its
  measured value plus the amount (face aging's recipe, Zhang et al. 2017);
- `interfacegan`: the DCGAN's code found by inversion (Adam on z, pixel + discriminator
  feature loss, from an encoder trained on the GAN's samples), moved along the unit normal of a
  linear SVM between the top and bottom quarter of `--n-samples` prior draws as scored by an
  attribute regressor (a CNN trained on the morpho digits: InterFaceGAN's attribute
  predictor, not the measures that judge), calibrated to the attribute's units;
- `interfacegan_cond`: the same with the other attribute's normal projected out (InterFaceGAN's
  conditional edit: thickness holding slant, slant holding thickness);
- `mean_difference`: the top-quarter minus bottom-quarter mean code of the same draws,
  calibrated alike (the DCGAN paper's attribute vectors), the baseline;
- `pixel`: the edit made on the image itself (morphology for thickness, shear for slant), the
  ground truth the latent edits are compared with.

Measured on the outputs with the Morpho-MNIST measures (genlab.data.morpho_digits.measure),
against the method's own reconstruction (the input itself for `pixel`): `slope`, the achieved
change per unit asked (least squares through 0 over the amounts; 1 is exact); `abs_error`, the
mean |achieved - asked|; `drift_<other>` per unit asked, the mean |change| of the other
attributes (thickness, slant, width, height) divided by |amount|; `identity`, the fraction of
edits the classifier gives the class it gives the input; and the reconstruction's PSNR (dB),
SSIM and LPIPS-like distance in the classifier's features (`reconstruction_*`). Means over the
seeds, with each seed's value in the JSON.

Writes editing_eval.json and editing_eval.md into --out (default benchmarks/results/); with
`--strips DIR`, seed 0's strips (input | reconstruction | edits at the amounts, 8 digits) per
method and attribute as small PNGs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from runs import machine, run_timed

REPO = Path(__file__).resolve().parents[1]
AMOUNTS = {"thickness": [-1.0, 1.0, 2.0], "slant": [-15.0, 15.0, 30.0]}
MEASURED = ("thickness", "slant", "width", "height")
METHODS = ("caae_condition", "interfacegan", "interfacegan_cond", "mean_difference", "pixel")


def train_run(overrides: list[str], run_dir: Path, threads: int) -> dict:
    """One `python -m genlab.train` subprocess into run_dir; its wall and CPU seconds (the
    child's own rusage). Kept in run_dir/../<name>.time.json, which marks the run as finished;
    a finished run is not trained again."""
    marker = run_dir.parent / f"{run_dir.name}.time.json"
    if marker.is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file():
        return json.loads(marker.read_text())
    cmd = [
        sys.executable, "-m", "genlab.train", *overrides, "trainer=cpu", "logger=csv",
        "extras.print_config=false", "~callbacks.rich_progress_bar", "test=false",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    print("training:", " ".join(cmd[3:]), flush=True)
    run = run_timed(cmd, run_dir.parent / f"{run_dir.name}.log", threads)
    times = {"train_s": run["wall_s"], "cpu_s": run["cpu_s"]}
    marker.write_text(json.dumps({**times, "overrides": overrides}))
    return times


def train_all(args: argparse.Namespace) -> dict[str, dict]:
    """The classifier once, then per seed the CAAE and the DCGAN; their run folders."""
    work = Path(args.work)
    runs = {
        "classifier": (["experiment=classifier_mnist", "seed=0"], work / "classifier"),
    }
    for seed in args.seeds:
        runs[f"caae-s{seed}"] = (
            [
                "experiment=caae_digits_thickness",
                f"seed={seed}",
                f"trainer.max_steps={args.caae_steps}",
            ],
            work / f"caae-s{seed}",
        )
        runs[f"dcgan-s{seed}"] = (
            [
                "experiment=dcgan_mnist", f"seed={seed}", f"trainer.max_steps={args.gan_steps}",
                "trainer.max_epochs=-1",
            ],
            work / f"dcgan-s{seed}",
        )  # fmt: skip
    out = {}
    for name, (overrides, run_dir) in runs.items():
        out[name] = {"dir": run_dir, **train_run(overrides, run_dir, args.threads)}
    return out


def test_inputs(n: int) -> torch.Tensor:
    """n digits evenly spaced over morpho_digits' test split as drawn (thickness step 0; the
    split is in class order, so every class is there): (n, 1, 28, 28)."""
    from genlab.data.datamodules import materialize
    from genlab.data.morpho_digits import MorphoDigits
    from genlab.data.subsets import evenly_spaced

    data = MorphoDigits(image_size=28, channels=1, split_seed=0, device_resident=False)
    data.setup()
    images, _, _ = materialize(data.dataset("test"))
    digits = images[data.steps("test") == 0]
    return digits[list(evenly_spaced(len(digits), n))].float() / 255.0


def ckpt_of(run_dir: Path, best: bool = False) -> Path:
    if best:
        found = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
        if found:
            return found[-1]
    return run_dir / "checkpoints" / "last.ckpt"


@torch.no_grad()
def measure_edit(
    inputs: torch.Tensor,
    recon: torch.Tensor,
    edited: torch.Tensor,
    amounts: list[float],
    attribute: str,
    judge,  # noqa: ANN001 (a MorphoLabeler)
    identity,  # noqa: ANN001 (DomainFeatures)
    features,  # noqa: ANN001 (ActivationFeatures)
) -> dict:
    """The numbers of the module doc for one method, attribute and seed."""
    from genlab.analysis.editing import identity_report
    from genlab.analysis.inversion import reconstruction_quality

    n, a = edited.shape[:2]
    s_rec = judge(recon)  # (n, 4)
    s_ed = judge(edited.flatten(0, 1)).view(n, a, -1)
    change = s_ed - s_rec[:, None]  # (n, a, 4)
    asked = torch.tensor(amounts)
    k = MEASURED.index(attribute)
    mean_change = change[:, :, k].mean(0)  # (a,)
    row = {
        "achieved": [round(float(v), 4) for v in mean_change],
        "slope": float((mean_change * asked).sum() / asked.pow(2).sum()),
        "abs_error": float((change[:, :, k] - asked).abs().mean()),
    }
    for j, name in enumerate(MEASURED):
        if j != k:
            row[f"drift_{name}"] = float((change[:, :, j].abs() / asked.abs()).mean())
    ident = identity_report(inputs, recon, edited, identity, features)
    row["identity"] = statistics.fmean(ident["edit_agreement"])
    row["identity_reconstruction"] = ident["reconstruction_agreement"]
    row["edit_feature_distance"] = statistics.fmean(ident["edit_feature_distance"])
    quality = reconstruction_quality(inputs, recon, features)
    row.update({f"reconstruction_{k}": v for k, v in quality.items()})
    return row


def evaluate_seed(
    seed: int, runs: dict, args: argparse.Namespace, inputs: torch.Tensor
) -> tuple[list[dict], dict]:
    """Every method on both attributes with seed's CAAE and DCGAN: one row each."""
    from hydra.utils import instantiate

    from genlab.analysis.editing import (
        ConditionEdit,
        DigitRegressorLabeler,
        MorphoLabeler,
        code_inputs,
        edit_along,
        fit_direction,
        labelled_draws,
        write_strip,
    )
    from genlab.analysis.inversion import classifier_features, discriminator_features
    from genlab.data.morpho_digits import pixel_edit
    from genlab.metrics.features import DomainFeatures
    from genlab.utils.checkpoint import data_config, load_model

    judge = MorphoLabeler(attributes=MEASURED)
    clf = str(ckpt_of(runs["classifier"]["dir"], best=True))
    identity, features = DomainFeatures(ckpt_path=clf), classifier_features(clf)
    rows: list[dict] = []
    outputs: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    timing: dict[str, float] = {}

    # the CAAE: its encoder's code, decoded with the attribute changed in the condition
    t0 = time.perf_counter()
    caae, caae_cfg = load_model(ckpt_of(runs[f"caae-s{seed}"]["dir"]))
    data = instantiate(data_config(caae_cfg))
    with torch.no_grad():
        codes = caae.encode_latent(inputs)
        for attribute in AMOUNTS:
            edit = ConditionEdit(data, attribute)
            values = edit.values(inputs, None, None)  # measured on the inputs
            recon = caae.decode(codes, edit.condition(values)).float()
            edited = edit.edit(caae, codes, values, AMOUNTS[attribute])
            outputs["caae_condition", attribute] = (recon, edited)
    timing["caae_s"] = time.perf_counter() - t0

    # the DCGAN: codes by inversion; directions from prior draws scored by the regressor
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    regressor = DigitRegressorLabeler(
        attributes=tuple(AMOUNTS), steps=args.regressor_steps, seed=seed
    )
    timing["regressor_s"] = time.perf_counter() - t0
    gan, _ = load_model(ckpt_of(runs[f"dcgan-s{seed}"]["dir"]))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    draws = labelled_draws(gan, regressor, n=args.n_samples, generator=gen)
    timing["draws_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    inversion = {
        "steps": args.inversion_steps,
        "lr": 0.05,
        "pixel_weight": 1.0,
        "feature_weight": 0.1,
        "encoder_steps": args.encoder_steps,
    }
    coded = code_inputs(
        gan,
        inputs,
        None,
        route="invert",
        inversion=inversion,
        features=discriminator_features(gan),
        generator=gen,
    )
    timing["inversion_s"] = time.perf_counter() - t0
    directions = {}
    for attribute in AMOUNTS:
        others = [a for a in AMOUNTS if a != attribute]
        variants = {
            "interfacegan": ("interfacegan", []),
            "interfacegan_cond": ("interfacegan", others),
            "mean_difference": ("mean_difference", []),
        }
        for name, (method, keep) in variants.items():
            direction = fit_direction(draws, attribute, method=method, keep=keep, seed=seed)
            edited = edit_along(gan, coded.codes, None, direction, AMOUNTS[attribute])
            outputs[name, attribute] = (coded.reconstructions, edited)
            directions[f"{name}/{attribute}"] = {
                k: v for k, v in direction.info.items() if isinstance(v, (int, float, dict))
            }
        edited = torch.stack([pixel_edit(inputs, attribute, a) for a in AMOUNTS[attribute]], 1)
        outputs["pixel", attribute] = (inputs, edited)

    for (method, attribute), (recon, edited) in outputs.items():
        row = {"seed": seed, "method": method, "attribute": attribute}
        row["amounts"] = AMOUNTS[attribute]
        row.update(
            measure_edit(
                inputs, recon, edited, AMOUNTS[attribute], attribute, judge, identity, features
            )
        )
        rows.append(row)
        if args.strips and seed == args.seeds[0]:
            pick = torch.linspace(0, len(inputs) - 1, 8).round().long()  # 8 classes or so
            write_strip(
                Path(args.strips) / f"{method}_{attribute}",
                inputs[pick],
                recon[pick],
                edited[pick],
            )
    extra = {
        "seed": seed,
        "regressor_held_out_r2": regressor.r2,
        "inversion": {k: v for k, v in coded.info.items() if k != "route"},
        "directions": directions,
        "timing_s": {k: round(v, 1) for k, v in timing.items()},
    }
    return rows, extra


SUMMED = (
    "slope", "abs_error", "drift_thickness", "drift_slant", "drift_width", "drift_height",
    "identity", "identity_reconstruction", "edit_feature_distance", "reconstruction_psnr_db",
    "reconstruction_ssim", "reconstruction_feature_distance",
)  # fmt: skip


def summary(rows: list[dict]) -> list[dict]:
    """Per (attribute, method): the mean over seeds of each number, and its per-seed values."""
    out = []
    for attribute in AMOUNTS:
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method and r["attribute"] == attribute]
            if not mine:
                continue
            entry = {"attribute": attribute, "method": method, "seeds": [r["seed"] for r in mine]}
            for key in SUMMED:
                values = [r[key] for r in mine if key in r]
                if values:
                    entry[key] = statistics.fmean(values)
                    entry[f"{key}_per_seed"] = [round(v, 4) for v in values]
            out.append(entry)
    return out


def markdown(result: dict) -> str:
    """The table docs/editing.md shows."""
    units = {"thickness": "px", "slant": "deg"}
    lines = [
        f"# Editing on the digits ({result['date']})",
        "",
        f"Machine: {result['machine']}; {result['command']}",
        "",
    ]
    for attribute in AMOUNTS:
        others = [m for m in MEASURED if m != attribute]
        unit = units[attribute]
        lines += [
            f"## {attribute} (amounts {AMOUNTS[attribute]} {unit})",
            "",
            "| method | slope (1 = exact) | abs error | "
            + " | ".join(f"{o} drift per {unit}" for o in others)
            + " | identity kept | recon PSNR dB | recon SSIM | recon feature dist |",
            "|---|---|---|" + "---|" * len(others) + "---|---|---|---|",
        ]
        for entry in result["summary"]:
            if entry["attribute"] != attribute:
                continue
            per = "/".join(f"{v:.2f}" for v in entry["slope_per_seed"])
            cells = [entry["method"], f"{entry['slope']:.2f} ({per})", f"{entry['abs_error']:.2f}"]
            cells += [f"{entry[f'drift_{o}']:.3f}" for o in others]
            cells.append(f"{100 * entry['identity']:.1f} %")
            if entry["method"] == "pixel":
                cells += ["(input)"] * 3
            else:
                cells += [
                    f"{entry['reconstruction_psnr_db']:.1f}",
                    f"{entry['reconstruction_ssim']:.3f}",
                    f"{entry['reconstruction_feature_distance']:.3f}",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--caae-steps", type=int, default=2000, help="CAAE iterations (recipe: 3000)")
    p.add_argument("--gan-steps", type=int, default=1984, help="DCGAN iterations (the recipe's)")
    p.add_argument("--n-inputs", type=int, default=200, help="test digits edited")
    p.add_argument("--n-samples", type=int, default=2000, help="labelled prior draws")
    p.add_argument("--inversion-steps", type=int, default=300)
    p.add_argument("--encoder-steps", type=int, default=500, help="inversion encoder's steps")
    p.add_argument("--regressor-steps", type=int, default=1500, help="attribute regressor's")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=str(REPO / "logs" / "benchmarks" / "editing_eval"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--strips", default=None, help="write seed 0's strips (small PNGs) here")
    p.add_argument("--train-only", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = train_all(args)
    if args.train_only:
        return
    start = time.perf_counter()
    inputs = test_inputs(args.n_inputs)
    rows, extras = [], []
    for seed in args.seeds:
        seed_rows, extra = evaluate_seed(seed, runs, args, inputs)
        rows += seed_rows
        extras.append(extra)
        print(f"seed {seed}: {extra['timing_s']}", flush=True)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": "python benchmarks/editing_eval.py " + " ".join(argv or sys.argv[1:]),
        "args": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
        "amounts": AMOUNTS,
        "n_inputs": len(inputs),
        "training": {
            name: {k: v for k, v in run.items() if k != "dir"} for name, run in runs.items()
        },
        "per_seed": extras,
        "rows": rows,
        "summary": summary(rows),
        "evaluation_s": round(time.perf_counter() - start, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "editing_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "editing_eval.md").write_text(markdown(result) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
