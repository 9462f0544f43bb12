"""Morphometry of digit images, after Morpho-MNIST (Castro et al. 2019), written for genlab:
stroke thickness, slant, width and height measured from image moments and morphology; pixel
edits that change them (thickening and thinning by morphology, slant by shear); and the
bundled digits with their thickened and thinned versions, conditioned on those measures, so
that a continuous "age-like" attribute has ground truth.

Measures (`measure`), in the original image's pixels:

- the image is upsampled `scale` times (bilinear) and binarised at `threshold`, so strokes
  are measured to a fraction of a pixel;
- `slant`: the shear of the foreground, from its second central moments: the slope
  s = mu11 / mu02 of x on y (x to the right, y down), slant = atan(-s) in degrees, positive
  when the digit leans right (its top to the right of its bottom);
- `width`, `height`: the extent of the foreground along x after removing that shear, and
  along y, between the `bound_frac` / 2 and 1 - `bound_frac` / 2 quantiles (a few stray
  pixels do not count);
- `thickness`: twice the mean distance to the background over the ridge of the distance map
  (pixels whose distance is the largest of their 3x3 neighbourhood: the medial axis, as the
  skeleton is in Morpho-MNIST).

An image with no foreground measures 0 everywhere.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import Dataset

from genlab.data.datamodules import ArrayImages, materialize
from genlab.data.mnist import MNIST5k
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

MEASURES = ("thickness", "slant", "width", "height")
UNITS = {"thickness": "px", "slant": "deg", "width": "px", "height": "px"}
# the condition a model sees is (value - center) / unit, with these fixed constants (not
# fitted to the data, so every run and checkpoint reads conditions alike): about the mean
# and standard deviation of the bundled digits' measures
CONDITION_SCALE = {
    "thickness": (2.5, 1.0),
    "slant": (0.0, 15.0),
    "width": (11.0, 4.0),
    "height": (19.0, 2.0),
}
# bumped when the measures or the variants change: the disk cache is keyed by it
VERSION = 1


# --- measures --------------------------------------------------------------------------------
def _as_float(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 1:
        raise GenlabError(
            f"digit measures take grey images (N, 1, H, W); got shape {tuple(images.shape)}."
        )
    x = images.detach().cpu()
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def upsampled(images: torch.Tensor, scale: int) -> torch.Tensor:
    """Grey images (N, 1, H, W) -> (N, 1, scale*H, scale*W) floats, bilinear."""
    x = _as_float(images)
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


@torch.no_grad()
def measure(
    images: torch.Tensor,
    *,
    scale: int = 4,
    threshold: float = 0.5,
    bound_frac: float = 0.02,
    names: Sequence[str] = MEASURES,
) -> torch.Tensor:
    """Thickness (px), slant (degrees), width (px), height (px) of each grey image
    (N, 1, H, W) in [0, 1] (or uint8): (N, len(names)), columns in the order of `names`
    (MEASURES by default). Thickness costs most (a distance map per image): leave it out of
    `names` when it is not needed."""
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise GenlabError(f"digit measures {unknown}: measure one of {', '.join(MEASURES)}.")
    if scale < 1 or not 0.0 < threshold < 1.0 or not 0.0 <= bound_frac < 1.0:
        raise GenlabError(
            f"digit measures: scale={scale} must be >= 1, threshold={threshold} in (0, 1) and "
            f"bound_frac={bound_frac} in [0, 1)."
        )
    cols = [MEASURES.index(n) for n in names]
    out = torch.zeros(len(images), len(cols))
    for start in range(0, len(images), 512):  # bounded memory: 512 upsampled images at a time
        chunk = upsampled(images[start : start + 512], scale)[:, 0] > threshold  # (b, h, w)
        found = _measure_binary(chunk, scale, bound_frac, "thickness" in names)
        out[start : start + len(chunk)] = found[:, cols]
    return out


def _distances(binary: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every foreground pixel to the background (N, h, w), float32;
    each image's distance map is computed on its foreground's bounding box (plus a margin of
    background), where all of its non-zero values lie."""
    out = torch.zeros(binary.shape, dtype=torch.float32)
    rows, cols = binary.any(2), binary.any(1)  # (n, h), (n, w)
    for i in torch.nonzero(rows.any(1)).flatten().tolist():
        r = torch.nonzero(rows[i]).flatten()
        c = torch.nonzero(cols[i]).flatten()
        r0, r1, c0, c1 = int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1
        box = np.pad(binary[i, r0:r1, c0:c1].numpy(), 1)  # background all round
        out[i, r0:r1, c0:c1] = torch.from_numpy(
            ndimage.distance_transform_edt(box)[1:-1, 1:-1].astype(np.float32)
        )
    return out


def _quantiles(
    positions: torch.Tensor, mask: torch.Tensor, q: tuple[float, float], scale: int
) -> torch.Tensor:
    """The q[0] and q[1] quantiles (lower) of `positions` (original pixels, within +-2 image
    widths of 0) over the pixels of `mask`, per image, to 1 / (4 * `scale`) of a pixel:
    (n, 2). A histogram at that resolution, not a sort, which took 3 times as long."""
    n = len(mask)
    step = 4 * scale  # bins per original pixel
    half = 2 * mask.shape[-1] // scale * step  # [-2W, 2W] original pixels
    bins = 2 * half + 1
    index = (positions * step).round().long().clamp(-half, half) + half
    counts = torch.zeros(n, bins).scatter_add_(
        1, index.expand_as(mask).reshape(n, -1), mask.reshape(n, -1).float()
    )
    cumulative = counts.cumsum(1)
    total = cumulative[:, -1:].clamp_min(1)
    ranks = torch.cat([((total - 1) * qi).floor() for qi in q], 1)  # (n, 2)
    found = torch.searchsorted(cumulative.contiguous(), ranks.contiguous(), right=True)
    return (found - half).float() / step


def _measure_binary(
    binary: torch.Tensor, scale: int, bound_frac: float, with_thickness: bool = True
) -> torch.Tensor:
    n, h, w = binary.shape
    fg = binary.float()
    mass = fg.sum((1, 2))  # (n,)
    empty = mass == 0
    mass = mass.clamp_min(1)
    # pixel centres in original pixels (x right, y down)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / scale
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / scale
    cy = (fg.sum(2) * ys).sum(1) / mass
    cx = (fg.sum(1) * xs).sum(1) / mass
    dy = ys[None, :, None] - cy[:, None, None]  # (n, h, 1)
    dx = xs[None, None, :] - cx[:, None, None]  # (n, 1, w)
    mu02 = (fg * dy**2).sum((1, 2))
    mu11 = (fg * dx * dy).sum((1, 2))
    shear = mu11 / mu02.clamp_min(1e-12)  # slope of x on y
    slant = torch.rad2deg(torch.atan(-shear))
    # distance to the background (subpixels) on its ridge -> thickness
    thickness = torch.zeros(n)
    if with_thickness:
        distance = _distances(binary)
        neighbourhood = F.max_pool2d(distance[:, None], 3, stride=1, padding=1)[:, 0]
        ridge = binary & (distance >= neighbourhood)
        thickness = 2.0 * (distance * ridge).sum((1, 2)) / ridge.sum((1, 2)).clamp_min(1) / scale
    # extents: x with the shear removed, and y, between quantiles of the foreground
    q = (bound_frac / 2, 1 - bound_frac / 2)
    deslanted = dx - shear[:, None, None] * dy  # (n, h, w)
    x_lo_hi = _quantiles(deslanted, binary, q, scale)
    y_lo_hi = _quantiles(dy.expand(n, h, w), binary, q, scale)
    widths = x_lo_hi[:, 1] - x_lo_hi[:, 0] + 1.0 / scale
    heights = y_lo_hi[:, 1] - y_lo_hi[:, 0] + 1.0 / scale
    out = torch.stack([thickness, slant, widths, heights], 1)
    out[empty] = 0.0
    return out


# --- pixel edits -----------------------------------------------------------------------------
def _disk_offsets(radius: float) -> list[tuple[int, int]]:
    r = int(math.floor(radius))
    return [
        (dy, dx)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
        if dy * dy + dx * dx <= radius * radius + 1e-9
    ]


def _grey_morphology(x: torch.Tensor, radius: float, dilate: bool) -> torch.Tensor:
    """Grey dilation (max) or erosion (min) of (N, 1, H, W) by a disk of `radius` pixels."""
    r = int(math.floor(radius))
    fill = 0.0 if dilate else 1.0
    padded = F.pad(x, (r, r, r, r), value=fill)
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    pick = torch.maximum if dilate else torch.minimum
    for dy, dx in _disk_offsets(radius):
        out = pick(out, padded[..., r + dy : r + dy + h, r + dx : r + dx + w])
    return out


@torch.no_grad()
def thicken(images: torch.Tensor, amount: float, *, scale: int = 4) -> torch.Tensor:
    """Strokes made `amount` pixels thicker (negative: thinner) by grey dilation (erosion)
    with a disk of radius |amount| / 2 at `scale` times the resolution, then averaged back
    down: (N, 1, H, W) floats in [0, 1] (uint8 images are read as /255). amount=0 returns the
    images as floats unchanged. Thinning a stroke by more than its thickness erases it."""
    x = _as_float(images)
    if amount == 0:
        return x.clone()
    out = []
    for chunk in x.split(512):
        up = upsampled(chunk, scale)
        edited = _grey_morphology(up, abs(amount) * scale / 2.0, dilate=amount > 0)
        out.append(F.avg_pool2d(edited, scale) if scale > 1 else edited)
    return torch.cat(out).clamp(0.0, 1.0)


@torch.no_grad()
def shear(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Images sheared about their centre so that a vertical stroke leans `degrees` to the
    right (the slant measure of a vertical stroke grows by `degrees`): (N, C, H, W) floats."""
    x = images.detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    t = math.tan(math.radians(degrees)) * x.shape[-2] / x.shape[-1]
    theta = torch.tensor([[1.0, t, 0.0], [0.0, 1.0, 0.0]]).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def pixel_edit(images: torch.Tensor, attribute: str, amount: float) -> torch.Tensor:
    """The pixel-space edit of `attribute` by `amount` (its units): thickness by morphology,
    slant by shear; the baseline with ground truth that latent edits are compared with."""
    if attribute == "thickness":
        return thicken(images, amount)
    if attribute == "slant":
        return shear(images, amount)
    raise GenlabError(
        f"attribute={attribute!r} has no pixel-space edit: thickness (morphology) and slant "
        "(shear) have one."
    )


# --- the digits, with thickened and thinned versions ------------------------------------------
def to_condition(values: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """Measures (N, K) in their units -> the condition a model sees: (value - center) / unit
    per attribute (CONDITION_SCALE)."""
    center = torch.tensor([CONDITION_SCALE[n][0] for n in names], dtype=torch.float32)
    unit = torch.tensor([CONDITION_SCALE[n][1] for n in names], dtype=torch.float32)
    return (values.float() - center.to(values.device)) / unit.to(values.device)


def from_condition(condition: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """The inverse of `to_condition`: conditions (N, K) -> measures in their units."""
    center = torch.tensor([CONDITION_SCALE[n][0] for n in names], dtype=torch.float32)
    unit = torch.tensor([CONDITION_SCALE[n][1] for n in names], dtype=torch.float32)
    return condition.float() * unit.to(condition.device) + center.to(condition.device)


_MEMORY: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _cache_file(key: tuple) -> Path:
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genlab"
    return base / f"morpho_digits_{digest}.pt"


def digit_variants(
    images: torch.Tensor, thickness_steps: Sequence[float], *, scale: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each uint8 digit (N, 1, H, W) at every thickness step (pixels; 0 = the digit itself):
    uint8 images (N * S, 1, H, W), variant-major within each digit (digit i's variants are
    rows i*S .. i*S+S-1), and their measures (N * S, 4): a version's thickness is its
    digit's measured thickness plus the step (what morphology was asked for, the ground truth
    of the edit), the other measures are the version's own. Kept in memory and in
    $XDG_CACHE_HOME/genlab (~/.cache/genlab): 5,000 digits at 4 steps take ~10 s to make."""
    steps = [float(s) for s in thickness_steps]
    digest = hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest()
    key = (VERSION, tuple(images.shape), digest, tuple(steps), scale)
    if key in _MEMORY:
        return _MEMORY[key]
    n, s = len(images), len(steps)
    expected = ((n * s, *images.shape[1:]), (n * s, len(MEASURES)))
    file = _cache_file(key)
    try:
        found = torch.load(file, weights_only=True)  # written by genlab below; checked here
        if (
            isinstance(found, tuple)
            and len(found) == 2
            and found[0].dtype == torch.uint8
            and (tuple(found[0].shape), tuple(found[1].shape)) == expected
            and bool(torch.isfinite(found[1]).all())
        ):
            _MEMORY[key] = found
            return found
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, AttributeError):
        pass
    variants = torch.stack(
        [
            images if step == 0 else thicken(images, step, scale=scale).mul(255).round().byte()
            for step in steps
        ],
        1,
    ).flatten(0, 1)  # (n * s, 1, h, w)
    # a version's thickness is its digit's, measured, plus the step morphology was asked for
    # (the ground truth of the edit); the other measures are measured on the version itself
    thickness = measure(images, scale=scale, names=("thickness",))[:, 0]
    versions = (thickness[:, None] + torch.tensor(steps)[None, :]).reshape(-1, 1)
    values = torch.cat([versions, measure(variants, scale=scale, names=MEASURES[1:])], 1)
    result = (variants, values)
    _MEMORY[key] = result
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        torch.save(result, tmp)
        tmp.replace(file)
    except OSError:  # a read-only home: the in-memory copy only
        pass
    return result


class MorphoDigits(MNIST5k):
    """The bundled digits (MNIST5k's splits) each at several stroke thicknesses, conditioned
    on their measured attributes: batches `(x, y)` with y the `attributes` (a subset of
    MEASURES) as the model sees them, (value - center) / unit (CONDITION_SCALE).

    `thickness_steps` (pixels) makes the versions of every digit by morphology (0 = the digit
    itself, 1 = one pixel thicker, -0.5 = half a pixel thinner): the same digit at known,
    different thicknesses, the ground truth of a thickness edit. A digit's versions stay in
    its split; `max_digits` keeps the first digits of each split only (quick looks, tests).
    `digit_labels(split)`, `measures(split)` (all four measures, in their units)
    and `steps(split)` (the step each image was made with) are there for evaluation.

    What editing asks of attribute data (genlab.analysis.editing): `edit_attributes` (the
    attributes a condition can change), `attribute_values(images, paths)` (measured here, from
    the images) and `condition_of(values)`.
    """

    name = "morpho_digits"

    def __init__(
        self,
        *,
        attributes: Sequence[str] = ("thickness", "slant"),
        thickness_steps: Sequence[float] = (-0.5, 0.0, 1.0, 2.0),
        scale: int = 4,
        max_digits: int | None = None,
        **kwargs: Any,
    ) -> None:
        attributes = list(attributes)
        unknown = [a for a in attributes if a not in MEASURES]
        if not attributes or unknown:
            raise GenlabError(
                f"data.attributes={attributes}: use a non-empty list of {', '.join(MEASURES)}."
            )
        if len(set(attributes)) != len(attributes):
            raise GenlabError(f"data.attributes={attributes} names an attribute twice.")
        steps = [float(s) for s in thickness_steps]
        if not steps or 0.0 not in steps or len(set(steps)) != len(steps):
            raise GenlabError(
                f"data.thickness_steps={list(thickness_steps)}: give distinct steps in pixels, "
                "0 (the digit itself) among them, e.g. [-0.5, 0, 1, 2]."
            )
        if any(s < -1.5 or s > 4 for s in steps):
            raise GenlabError(
                f"data.thickness_steps={steps}: steps beyond [-1.5, 4] pixels erase strokes or "
                "fill the digit's holes; keep them within that range."
            )
        if scale < 1 or scale > 8:
            raise GenlabError(f"data.scale={scale}: use 1 to 8 (4 is Morpho-MNIST's).")
        if max_digits is not None and max_digits < 1:
            raise GenlabError(f"data.max_digits={max_digits}: a positive number, or null (all).")
        kwargs["num_classes"] = len(attributes)
        super().__init__(**kwargs)
        if self.channels != 1:
            raise GenlabError(
                f"data.channels={self.channels}: the digits are measured as grey images; use "
                "data.channels=1."
            )
        self.attr_names = attributes
        self.thickness_steps, self.scale, self.max_digits = steps, scale, max_digits
        self._extra: dict[str, dict[str, torch.Tensor]] = {}

    # --- what editing asks of attribute data ------------------------------------------------
    @property
    def edit_attributes(self) -> tuple[str, ...]:
        return tuple(self.attr_names)

    def attribute_values(self, images: torch.Tensor, paths: Sequence[str] | None = None):
        """The condition's attributes of `images` (N, 1, H, W), measured: (N, K) in their
        units (the file names, `paths`, say nothing here)."""
        cols = [MEASURES.index(a) for a in self.attr_names]
        return measure(images, scale=self.scale)[:, cols]

    def condition_of(self, values: torch.Tensor) -> torch.Tensor:
        """Attribute values (N, K) in their units -> conditions (N, K)."""
        return to_condition(values, self.attr_names)

    def values_of(self, condition: torch.Tensor) -> torch.Tensor:
        return from_condition(condition, self.attr_names)

    # --- splits ---------------------------------------------------------------------------
    def load_splits(self) -> dict[str, Dataset]:
        digit_splits = super().load_splits()
        cols = [MEASURES.index(a) for a in self.attr_names]
        out: dict[str, Dataset] = {}
        s = len(self.thickness_steps)
        for split, data in digit_splits.items():
            images, labels, _ = materialize(data)
            if self.max_digits is not None:  # the first digits of the split (quick looks)
                images, labels = images[: self.max_digits], labels[: self.max_digits]
            variants, values = digit_variants(images, self.thickness_steps, scale=self.scale)
            out[split] = ArrayImages(variants, to_condition(values[:, cols], self.attr_names))
            self._extra[split] = {
                "digit_labels": labels.repeat_interleave(s),
                "measures": values,
                "steps": torch.tensor(self.thickness_steps).repeat(len(images)),
            }
        return out

    def _extras(self, split: str) -> dict[str, torch.Tensor]:
        if not self.splits:
            self.setup()
        return self._extra[split]

    def digit_labels(self, split: str) -> torch.Tensor:
        """The digit class of every image of `split` (N,)."""
        return self._extras(split)["digit_labels"]

    def measures(self, split: str) -> torch.Tensor:
        """All four measures of every image of `split`, in their units (N, 4)."""
        return self._extras(split)["measures"]

    def steps(self, split: str) -> torch.Tensor:
        """The thickness step each image of `split` was made with (N,), pixels."""
        return self._extras(split)["steps"]
