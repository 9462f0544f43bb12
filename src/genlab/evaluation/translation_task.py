"""The `translation` task: how well an image-to-image model (CanTranslate) maps the sources of a
split to their targets, beside the trivial outputs it has to beat.

    python -m genlab.eval ckpt_path=RUN/checkpoints/last.ckpt tasks=[test,translation,report] \
        tasks.translation.classifier_ckpt=CLF_RUN/checkpoints/best-....ckpt

For the model's outputs and each trivial baseline of the data's pairing (bicubic upsampling for
super-resolution, mean and blur fill for inpainting, the input itself for edges, greyscale and
file pairs), against the targets, over the split (or `max_images` evenly spaced pairs):

- `psnr_db`: mean over images of each image's PSNR (data range 1);
- `ssim`: mean SSIM (torchmetrics, 11x11 Gaussian window);
- `l1`: mean absolute error per value;
- `grad_mean` and `laplacian_var`: sharpness (mean gradient magnitude; variance of the
  Laplacian, the classic blur measure), also of the targets themselves;
- domain FID / KID (or Inception) of the outputs against the split's real targets, from the
  generation metrics registry, when a feature network is given (`classifier_ckpt`); skipped
  with a note otherwise.

For masked sources (inpainting) every number is taken on the hole only: PSNR, L1 and
sharpness over the hole's pixels, SSIM as its per-pixel map averaged over the hole; FID sees
whole images. Writes translation.json, translation.md and translation_triplets.png
(input | baselines | output | target).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure
from torchvision.utils import save_image

from genlab.analysis.grids import translation_triplets, triplet_grid
from genlab.data.paired import load_pairs, translation_pairing
from genlab.data.pairing import luma
from genlab.data.subsets import evenly_spaced
from genlab.evaluation.context import EvalContext, accepts
from genlab.losses.translation_losses import pixel_loss, psnr_db, region_mean
from genlab.metrics.generation import MetricSpec, real_indices
from genlab.models.protocols import CanTranslate
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

QUALITY = ("psnr_db", "ssim", "l1")
SHARPNESS = ("grad_mean", "laplacian_var")


def ssim_per_image(
    output: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None
) -> torch.Tensor:
    """SSIM of each image (B,), or its SSIM map averaged over `region` (B, 1, H, W)."""
    _, ssim_map = structural_similarity_index_measure(
        output.float(), target.float(), data_range=1.0, reduction="none", return_full_image=True
    )
    return region_mean(ssim_map, region)


def sharpness(images: torch.Tensor, region: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per image (B,): `grad_mean`, the mean magnitude of the luma's forward differences, and
    `laplacian_var`, the variance of its 3x3 Laplacian; both over `region` when given."""
    grey = luma(images.float())  # (b, 1, h, w)
    gx = grey[..., :-1, 1:] - grey[..., :-1, :-1]
    gy = grey[..., 1:, :-1] - grey[..., :-1, :-1]
    magnitude = (gx.pow(2) + gy.pow(2)).sqrt()  # (b, 1, h - 1, w - 1)
    kernel = grey.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    lap = F.conv2d(grey, kernel[None, None])  # (b, 1, h - 2, w - 2)
    r_grad = region[..., :-1, :-1] if region is not None else None
    r_lap = region[..., 1:-1, 1:-1] if region is not None else None
    mean = region_mean(lap, r_lap)
    return {
        "grad_mean": region_mean(magnitude, r_grad),
        "laplacian_var": region_mean(lap.pow(2), r_lap) - mean.pow(2),
    }


def quality(
    output: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """PSNR, SSIM and L1 of each output against its target (B,) each."""
    return {
        "psnr_db": psnr_db(output, target, region),
        "ssim": ssim_per_image(output, target, region),
        "l1": pixel_loss(output, target, "l1", region),
    }


def markdown_table(rows: dict[str, dict[str, float]], fid_keys: list[str], region: str) -> str:
    """One row per image source (output, baselines, target), one column per number."""
    keys = [*QUALITY, *fid_keys, *SHARPNESS]
    lines = [
        f"Numbers over the {region}; PSNR/SSIM/L1 against the targets, sharpness of the images "
        "themselves.",
        "",
        "| images | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for name, values in rows.items():
        cells = [f"{values[k]:.4g}" if k in values else "–" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@torch.no_grad()
@accepts("image")
def translation(
    ctx: EvalContext,
    *,
    split: str = "test",
    max_images: int | None = None,
    batch_size: int = 100,
    n_grid: int = 16,
    n_per_row: int = 2,
    n_fid: int = 1000,
    seed: int = 0,
    **spec: Any,
) -> dict[str, Any]:
    """Measure the model's outputs and the trivial baselines on `split`; write the files.

    `spec`: the generation metrics' options (metrics, extractor, classifier_ckpt,
    inception_weights, ...; genlab.metrics.generation.MetricSpec), for FID/KID of the outputs.
    """
    model = ctx.model
    if not isinstance(model, CanTranslate):
        raise GenlabError(
            f"tasks=[translation] measures image-to-image models, and {type(model).__name__} "
            "does not translate images (no translate(source)). Evaluate a model=pix2pix, srgan "
            "or inpaint checkpoint, or remove the task."
        )
    dm = ctx.datamodule
    pairing = translation_pairing(dm)
    data = dm.dataset(split)  # type: ignore[attr-defined]
    indices = evenly_spaced(len(data), max_images)
    model.eval()  # type: ignore[attr-defined]
    sums: dict[str, dict[str, float]] = {}
    region_name = "image"
    for start in range(0, len(indices), batch_size):
        target, source = load_pairs(dm, split, indices[start : start + batch_size], ctx.device)
        region = pairing.hole(source)
        region_name = "hole" if region is not None else "image"
        shape = target.shape[1:]
        images = {
            "output": model.translate(source),
            **pairing.baselines(source, shape),
        }
        for name, image in images.items():
            values = {**quality(image, target, region), **sharpness(image, region)}
            row = sums.setdefault(name, {})
            for k, v in values.items():
                row[k] = row.get(k, 0.0) + float(v.double().sum())
        row = sums.setdefault("target", {})
        for k, v in sharpness(target, region).items():
            row[k] = row.get(k, 0.0) + float(v.double().sum())
    n = len(indices)
    rows = {name: {k: v / n for k, v in values.items()} for name, values in sums.items()}

    result: dict[str, Any] = {"split": split, "n_images": n, "region": region_name}

    # feature-space distances of the outputs (and baselines) to the split's real targets
    fid_keys: list[str] = []
    if spec.get("extractor", "domain") == "domain" and not spec.get("classifier_ckpt"):
        result["generation_skipped"] = (
            "no feature network: give tasks.translation.classifier_ckpt (a genlab classifier, "
            "python -m genlab.train experiment=classifier_mnist) or extractor=inception"
        )
    else:
        evaluator = MetricSpec.from_options("tasks.translation", spec).evaluator(
            dm, split=split, n_real=n_fid, batch_size=batch_size, device=ctx.device
        )
        idx = real_indices(len(data), n_fid)
        for name in rows:
            if name == "target":
                continue
            measured = evaluator.evaluate(
                _images_of(model, dm, split, idx, name), len(idx), seed=seed, source=name
            )
            result[f"{name}_generation"] = measured
            rows[name].update(measured["values"])
            fid_keys = [k for k in measured["values"] if "_std" not in k and "_size" not in k]
    for name, values in rows.items():  # flat keys: output_psnr_db, bicubic_fid_domain, ...
        for k, v in values.items():
            result[f"{name}_{k}"] = v
    log.info("translation: %s", rows)

    out = ctx.out_dir
    out.mkdir(parents=True, exist_ok=True)
    columns, names = translation_triplets(model, dm, split, n_grid, baselines=True)
    save_image(triplet_grid(columns, n_per_row), out / "translation_triplets.png")
    result["grid_columns"] = " | ".join(names)
    result["files"] = ["translation.json", "translation.md", "translation_triplets.png"]
    (out / "translation.md").write_text(
        f"# Translation ({split}, {n} pairs)\n\n"
        + markdown_table(rows, fid_keys, region_name)
        + f"\n![triplets](translation_triplets.png)\n\nColumns: {result['grid_columns']}.\n"
    )
    (out / "translation.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _images_of(model: Any, datamodule: Any, split: str, indices: list[int], name: str):
    """`sample(b, generator)` giving the model's outputs (`output`) or a baseline's images for
    the pairs `indices` of a split, in order, for the generation metrics."""
    pairing = translation_pairing(datamodule)
    pos = 0

    def sample(b: int, gen: torch.Generator) -> torch.Tensor:  # noqa: ARG001
        nonlocal pos
        target, source = load_pairs(datamodule, split, indices[pos : pos + b], model.device)
        pos += b
        if name == "output":
            return model.translate(source)
        return pairing.baselines(source, target.shape[1:])[name]

    return sample
