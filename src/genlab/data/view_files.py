"""Single views of objects given as files, for single-view 3D reconstruction
(genlab.reconstruct3d): a folder of PNG files read as untrusted input and turned into the
condition a completion model takes (genlab.data.voxel_shapes, docs/3d.md).

The files of one input NAME, each image_size x image_size pixels (the run's data.image_size):

- models that take **2.5D sketches** (data.condition=sketch): `NAME_depth.png` and
  `NAME_mask.png`, both one grey channel. The depth is 8 or 16 bits, pixel / 255 (or / 65535)
  being the sketch's depth channel: the camera-space depth mapped linearly from
  [distance - sqrt(3)/2, distance + sqrt(3)/2] to [0, 1] (black is near, white far;
  genlab.data.voxel_render.sketch). The mask is the silhouette, on where a pixel is above half
  of white (1, 8 or 16 bits). Off the mask the depth is taken as 1, as the data make it.
- models that take **RGB renders** (data.condition=rgb, with an estimator): `NAME.png`, RGB
  (or RGBA / palette, transparent pixels on white), the object on a white background.

Every problem of every file (a missing partner, a wrong size or channel count, a file that
does not decode) is collected and reported together, before anything is computed. Files are
opened only as PNG, without blocking, and their size is checked before they are decoded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab.data.untrusted_files import open_image, reason
from genlab.utils.errors import GenlabError

KINDS = ("sketch", "rgb")
DEPTH, MASK = "_depth.png", "_mask.png"
# at most this many inputs in a folder by default (each costs a turntable's 24 ray casts)
DEFAULT_MAX_INPUTS = 256
# problems listed in the one error message
SHOWN = 8
# Pillow's modes of one grey channel: 1 bit, 8 bits, 16 bits, 32-bit integers (16-bit PNGs)
_GREY = {"1": 1, "L": 255, "I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535}


def _png_files(folder: Path) -> tuple[list[Path], int]:
    """The regular `.png` files directly in `folder` (not hidden; links followed: the user
    chose the folder), sorted by name, and how many other entries it holds."""
    found, other = [], 0
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        try:
            regular = stat.S_ISREG(os.stat(entry.path).st_mode)
        except OSError:
            regular = False
        if regular and entry.name.lower().endswith(".png"):
            found.append(Path(entry.path))
        else:
            other += 1
    return found, other


def input_files(
    folder: str | Path, kind: str, *, max_inputs: int = DEFAULT_MAX_INPUTS
) -> tuple[dict[str, tuple[Path, ...]], list[str]]:
    """{NAME: its files} of `folder` for inputs of `kind` (sketch: (depth, mask); rgb:
    (render,)), in name order, and the problems found (a depth map without its mask, ...)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: one of {KINDS}")
    folder = Path(folder)
    if not folder.is_dir():
        raise GenlabError(f"input_dir={str(folder)!r} is not a folder of PNG files.")
    pngs, other = _png_files(folder)
    if len(pngs) > (2 if kind == "sketch" else 1) * max_inputs:
        raise GenlabError(
            f"input_dir={str(folder)!r} holds {len(pngs):,} PNG files, more than max_inputs="
            f"{max_inputs} inputs: split the folder, or raise max_inputs."
        )
    problems: list[str] = []
    inputs: dict[str, tuple[Path, ...]] = {}

    def by_name(files: list[Path], suffix: str) -> dict[str, Path]:
        """{NAME: file} of the files ending in `suffix` (any case); a file without a NAME
        or whose NAME another file has (a.png and a.PNG) is a problem."""
        out: dict[str, Path] = {}
        for p in files:
            if not p.name.lower().endswith(suffix):
                continue
            name = p.name[: -len(suffix)]
            if not name:
                problems.append(f"{p} has no NAME before {suffix}: rename it")
            elif name in out:
                problems.append(f"{out[name]} and {p} are both input {name!r}: rename one")
            else:
                out[name] = p
        return out

    if kind == "rgb":
        inputs = {name: (p,) for name, p in by_name(pngs, ".png").items()}
    else:
        depth, mask = by_name(pngs, DEPTH), by_name(pngs, MASK)
        for name in sorted(set(depth) | set(mask)):
            if name not in mask:
                problems.append(f"{depth[name]} has no partner {name}{MASK} (the silhouette)")
            elif name not in depth:
                problems.append(f"{mask[name]} has no partner {name}{DEPTH} (the depth map)")
            else:
                inputs[name] = (depth[name], mask[name])
        problems += [
            f"{p} is neither NAME{DEPTH} nor NAME{MASK}: rename it, or move it out"
            for p in pngs
            if not p.name.lower().endswith((DEPTH, MASK))
        ]
    if not inputs and not problems:
        what = f"NAME{DEPTH} + NAME{MASK} pairs" if kind == "sketch" else "NAME.png renders"
        raise GenlabError(
            f"input_dir={str(folder)!r} holds no {what} ({other} other entries): this model "
            f"takes {describe(kind)}; docs/3d.md#reconstructing-shapes-from-your-own-views "
            "says how to write them."
        )
    if len(inputs) > max_inputs:
        raise GenlabError(
            f"input_dir={str(folder)!r} holds {len(inputs):,} inputs, more than max_inputs="
            f"{max_inputs}: split the folder, or raise max_inputs."
        )
    return inputs, problems


def describe(kind: str) -> str:
    """What inputs of `kind` are, in words, for messages."""
    if kind == "sketch":
        return (
            f"2.5D sketches: NAME{DEPTH} (one grey channel, 8 or 16 bits) with NAME{MASK} "
            "(the silhouette, white on black)"
        )
    return "RGB renders: NAME.png (the object on white)"


def _decoded(path: Path, size: int, what: str) -> Image.Image:
    """The image at `path`, decoded only when it is size x size pixels."""
    try:
        # no pixel limit of its own: the size is checked before anything is decoded
        with open_image(str(path), max_pixels=1 << 62, option="data.image_size") as image:
            if image.size != (size, size):
                w, h = image.size
                raise GenlabError(f"{path} is {w}x{h} pixels, not the {what}")
            image.load()
            return image
    except GenlabError:
        raise
    except Exception as exc:  # refused, truncated, damaged...
        raise GenlabError(f"{path} cannot be read ({reason(exc)})") from None


def _grey(path: Path, size: int, what: str) -> np.ndarray:
    """A one-channel image as floats (size, size) in [0, 1]."""
    image = _decoded(path, size, what)
    if image.mode not in _GREY:
        bands = len(image.getbands())
        raise GenlabError(
            f"{path} has {bands} channel{'s' if bands > 1 else ''} (mode {image.mode}), not the "
            "one grey channel (8 or 16 bits) of a depth map or mask"
        )
    x = np.asarray(image).astype(np.float64)
    if image.mode == "I" and x.size and (x.min() < 0 or x.max() > 65535):
        raise GenlabError(f"{path} holds integers beyond 16 bits ({x.min():g}..{x.max():g})")
    return (x / _GREY[image.mode]).astype(np.float32)


def _rgb(path: Path, size: int, what: str) -> np.ndarray:
    """An RGB(A) image as floats (3, size, size) in [0, 1], transparent pixels on white."""
    image = _decoded(path, size, what)
    if image.mode in ("RGBA", "P", "PA") or "transparency" in image.info:
        if image.mode not in ("RGB", "RGBA", "P", "PA"):  # grey with a transparent colour
            raise GenlabError(f"{path} is grey (mode {image.mode}), not an RGB render")
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba)
        image = image.convert("RGB")
    if image.mode != "RGB":
        bands = len(image.getbands())
        raise GenlabError(
            f"{path} has {bands} channel{'s' if bands > 1 else ''} (mode {image.mode}), not the "
            "three of an RGB render"
        )
    return (np.asarray(image).astype(np.float32) / 255).transpose(2, 0, 1)


def sketch_of(depth: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """A depth map and a mask (H, W) in [0, 1] -> the 2.5D sketch (2, H, W): the depth, 1
    (far) off the mask, and the silhouette (mask > 1/2) in {0, 1}."""
    silhouette = torch.from_numpy(mask > 0.5)
    d = torch.from_numpy(depth).clamp(0, 1)
    d = torch.where(silhouette, d, torch.ones_like(d))
    return torch.stack([d, silhouette.float()])


def read_views(
    folder: str | Path, kind: str, *, image_size: int, max_inputs: int = DEFAULT_MAX_INPUTS
) -> tuple[list[str], torch.Tensor, list[list[str]]]:
    """(names, views (B, C, H, W) in [0, 1], the files of each) of the inputs in `folder` as
    a model of `kind` takes them (module docstring); every problem of every file in one
    GenlabError."""
    inputs, problems = input_files(folder, kind, max_inputs=max_inputs)
    what = f"{image_size}x{image_size} pixels the model was trained on (data.image_size)"
    views, names = [], []
    read = _grey if kind == "sketch" else _rgb
    for name, paths in inputs.items():
        arrays = []
        for path in paths:  # each file checked, so that every problem is said at once
            try:
                arrays.append(read(path, image_size, what))
            except GenlabError as exc:
                problems.append(str(exc))
        if len(arrays) == len(paths):
            views.append(sketch_of(*arrays) if kind == "sketch" else torch.from_numpy(arrays[0]))
            names.append(name)
    if problems:
        shown = "\n  ".join(problems[:SHOWN])
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise GenlabError(
            f"input_dir={str(folder)!r}: {len(problems)} problem(s) with the input files, "
            f"nothing was reconstructed:\n  {shown}{more}\nThis model takes {describe(kind)}, "
            f"{image_size}x{image_size} pixels (docs/3d.md#reconstructing-shapes-from-your-"
            "own-views)."
        )
    return names, torch.stack(views), [[str(p) for p in inputs[n]] for n in names]
