"""Translation pairs derived from single images: the source is computed from the target, on
whole batches, on the device they live on.

A pairing maps targets (B, C, H, W) in [0, 1] to the sources a translation model learns to map
back (`data/pairing=...` on any image dataset):

- `Downsample(factor)`: bicubic, antialiased downsampling (the super-resolution input);
- `Mask(shape=center|rectangles|strokes)`: the target with a hole, plus the hole as one more
  channel (the inpainting input; the last source channel is 1 inside the hole);
- `Edges()`: a fixed Sobel edge map (edges -> image);
- `Greyscale()`: the luma of RGB images (colourisation).

Sources keep the target's channel count (edge and grey maps are repeated over the channels),
except masked sources, which carry the mask as one extra channel.

Randomness (the masks) is counter-based, so there is no RNG state anywhere: an image's draws
are a hash of its own pixels and the pairing's `seed`, plus the training step during training.
An evaluation image therefore gets the same source in any batch, order, device or process
(fixed per image), every training step draws fresh masks, and a resumed run draws exactly the
masks of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from genlab.utils.errors import GenlabError

_M32 = 0xFFFF_FFFF
LUMA = (0.299, 0.587, 0.114)


def mix32(x: Any) -> Any:
    """A 32-bit integer hash (Wang/Mueller finaliser) of ints in [0, 2^32), Python or int64
    tensors alike; every product stays below 2^59, so int64 never overflows."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def image_keys(images: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per image (B,) int64, a hash of its pixels quantised to 8 bits: the same
    image gives the same key on any device, in any batch."""
    b = len(images)
    v = (images.detach().float().reshape(b, -1) * 255).round().long()  # (b, n) in [0, 255]
    w = mix32(torch.arange(v.shape[1], device=images.device) + 0x9E37)  # (n,) in [0, 2^32)
    s = (v * w).sum(1)  # < 2^8 * 2^32 * n: fits int64 for n < 2^23 values
    return mix32((s & _M32) ^ mix32(s >> 32))


def uniform(keys: torch.Tensor, n: int) -> torch.Tensor:
    """`n` uniform numbers in [0, 1) per key: (B,) -> (B, n), a pure function of the keys."""
    c = torch.arange(n, device=keys.device) * 0x9E3779B9  # (n,) distinct counters
    x = (mix32(keys)[:, None] + c[None]) & _M32
    x = mix32(mix32(x))
    return (x >> 8).float() * 2.0**-24  # (b, n), 24 random bits each


def luma(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) grey (ITU-R 601 weights); grey images pass through."""
    if images.shape[1] == 1:
        return images
    w = images.new_tensor(LUMA).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True)


def _range(value: float | Sequence[float], name: str, *, low: float, high: float) -> tuple:
    lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if not low <= lo <= hi <= high:
        raise GenlabError(
            f"data.pairing.{name}={value} must be a number or a [min, max] range within "
            f"[{low}, {high}]."
        )
    return float(lo), float(hi)


class Pairing:
    """Derives the source of a translation pair from its target; see the module doc.

    `pairing(targets, step=None)` gives sources: `step=None` for evaluation (fixed per image),
    the training step for training (fresh per step, reproducible). Subclasses implement
    `derive(targets, keys)`, and say how their sources look (`source_shape`), how to show them
    (`display`), which trivial outputs to compare with (`baselines`) and where the hole is.
    """

    kind = "pairing"
    # built from configs, also from a checkpoint's (genlab.utils.untrusted.check_targets)
    config_object = True

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = int(seed)

    def check(self, image_shape: Sequence[int]) -> None:
        """Raise a GenlabError if this pairing cannot work on images of `image_shape`."""

    def source_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        c, h, w = image_shape
        return (int(c), int(h), int(w))

    def keys(self, targets: torch.Tensor, step: int | None) -> torch.Tensor:
        salt = mix32(self.seed & _M32)
        if step is not None:
            salt = mix32(salt ^ mix32((step + 1) & _M32))
        return mix32(image_keys(targets) ^ salt)

    def derive(self, targets: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, targets: torch.Tensor, *, step: int | None = None) -> torch.Tensor:
        """Sources (B, C_s, H_s, W_s) in [0, 1] for targets (B, C, H, W) in [0, 1]."""
        return self.derive(targets, self.keys(targets, step))

    def hole(self, sources: torch.Tensor) -> torch.Tensor | None:
        """(B, 1, H, W), 1 where the model has to fill in; None when it maps whole images."""
        return None

    def display(self, sources: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
        """Sources as images of `image_shape` (B, C, H, W) in [0, 1], for grids."""
        return fit_image(sources, image_shape)

    def baselines(
        self, sources: torch.Tensor, image_shape: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        """The trivial outputs a model must beat, by name: (B, C, H, W) in [0, 1] each."""
        return {"input": fit_image(sources, image_shape)}

    def source_from_image(
        self, image: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The source for a user's input image (B, C, H, W) in [0, 1], as `translate` expects
        it (the `genlab.translate` CLI); `mask` (B, 1, H, W) is for masked sources."""
        return image

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def fit_image(images: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """Images with the channels (grey <-> RGB) and size (nearest) of `image_shape`."""
    c, h, w = image_shape
    if images.shape[1] != c:
        images = luma(images) if c == 1 else luma(images).expand(-1, c, -1, -1)
    if tuple(images.shape[-2:]) != (h, w):
        images = F.interpolate(images, size=(h, w), mode="nearest")
    return images


class FilePairs(Pairing):
    """Pairs read from files (data=paired): nothing is derived; the source itself is the
    trivial baseline (an output no better than copying the input)."""

    kind = "files"

    def derive(self, targets: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        raise GenlabError(
            "data=paired reads both images of a pair from files; there is nothing to derive, "
            "so no data/pairing can be used with it."
        )


class Downsample(Pairing):
    """Super-resolution: the source is the target downsampled `factor` times with antialiased
    bicubic interpolation (what image libraries call bicubic resizing); the baseline is bicubic
    upsampling of the source."""

    kind = "downsample"

    def __init__(self, *, factor: int = 4, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if factor < 2:
            raise GenlabError(f"data.pairing.factor={factor} must be at least 2.")
        self.factor = int(factor)

    def check(self, image_shape: Sequence[int]) -> None:
        _, h, w = image_shape
        if h % self.factor or w % self.factor:
            raise GenlabError(
                f"data.pairing.factor={self.factor} does not divide the image size {h}x{w}: "
                f"set data.image_size to a multiple of {self.factor}."
            )

    def source_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        c, h, w = image_shape
        return (int(c), int(h) // self.factor, int(w) // self.factor)

    def derive(self, targets: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        h, w = targets.shape[-2:]
        size = (h // self.factor, w // self.factor)
        low = F.interpolate(targets.float(), size=size, mode="bicubic", antialias=True)
        return low.clamp(0.0, 1.0)  # (b, c, h/f, w/f)

    def baselines(
        self, sources: torch.Tensor, image_shape: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        return {"bicubic": upsample_bicubic(sources, image_shape[-2:])}


def upsample_bicubic(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Plain bicubic upsampling to `size`, clamped to [0, 1] (the super-resolution baseline)."""
    up = F.interpolate(images.float(), size=tuple(size), mode="bicubic", align_corners=False)
    return up.clamp(0.0, 1.0)


class Mask(Pairing):
    """Inpainting: the target with a hole (filled with `fill`), the hole (1 inside) appended as
    the last channel: sources have C + 1 channels.

    `shape`:
    - `center`: a centred square (rectangle for non-square images) of side `size` x the image
      side, the context encoder's mask (Pathak et al. 2016); the same for every image;
    - `rectangles`: `count` axis-aligned rectangles ([min, max], uniform), sides `size` x the
      image side ([min, max] each, uniform), placed uniformly inside the image;
    - `strokes`: free-form brush strokes (as in Yu et al. 2019): `count` strokes, each a
      polyline of `vertices` points whose segments have `length` x the image side and turn by
      up to `max_turn` radians, drawn `width` x the image side wide.
    """

    kind = "mask"
    SHAPES = ("center", "rectangles", "strokes")

    def __init__(
        self,
        *,
        shape: str = "center",
        size: float | Sequence[float] = 0.5,
        count: int | Sequence[int] = (1, 3),
        vertices: int | Sequence[int] = (3, 6),
        length: float | Sequence[float] = (0.15, 0.35),
        width: float | Sequence[float] = (0.08, 0.16),
        max_turn: float = 1.5,
        fill: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if shape not in self.SHAPES:
            raise GenlabError(f"data.pairing.shape={shape!r}: use one of {self.SHAPES}.")
        self.shape = shape
        self.size = _range(size, "size", low=0.0, high=1.0)
        if shape == "center" and self.size[0] != self.size[1]:
            raise GenlabError(
                f"data.pairing.size={size}: the center mask has one size (a fraction of the "
                "image side), not a range."
            )
        self.count = tuple(int(v) for v in _range(count, "count", low=1, high=64))
        self.vertices = tuple(int(v) for v in _range(vertices, "vertices", low=2, high=64))
        self.length = _range(length, "length", low=0.0, high=2.0)
        self.width = _range(width, "width", low=0.0, high=1.0)
        self.max_turn, self.fill = float(max_turn), float(fill)

    def source_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        c, h, w = image_shape
        return (int(c) + 1, int(h), int(w))

    # --- the masks --------------------------------------------------------------------------
    def masks(self, keys: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, 1, H, W) float masks, 1 inside the hole, one per key."""
        if self.shape == "center":
            return self._center(len(keys), height, width, keys.device)
        if self.shape == "rectangles":
            boxes, active = self.rectangles(keys, height, width)
            return boxes_to_mask(boxes, active, height, width)
        points, active, radius = self.strokes(keys, height, width)
        return strokes_to_mask(points, active, radius, height, width)

    def _center(self, b: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        side_h, side_w = max(1, round(self.size[0] * height)), max(1, round(self.size[0] * width))
        top, left = (height - side_h) // 2, (width - side_w) // 2
        m = torch.zeros(b, 1, height, width, device=device)
        m[:, :, top : top + side_h, left : left + side_w] = 1.0
        return m

    def rectangles(
        self, keys: torch.Tensor, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (B, K, 4) as (top, left, h, w) in pixels and which are used (B, K) bool."""
        k_max = self.count[1]
        u = uniform(keys, 1 + 4 * k_max)  # (b, 1 + 4k)
        n = self.count[0] + (u[:, 0] * (self.count[1] - self.count[0] + 1)).long()  # (b,)
        active = torch.arange(k_max, device=keys.device)[None] < n[:, None]  # (b, k)
        u = u[:, 1:].view(-1, k_max, 4)
        lo, hi = self.size
        sides = []
        for j, extent in ((0, height), (1, width)):
            side = ((lo + u[..., j] * (hi - lo)) * extent).round().clamp(1, extent)
            sides.append(side)
        h, w = sides
        top = (u[..., 2] * (height - h + 1)).floor().clamp(max=height - h)
        left = (u[..., 3] * (width - w + 1)).floor().clamp(max=width - w)
        return torch.stack([top, left, h, w], -1).long(), active  # (b, k, 4), (b, k)

    def strokes(
        self, keys: torch.Tensor, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stroke polylines: points (B, K, V, 2) as (row, col) in pixels, which segments are
        drawn (B, K, V - 1) bool, and each stroke's half width (B, K) in pixels."""
        k_max, v_max = self.count[1], self.vertices[1]
        u = uniform(keys, 2 + k_max * (4 + 2 * v_max))  # (b, ...)
        n = self.count[0] + (u[:, 0] * (self.count[1] - self.count[0] + 1)).long()  # (b,)
        u = u[:, 2:].view(-1, k_max, 4 + 2 * v_max)
        b = len(keys)
        extent = float(min(height, width))
        start = torch.stack([u[..., 0] * height, u[..., 1] * width], -1)  # (b, k, 2)
        n_vert = (
            self.vertices[0] + (u[..., 2] * (self.vertices[1] - self.vertices[0] + 1)).long()
        )  # (b, k)
        radius = (self.width[0] + u[..., 3] * (self.width[1] - self.width[0])) * extent / 2
        turns = (u[..., 4 : 4 + v_max] * 2 - 1) * self.max_turn  # (b, k, v)
        heading = u[..., 4:5] * 2 * math.pi + turns.cumsum(-1)
        lengths = (
            self.length[0] + u[..., 4 + v_max :] * (self.length[1] - self.length[0])
        ) * extent  # (b, k, v)
        steps = torch.stack([heading.sin(), heading.cos()], -1) * lengths[..., None]
        points = start[:, :, None] + torch.cat(
            [torch.zeros_like(steps[:, :, :1]), steps[:, :, :-1].cumsum(2)], 2
        )  # (b, k, v, 2)
        bounds = points.new_tensor([height, width])
        points = torch.minimum(points.clamp(min=0.0), bounds)  # strokes stay on the image
        seg = torch.arange(v_max - 1, device=keys.device)
        stroke = torch.arange(k_max, device=keys.device)
        active = (seg[None, None] < (n_vert - 1)[..., None]) & (
            stroke[None, :, None] < n[:, None, None]
        )  # (b, k, v - 1)
        assert points.shape == (b, k_max, v_max, 2)
        return points, active, radius

    # --- the pairing ------------------------------------------------------------------------
    def derive(self, targets: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        h, w = targets.shape[-2:]
        m = self.masks(keys, h, w).to(targets.dtype)  # (b, 1, h, w)
        holed = targets * (1 - m) + self.fill * m
        return torch.cat([holed, m], 1)  # (b, c + 1, h, w)

    def hole(self, sources: torch.Tensor) -> torch.Tensor | None:
        return sources[:, -1:]

    def display(self, sources: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
        m = sources[:, -1:]
        return fit_image(sources[:, :-1] * (1 - m) + 0.5 * m, image_shape)  # grey hole

    def baselines(
        self, sources: torch.Tensor, image_shape: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        image, m = sources[:, :-1], sources[:, -1:]
        return {"mean_fill": mean_fill(image, m), "blur_fill": diffusion_fill(image, m)}

    def source_from_image(
        self, image: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if mask is None:
            raise GenlabError(
                "this model inpaints: give each input image a mask (white = hole) with the same "
                "file name in mask_dir=DIR, or use mode=derive to draw masks as in training."
            )
        m = (mask > 0.5).to(image.dtype)
        return torch.cat([image * (1 - m) + self.fill * m, m], 1)


def boxes_to_mask(
    boxes: torch.Tensor, active: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Union of boxes (B, K, 4: top, left, h, w) where `active` (B, K): (B, 1, H, W) float."""
    rows = torch.arange(height, device=boxes.device)[None, None]  # (1, 1, h)
    cols = torch.arange(width, device=boxes.device)[None, None]
    top, left, h, w = boxes.unbind(-1)  # (b, k) each
    in_rows = (rows >= top[..., None]) & (rows < (top + h)[..., None])  # (b, k, h)
    in_cols = (cols >= left[..., None]) & (cols < (left + w)[..., None])  # (b, k, w)
    inside = in_rows[..., :, None] & in_cols[..., None, :] & active[..., None, None]
    return inside.any(1, keepdim=True).float()  # (b, 1, h, w)


def strokes_to_mask(
    points: torch.Tensor, active: torch.Tensor, radius: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Pixels whose centre lies within `radius` of a drawn segment: (B, 1, H, W) float.

    One pass per segment index (K x (V - 1) of them, not per image), so memory stays at one
    (B, H, W) map whatever the number of strokes.
    """
    b, k, v, _ = points.shape
    rr = torch.arange(height, device=points.device, dtype=points.dtype) + 0.5
    cc = torch.arange(width, device=points.device, dtype=points.dtype) + 0.5
    pix = torch.stack(torch.meshgrid(rr, cc, indexing="ij"), -1)  # (h, w, 2)
    mask = torch.zeros(b, height, width, dtype=torch.bool, device=points.device)
    for s in range(k):
        for t in range(v - 1):
            a, e = points[:, s, t], points[:, s, t + 1]  # (b, 2)
            ab = e - a
            ap = pix[None] - a[:, None, None]  # (b, h, w, 2)
            frac = (ap * ab[:, None, None]).sum(-1) / ab.pow(2).sum(-1).clamp_min(1e-9)[
                :, None, None
            ]
            near = a[:, None, None] + frac.clamp(0, 1)[..., None] * ab[:, None, None]
            dist = (pix[None] - near).norm(dim=-1)  # (b, h, w)
            drawn = active[:, s, t][:, None, None]
            mask |= drawn & (dist <= radius[:, s][:, None, None])
    return mask[:, None].float()


def mean_fill(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Fill the hole with the mean of each image's known pixels, per channel."""
    known = 1 - hole
    mean = (image * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
    return image * known + mean * hole


def diffusion_fill(image: torch.Tensor, hole: torch.Tensor, iterations: int | None = None):
    """Fill the hole by diffusion from its border: starting from the mean fill, repeatedly
    replace hole pixels by the average of their 3x3 neighbourhood (max(H, W) times, enough to
    cross any hole), known pixels held fixed. A blur fill, the classic non-learned inpainting.
    """
    x = mean_fill(image, hole)
    known = image * (1 - hole)
    for _ in range(iterations or max(image.shape[-2:])):
        smooth = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        x = known + smooth * hole
    return x


class Edges(Pairing):
    """Edges -> image: the Sobel gradient magnitude of the target's luma (a fixed filter; a
    unit step gives 1), clamped to [0, 1], binarised at `threshold` when given; repeated over
    the target's channels. Image borders are replicated, so they make no edges."""

    kind = "edges"

    def __init__(self, *, threshold: float | None = 0.25, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise GenlabError(f"data.pairing.threshold={threshold} must be in (0, 1) or null.")
        self.threshold = threshold

    def derive(self, targets: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return sobel_edges(targets, self.threshold).expand(-1, targets.shape[1], -1, -1)

    def source_from_image(
        self, image: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return luma(image).expand(-1, image.shape[1], -1, -1)


def sobel_edges(images: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B, 1, H, W) Sobel magnitude of the luma, in [0, 1]."""
    grey = F.pad(luma(images.float()), (1, 1, 1, 1), mode="replicate")
    kx = grey.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4
    kernels = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    g = F.conv2d(grey, kernels)  # (b, 2, h, w)
    mag = g.pow(2).sum(1, keepdim=True).sqrt().clamp(0.0, 1.0)
    return (mag > threshold).float() if threshold is not None else mag


class Greyscale(Pairing):
    """Colourisation: the source is the target's luma, repeated over its 3 channels (a grey
    RGB image); RGB data only."""

    kind = "greyscale"

    def check(self, image_shape: Sequence[int]) -> None:
        if image_shape[0] != 3:
            raise GenlabError(
                f"data/pairing=greyscale (colourisation) needs RGB images, but data.channels="
                f"{image_shape[0]}: use an RGB dataset (cifar10, celeba, image_folder) with "
                "data.channels=3."
            )

    def derive(self, targets: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return luma(targets.float()).expand(-1, targets.shape[1], -1, -1)

    def source_from_image(
        self, image: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return luma(image).expand(-1, 3, -1, -1)
