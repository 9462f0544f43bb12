"""Translating folders of images with any image-to-image model (CanTranslate): inputs read from
files (or derived from them with the run's pairing), outputs written one PNG per input, and a
triplet grid. The library behind `python -m genlab.translate`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import save_image

from genlab.analysis.grids import triplet_grid
from genlab.data.paired import image_files, to_tensor
from genlab.data.pairing import FilePairs, Pairing
from genlab.data.untrusted_files import (
    DEFAULT_MAX_IMAGE_PIXELS,
    check_max_pixels,
    read_image,
    reason,
)
from genlab.models.protocols import CanTranslate
from genlab.utils.errors import GenlabError
from genlab.utils.run import write_json

log = logging.getLogger(__name__)

MODES = ("source", "derive")
# resize=false runs the net at each file's own size: its memory grows with the pixels (a
# 4000 x 4000 input took 2 GB), so inputs are bounded to 2048 x 2048 unless asked otherwise
DEFAULT_MAX_UNRESIZED_PIXELS = 2048 * 2048


def load_image(
    path: str,
    channels: int,
    size: int | None,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    option: str = "max_image_pixels",
) -> torch.Tensor:
    """One image file as (1, channels, H, W) in [0, 1]: resized (short side) and
    center-cropped to `size`, or at its own size when `size` is None. Files above
    `max_pixels` pixels are refused before decoding, naming `option`."""
    try:
        image = read_image(path, max_pixels=max_pixels, option=option)
    except Exception as exc:
        raise GenlabError(
            f"input image {path!r} cannot be read ({reason(exc)}): replace or remove it"
            + (f", or raise {option}." if option in reason(exc) else ".")
        ) from None
    if size is not None:
        return to_tensor(image, channels, size)[None]
    image = image.convert("L" if channels == 1 else "RGB")
    return TF.pil_to_tensor(image).float().div_(255)[None]


def make_sources(
    paths: Sequence[str],
    pairing: Pairing,
    *,
    mode: str,
    image_shape: Sequence[int],
    source_shape: Sequence[int],
    mask_dir: str | None,
    resize: bool,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_unresized_pixels: int = DEFAULT_MAX_UNRESIZED_PIXELS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sources (n, C_s, H, W) for the files `paths` (all of one size), and in `derive` mode the
    originals they were made from (the targets), else None. Files above `max_image_pixels`
    pixels (`max_unresized_pixels` when `resize` is false) are refused before decoding."""
    channels = int(image_shape[0])
    limit = {"max_pixels": max_image_pixels, "option": "max_image_pixels"}
    if not resize:
        limit = {
            "max_pixels": min(max_image_pixels, max_unresized_pixels),
            "option": "max_unresized_pixels (resize=false runs the net at the file's size)",
        }
    if mode == "derive":
        if isinstance(pairing, FilePairs):
            raise GenlabError(
                "mode=derive makes the inputs with the run's pairing, but this model was trained "
                "on pairs read from files (data=paired): give it inputs with mode=source."
            )
        size = int(image_shape[-1]) if resize else None
        targets = torch.cat([load_image(p, channels, size, **limit) for p in paths])
        pairing.check(targets.shape[1:])
        return pairing(targets), targets
    size = int(source_shape[-1]) if resize else None
    images = torch.cat([load_image(p, channels, size, **limit) for p in paths])
    masks = None
    if mask_dir is not None:
        found = []
        for p in paths:
            candidates = sorted(Path(mask_dir).glob(Path(p).stem + ".*"))
            if not candidates:
                raise GenlabError(
                    f"mask_dir={mask_dir!r} has no mask for {p!r}: give every input a mask with "
                    f"the same name ({Path(p).stem}.png, white = hole)."
                )
            found.append(load_image(str(candidates[0]), 1, size, **limit))
        masks = torch.cat(found)
        if masks.shape[-2:] != images.shape[-2:]:
            raise GenlabError(
                f"the masks in mask_dir={mask_dir!r} are {tuple(masks.shape[-2:])} pixels but the "
                f"images {tuple(images.shape[-2:])}: make each mask the size of its image."
            )
    return pairing.source_from_image(images, masks), None


@torch.no_grad()
def translate_folder(
    model: Any,
    pairing: Pairing,
    input_dir: str,
    out_dir: Path,
    *,
    image_shape: Sequence[int],
    mode: str = "source",
    mask_dir: str | None = None,
    resize: bool = True,
    batch_size: int = 16,
    n_grid: int = 16,
    n_per_row: int = 2,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_unresized_pixels: int = DEFAULT_MAX_UNRESIZED_PIXELS,
) -> dict[str, Any]:
    """Translate every image of `input_dir`; write outputs/, triplets.png, translate.json.

    Inputs are untrusted files: an image above `max_image_pixels` pixels (above
    `max_unresized_pixels` with `resize=false`, where the net runs at the file's own size) is
    refused before it is decoded."""
    check_max_pixels(max_image_pixels, "max_image_pixels")
    check_max_pixels(max_unresized_pixels, "max_unresized_pixels")
    if not isinstance(model, CanTranslate):
        raise GenlabError(
            f"{type(model).__name__} does not translate images (no translate(source)): "
            "genlab.translate needs a model=pix2pix, srgan or inpaint checkpoint."
        )
    if mode not in MODES:
        raise GenlabError(f"mode={mode!r}: use one of {MODES}.")
    if not Path(input_dir).is_dir():
        raise GenlabError(f"input_dir={input_dir!r} is not a directory of images.")
    # the user picks input_dir for a one-off mapping: links out of it are followed
    paths = image_files(input_dir, outside_links="follow")
    if not paths:
        raise GenlabError(f"input_dir={input_dir!r} holds no image files.")
    model.eval()
    (out_dir / "outputs").mkdir(parents=True, exist_ok=True)
    shown: list[list[torch.Tensor]] = []
    step = batch_size if resize else 1  # files of their own sizes go one at a time
    for start in range(0, len(paths), step):
        chunk = paths[start : start + step]
        sources, targets = make_sources(
            chunk,
            pairing,
            mode=mode,
            image_shape=image_shape,
            source_shape=model.source_shape,
            mask_dir=mask_dir,
            resize=resize,
            max_image_pixels=max_image_pixels,
            max_unresized_pixels=max_unresized_pixels,
        )
        outputs = model.translate(sources.to(model.device)).cpu()
        for path, image in zip(chunk, outputs, strict=True):
            save_image(image, out_dir / "outputs" / f"{Path(path).stem}.png")
        if sum(len(c[0]) for c in shown) < n_grid:
            size = tuple(image_shape[-2:])
            cols = [pairing.display(sources, outputs.shape[1:]), outputs]
            if targets is not None:
                cols.append(targets)
            shown.append([F.interpolate(c.float(), size=size, mode="nearest") for c in cols])
    columns = [torch.cat(parts)[:n_grid] for parts in zip(*shown, strict=True)]
    save_image(triplet_grid(columns, n_per_row), out_dir / "triplets.png")
    summary = {
        "ckpt_model": type(model).__name__,
        "input_dir": str(Path(input_dir).resolve()),
        "mode": mode,
        "n_images": len(paths),
        "outputs_dir": str(out_dir / "outputs"),
        "grid": str(out_dir / "triplets.png"),
        "grid_columns": "input | output" + (" | original" if mode == "derive" else ""),
    }
    write_json(out_dir / "translate.json", summary)
    return summary
