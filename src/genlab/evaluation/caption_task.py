"""The `captions` task: does a text-to-image model's picture say what its caption says?

    python -m genlab.eval ckpt_path=RUN/checkpoints/last.ckpt tasks=[captions] \
        tasks.captions.classifier_ckpt=CLF_RUN/checkpoints/best-....ckpt

For `n_captions` evenly spaced (image, caption) items of each test split (captioned digits:
`test`, seen digit/quadrant combinations, and `test_heldout`, combinations never trained on,
reported apart; CUB / Oxford-102: `test`, unseen classes), the model draws one image per
caption (seeded), and beside it:

- **caption accuracy** (captioned digits only): a `QuadrantReader` (genlab.metrics.
  caption_metrics) reads each image back into a layout and the caption is checked against it
  (`caption_acc`, and per aspect `digit_acc`, `position_acc`, `attribute_acc`). The reader is
  trained INSIDE the task on the training split's canvases and their true layouts (the data
  generator's ground truth; `reader_steps`, `reader_seed`) and saved as `reader.pt` in the
  eval folder, or read from `reader_ckpt` (a `reader.pt` of an earlier evaluation on the same
  data options) — the result says which;
- **R-precision**: a text-image encoder trained inside the task on the training split's real
  pairs (or read from `rprecision_ckpt`, saved as `text_image_encoder.pt`) ranks each image's
  caption among `rp_candidates` (captions also true of the item's canvas are never negatives);
- **FID / KID** of the generated images against the split's real images, in the feature space
  of a genlab classifier (`classifier_ckpt`: on captioned digits, `data.labels=layout`
  `model.multilabel=true`), or Inception's with `extractor=inception inception_weights=...`
  (CUB; add `is` to `metrics` for the Inception Score); skipped with a note otherwise.

And the rows to read them against: `real` (the real images of the same items: the reader's
and the encoder's ceiling), `shuffled` (the model's images judged against other items'
captions: what the judges give an image that ignores its caption), `chance` (real layouts
against those shuffled captions: how often a caption is true by chance), `stage1` (a
two-stage model's Stage-I images, upsampled) and `baseline` (a class-conditional GAN given
only the digits a caption names, `baseline_ckpt`: a `model=cgan data.labels=digits` run).

Writes captions.json, captions.md and captioned grids `captions_<split>.png` (the model's
image over each caption; `.md` and `.html` tables beside).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genlab.data.subsets import evenly_spaced
from genlab.evaluation.context import EvalContext, accepts
from genlab.metrics.caption_metrics import (
    QuadrantReader,
    TextImageEncoder,
    r_precision,
    spec_accuracy,
    train_reader,
    train_text_image_encoder,
)
from genlab.metrics.generation import MetricSpec, real_indices
from genlab.models.protocols import CanGenerate
from genlab.utils.errors import GenlabError
from genlab.writers import caption_writer

log = logging.getLogger(__name__)

READER_KIND = "genlab-caption-reader"
ENCODER_KIND = "genlab-text-image-encoder"
MAX_JUDGE_BYTES = 256 << 20
ACCURACY = ("caption_acc", "digit_acc", "position_acc", "attribute_acc")


def data_options(dm: Any) -> dict[str, Any]:
    """What a judge trained on this data depends on (a saved judge must match it)."""
    keys = (
        "image_size",
        "channels",
        "split_seed",
        "attributes",
        "heldout_per_digit",
        "max_length",
        "folder",
        "class_split",
    )
    out = {"data": type(dm).__name__}
    for k in keys:
        if hasattr(dm, k):
            v = getattr(dm, k)
            out[k] = list(v) if isinstance(v, tuple) else v
    vocab = getattr(getattr(dm, "vocab", None), "words", None)
    if vocab is not None:
        out["vocab_size"] = len(vocab)
    return out


def save_judge(path: Path, kind: str, net: torch.nn.Module, dm: Any, **info: Any) -> Path:
    """A judge's weights with what it is and which data it was trained on (atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    stored = {"kind": kind, "data": data_options(dm), "info": info}
    torch.save({**stored, "state_dict": net.state_dict()}, tmp)
    tmp.replace(path)
    return path


def load_judge(path: str, kind: str, option: str, dm: Any) -> dict[str, Any]:
    """A judge saved by `save_judge`, read as data (weights only, bounded), for this data."""
    from genlab.utils.checkpoint import check_expansion

    file = Path(path).expanduser()
    if not file.is_file():
        raise GenlabError(
            f"{option}={path!r} does not exist: give the {kind} file an earlier `captions` "
            f"evaluation wrote (its eval folder), or leave {option} null to train it here."
        )
    if file.stat().st_size > MAX_JUDGE_BYTES:
        raise GenlabError(
            f"{option}={path!r} is {file.stat().st_size:,} bytes, more than a {kind} file "
            "can be: give the file the captions task wrote."
        )
    check_expansion(file)
    try:
        stored = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unreadable file: one message)
        raise GenlabError(
            f"{option}={path!r} could not be read ({type(exc).__name__}): give the {kind} "
            "file the captions task wrote."
        ) from None
    if not isinstance(stored, dict) or stored.get("kind") != kind:
        raise GenlabError(
            f"{option}={path!r} is not a {kind} file (the captions task writes reader.pt and "
            "text_image_encoder.pt in its eval folder)."
        )
    want = data_options(dm)
    if stored.get("data") != want:
        raise GenlabError(
            f"{option}={path!r} was trained on other data ({stored.get('data')}) than this "
            f"run's ({want}): leave {option} null to train it on this data."
        )
    return stored


def caption_of(data: Any, i: int) -> torch.Tensor:
    """Item i's caption tokens (L,)."""
    return data.caption_tokens(i) if hasattr(data, "caption_tokens") else data[i][1]


def _images(data: Any, idx: list[int]) -> torch.Tensor:
    """Real images of items `idx` as floats in [0, 1] (B, C, H, W)."""
    return torch.stack([data[i][0] for i in idx])


def _canvases(data: Any, limit: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """The split's images, one per canvas (uint8 when held in memory), and their indices."""
    n = len(data) // data.per_image
    rows = evenly_spaced(n, limit) if limit else list(range(n))
    images = getattr(data, "images", None)
    if images is not None:
        return images[rows], rows
    return torch.stack([data[r * data.per_image][0] for r in rows]), rows


# --- the judges ---------------------------------------------------------------------------
def reader_for(
    dm: Any, out_dir: Path, *, ckpt: str | None, steps: int, batch_size: int, seed: int
) -> tuple[QuadrantReader, dict[str, Any]]:
    """The caption reader: read from `ckpt`, or trained here on the training canvases."""
    train = dm.dataset("train")
    if ckpt:
        stored = load_judge(ckpt, READER_KIND, "tasks.captions.reader_ckpt", dm)
        info = stored.get("info") or {}
        reader = QuadrantReader(
            channels=dm.channels, image_size=dm.image_size, width=int(info.get("width", 16))
        )
        reader.load_state_dict(stored["state_dict"])
        return reader.eval(), {"reader": f"read from {ckpt}", **info}
    start = time.monotonic()
    images, rows = _canvases(train)
    layouts = [train.layouts[r] for r in rows]
    reader = train_reader(images, layouts, steps=steps, batch_size=batch_size, seed=seed)
    info = {
        "trained_on": f"{len(images)} training canvases and their true layouts",
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "width": 16,
        "seconds": round(time.monotonic() - start, 1),
    }
    path = save_judge(out_dir / "reader.pt", READER_KIND, reader, dm, **info)
    return reader, {"reader": f"trained in this task, saved as {path}", **info}


def encoder_for(
    dm: Any, out_dir: Path, *, ckpt: str | None, steps: int, max_images: int, seed: int
) -> tuple[TextImageEncoder, dict[str, Any]]:
    """The R-precision encoder: read from `ckpt`, or trained here on real training pairs."""
    vocab_size = len(dm.vocab.words)
    if ckpt:
        stored = load_judge(ckpt, ENCODER_KIND, "tasks.captions.rprecision_ckpt", dm)
        enc = TextImageEncoder(vocab_size=vocab_size, channels=dm.channels)
        enc.load_state_dict(stored["state_dict"])
        return enc.eval(), {"encoder": f"read from {ckpt}", **(stored.get("info") or {})}
    start = time.monotonic()
    train = dm.dataset("train")
    images, rows = _canvases(train, max_images)
    tokens = train.tokens[rows]  # (n, k, l)
    enc = train_text_image_encoder(images, tokens, vocab_size=vocab_size, steps=steps, seed=seed)
    info = {
        "trained_on": f"{len(images)} training images with their {tokens.shape[1]} captions",
        "steps": steps,
        "seed": seed,
        "seconds": round(time.monotonic() - start, 1),
    }
    path = save_judge(out_dir / "text_image_encoder.pt", ENCODER_KIND, enc, dm, **info)
    return enc, {"encoder": f"trained in this task, saved as {path}", **info}


# --- what is judged -----------------------------------------------------------------------
def draw_for_captions(
    model: Any, tokens: torch.Tensor, *, seed: int, batch_size: int, stages: bool = False
) -> dict[str, torch.Tensor]:
    """The model's images of `tokens` (n, L), one each, seeded: {'model': (n, C, H, W)} in
    [0, 1] on the CPU (and 'stage1' for a two-stage model when `stages`)."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {}
    for chunk in tokens.split(batch_size):
        chunk = chunk.to(model.device)
        if stages and hasattr(model, "generate_stages"):
            drawn = model.generate_stages(chunk, generator=gen)
            final = drawn.pop("stage2", None)
            parts = {"model": final if final is not None else drawn.pop("stage1"), **drawn}
        else:
            parts = {"model": model.generate(chunk, generator=gen)}
        for k, v in parts.items():
            out.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def baseline_model(path: str) -> Any:
    """The class-conditional baseline (a `model=cgan data.labels=digits` checkpoint)."""
    from genlab.data.captioned_digits import DIGIT_SET_CLASSES
    from genlab.utils.checkpoint import load_model

    try:
        model, _ = load_model(path, expect="GAN")
    except GenlabError as exc:
        raise GenlabError(f"tasks.captions.baseline_ckpt: {exc}") from None
    if int(model.num_classes) != DIGIT_SET_CLASSES:
        raise GenlabError(
            f"tasks.captions.baseline_ckpt={path!r} is a GAN with num_classes="
            f"{model.num_classes}; the baseline is class-conditional on the digits a caption "
            f"names ({DIGIT_SET_CLASSES} classes): train it with model=cgan "
            f"data=captioned_digits data.labels=digits model.num_classes={DIGIT_SET_CLASSES}."
        )
    return model.eval()


def shuffled(n: int, seed: int) -> torch.Tensor:
    """A permutation of range(n) with no fixed point, seeded (other items' captions)."""
    from genlab.nets.stackgan import mismatch_index

    return mismatch_index(n, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
@accepts("image")
def captions(
    ctx: EvalContext,
    *,
    splits: list[str] | None = None,
    n_captions: int = 1000,
    batch_size: int = 250,
    seed: int = 0,
    reader_ckpt: str | None = None,
    reader_steps: int = 3000,
    reader_batch_size: int = 32,
    reader_seed: int = 0,
    rprecision: bool = True,
    rprecision_ckpt: str | None = None,
    rp_steps: int = 400,
    rp_train_images: int = 5000,
    rp_candidates: int = 100,
    baseline_ckpt: str | None = None,
    n_grid: int = 32,
    n_per_row: int = 8,
    n_fid: int = 1000,
    **spec: Any,
) -> dict[str, Any]:
    """Judge the model's images of the test captions (module doc); returns the numbers and
    writes the files. `spec`: the generation metrics' options (metrics, extractor,
    classifier_ckpt, inception_weights, ...; genlab.metrics.generation.MetricSpec)."""
    model, dm = ctx.model, ctx.datamodule
    condition = getattr(dm, "condition", None)
    if not isinstance(model, CanGenerate) or condition is None or condition.kind != "tokens":
        raise GenlabError(
            "tasks=[captions] judges text-to-image models on captioned data (model=stackgan "
            "on data=captioned_digits, cub_captions or flowers_captions); this run is "
            f"{type(model).__name__} on data conditioned on "
            f"{condition.kind if condition is not None else 'nothing'}: remove the task."
        )
    digits = hasattr(dm.dataset("test"), "layouts")
    if splits is None:
        splits = ["test"]
        if digits and getattr(dm, "sizes", {}).get("test_heldout", 0):
            splits.append("test_heldout")
    out_dir = ctx.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    fid_options = {**spec}
    fid_wanted = fid_options.get("extractor", "domain") != "domain" or fid_options.get(
        "classifier_ckpt"
    )
    spec_obj = MetricSpec.from_options("tasks.captions", fid_options)  # unknown options named
    baseline = baseline_model(baseline_ckpt) if baseline_ckpt else None
    if baseline is not None and not digits:
        raise GenlabError(
            "tasks.captions.baseline_ckpt: the class-conditional baseline reads the digits a "
            "caption names, so it needs data=captioned_digits; leave it null here."
        )
    if baseline is not None:
        baseline = baseline.to(ctx.device)
    model.eval()

    result: dict[str, Any] = {"n_captions_per_split": n_captions, "seed": seed}
    reader = encoder = None
    if digits:
        reader, result["reader"] = reader_for(
            dm,
            out_dir,
            ckpt=reader_ckpt,
            steps=reader_steps,
            batch_size=reader_batch_size,
            seed=reader_seed,
        )
    else:
        result["caption_accuracy_skipped"] = (
            "caption accuracy needs captions with a known meaning (data=captioned_digits); "
            "real captions are judged by R-precision and FID here"
        )
    if rprecision:
        encoder, result["rprecision_encoder"] = encoder_for(
            dm,
            out_dir,
            ckpt=rprecision_ckpt,
            steps=rp_steps,
            max_images=rp_train_images,
            seed=reader_seed,
        )
    if not fid_wanted:
        result["generation_skipped"] = (
            "no feature network: give tasks.captions.classifier_ckpt (on captioned digits a "
            "classifier of the layout view: model=classifier data=captioned_digits "
            "data.labels=layout model.multilabel=true model.net.num_classes=40) or "
            "extractor=inception inception_weights=..."
        )

    md = [f"# Captions ({n_captions} captions per split, seed {seed})", ""]
    for split in splits:
        rows, files = judge_split(
            model,
            dm,
            split,
            n_captions=n_captions,
            batch_size=batch_size,
            seed=seed,
            reader=reader,
            encoder=encoder,
            rp_candidates=rp_candidates,
            baseline=baseline,
            out_dir=out_dir,
            n_grid=n_grid,
            n_per_row=n_per_row,
        )
        if fid_wanted:
            evaluator = spec_obj.evaluator(
                dm, split=split, n_real=n_fid, batch_size=batch_size, device=ctx.device
            )
            for name, source in (("model", model), ("baseline", baseline)):
                if source is None:
                    continue
                sample, n = caption_sampler(source, dm, split, n_fid, name)
                measured = evaluator.evaluate(sample, n, seed=seed, source=name)
                rows[name].update(measured["values"])
                result.setdefault("generation_provenance", {})[f"{split}/{name}"] = measured[
                    "provenance"
                ]
        result[split] = rows
        result.setdefault("files", []).extend(files)
        md += [f"## {split}", "", markdown_table(rows), ""]
        md += [f"![{split}]({files[0]})", ""]
    md += [NOTES]
    (out_dir / "captions.md").write_text("\n".join(md) + "\n")
    result["files"] = ["captions.json", "captions.md", *result.get("files", [])]
    (out_dir / "captions.json").write_text(json.dumps(result, indent=2, default=str))
    log.info("captions: %s", {s: result[s].get("model") for s in splits})
    return result


NOTES = (
    "Rows: `model` the model's image of each caption; `stage1` a two-stage model's Stage-I "
    "image (upsampled); `baseline` the class-conditional GAN told only the digits; `real` the "
    "real image of the item (the judges' ceiling); `shuffled` the model's images judged "
    "against other items' captions; `chance` the real layouts against those captions."
)


def judge_split(
    model: Any,
    dm: Any,
    split: str,
    *,
    n_captions: int,
    batch_size: int,
    seed: int,
    reader: QuadrantReader | None,
    encoder: TextImageEncoder | None,
    rp_candidates: int,
    baseline: Any,
    out_dir: Path,
    n_grid: int,
    n_per_row: int,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Every row of one split: {row: {metric: value}} and the files written."""
    data = dm.dataset(split)
    idx = evenly_spaced(len(data), n_captions)
    tokens = torch.stack([caption_of(data, i) for i in idx])  # (n, l)
    real = _images(data, idx)
    drawn = draw_for_captions(model, tokens, seed=seed, batch_size=batch_size, stages=True)
    perm = shuffled(len(idx), seed)
    images: dict[str, torch.Tensor] = {"model": drawn["model"]}
    if "stage1" in drawn:
        images["stage1"] = drawn["stage1"]
    if baseline is not None:
        from genlab.data.captioned_digits import spec_digit_class

        labels = torch.tensor([spec_digit_class(data.spec(i)) for i in idx])
        gen = torch.Generator(device=baseline.device).manual_seed(seed)
        images["baseline"] = torch.cat(
            [
                baseline.sample(len(y), generator=gen, y=y.to(baseline.device)).float().cpu()
                for y in labels.split(batch_size)
            ]
        )
    images["real"] = real
    rows: dict[str, dict[str, float]] = {k: {} for k in images}
    rows["shuffled"], rows["chance"] = {}, {}
    if reader is not None:
        specs = [data.spec(i) for i in idx]
        layouts = [data.layout(i) for i in idx]
        wrong = [specs[int(j)] for j in perm]
        for name, x in images.items():
            rows[name].update(spec_accuracy(reader.read(x), specs))
        rows["shuffled"].update(spec_accuracy(reader.read(images["model"]), wrong))
        rows["chance"].update(spec_accuracy(layouts, wrong))
    if encoder is not None and len(idx) >= rp_candidates:
        exclude = _true_of_item(data, idx) if reader is not None else None
        for name, x in images.items():
            rows[name]["r_precision"] = r_precision(
                encoder, x, tokens, candidates=rp_candidates, seed=seed, exclude=exclude
            )
        # image i judged against caption perm[i]: the negatives are other captions not true
        # of the canvas that caption came from
        exclude_shuffled = None
        if exclude is not None:
            exclude_shuffled = lambda i, j: exclude(int(perm[i]), j)  # noqa: E731
        rows["shuffled"]["r_precision"] = r_precision(
            encoder,
            images["model"],
            tokens[perm],
            candidates=rp_candidates,
            seed=seed,
            exclude=exclude_shuffled,
        )
    elif encoder is not None:
        log.warning(
            "captions: R-precision of %s skipped: %d captions, fewer than rp_candidates=%d",
            split,
            len(idx),
            rp_candidates,
        )
    rows = {k: v for k, v in rows.items() if v}
    # the grid: the model's image over each of the first n_grid captions (evenly spaced)
    show = evenly_spaced(len(idx), min(n_grid, len(idx)))
    texts = [data.caption(idx[i]) for i in show] if hasattr(data, "caption") else None
    stem = out_dir / f"captions_{split}"
    written = caption_writer.save(
        images["model"][show], stem, modality=dm.modality, n_per_row=n_per_row, captions=texts
    )
    return rows, [p.name for p in written]


def _true_of_item(data: Any, idx: list[int]) -> Callable[[int, int], bool]:
    """exclude(i, j): whether caption j (of the items `idx`) is also true of item i's canvas,
    so R-precision never counts a true caption as a negative."""
    from genlab.data.captioned_digits import satisfies

    specs = [data.spec(i) for i in idx]
    layouts = [data.layout(i) for i in idx]
    return lambda i, j: satisfies(specs[j], layouts[i])


def caption_sampler(
    model: Any, dm: Any, split: str, n: int, name: str
) -> tuple[Callable[[int, torch.Generator], torch.Tensor], int]:
    """`sample(b, generator)` for the generation metrics: the images of the captions of the
    same items the real features come from (`real_indices`), in order; for the baseline,
    of the digits those captions name."""
    data = dm.dataset(split)
    idx = real_indices(len(data), n)
    pos = 0

    def sample(b: int, gen: torch.Generator) -> torch.Tensor:
        nonlocal pos
        items = idx[pos : pos + b]
        pos += b
        if name == "baseline":
            from genlab.data.captioned_digits import spec_digit_class

            y = torch.tensor([spec_digit_class(data.spec(i)) for i in items], device=model.device)
            return model.sample(len(items), generator=gen, y=y)
        tokens = torch.stack([caption_of(data, i) for i in items])
        return model.generate(tokens.to(model.device), generator=gen)

    return sample, len(idx)


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    keys: list[str] = []
    for values in rows.values():
        keys += [k for k in values if k not in keys and "_std" not in k and "_size" not in k]
    lines = ["| images | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, values in rows.items():
        cells = []
        for k in keys:
            v = values.get(k)
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            cells.append("–" if missing else f"{v:.4g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
