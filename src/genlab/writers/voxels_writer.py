"""Voxel grids: renders from a few views as the preview PNG, a rotating GIF and a `.binvox` file
per shape, and W&B point clouds of the filled voxels.

Shapes are (B, 1, N, N, N) occupancy in [0, 1], indexed [x, y, z] with y up; a voxel counts
as filled at >= THRESHOLD. Renders are first-hit ray casts (genlab.data.voxel_render),
orthographic, Lambert-shaded in one colour on white, from the cameras of PREVIEW_VIEWS
(azimuth, elevation in degrees).
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

from genlab.data.binvox import write_binvox
from genlab.data.modality import Modality
from genlab.data.voxel_render import Projection, cast, rgb

THRESHOLD = 0.5
PREVIEW_VIEWS = ((35.0, 25.0), (125.0, 25.0), (215.0, 60.0))
RENDER_SIZE = 64
GIF_FRAMES = 24
GIF_FRAME_MS = 80
# the files written per batch: a .binvox for each of the first MAX_FILES shapes, a turntable
# GIF for each of the first GIF_SHAPES. A turntable is GIF_FRAMES ray casts, the cost of a
# writer call (at 32^3, 64 shapes: 8 turntables took 3 s of a 5 s call at every validation
# on one CPU core); the preview's renders are computed once per batch (`preview`)
MAX_FILES = 8
GIF_SHAPES = 2
ALBEDO = (0.55, 0.68, 0.9)
DISTANCE = 2.0


def _grids(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().float().cpu()
    return x[:, 0] if x.ndim == 5 else x  # (b, n, n, n)


def renders(
    x: torch.Tensor, views: tuple[tuple[float, float], ...], *, image_size: int = RENDER_SIZE
) -> torch.Tensor:
    """Shaded renders (B, V, 3, H, W) in [0, 1] of shapes x (B, 1, N, N, N) from `views`."""
    g = _grids(x) >= THRESHOLD
    b, v = len(g), len(views)
    cams = torch.tensor([[az, el, DISTANCE] for az, el in views]).repeat(b, 1)  # (b * v, 3)
    out = cast(g.repeat_interleave(v, dim=0), cams, image_size=image_size, projection=Projection())
    albedo = torch.tensor(ALBEDO).expand(b * v, 3)
    return rgb(out, albedo).reshape(b, v, 3, image_size, image_size)


# the last preview: `save` and then the loggers ask for the same batch's (genlab.writers.
# log_media); kept while that tensor lives and is not changed in place (its version)
_last: tuple[weakref.ref, int, int, torch.Tensor] | None = None


def preview(x: torch.Tensor, *, modality: Modality, n_per_row: int = 8) -> torch.Tensor:
    """(B, 1, N, N, N) -> one image (3, H, W): each shape's PREVIEW_VIEWS side by side, the
    shapes in a grid of `n_per_row` per row, 2 px padding."""
    global _last
    if _last is not None and _last[0]() is x and _last[1:3] == (x._version, n_per_row):
        return _last[3].clone()
    r = renders(x, PREVIEW_VIEWS)  # (b, v, 3, h, w)
    tiles = torch.cat(list(r.unbind(1)), dim=-1)  # (b, 3, h, v * w)
    image = make_grid(tiles, nrow=n_per_row, padding=2, pad_value=0.5)
    _last = (weakref.ref(x), x._version, n_per_row, image)
    return image.clone()


def gif_frames(shape: torch.Tensor, *, frames: int = GIF_FRAMES, elevation: float = 25.0):
    """The frames of a turntable of one shape (1, N, N, N): PIL images, azimuth 0 -> 360."""
    views = tuple((360.0 * i / frames, elevation) for i in range(frames))
    r = renders(shape[None], views)[0]  # (frames, 3, h, w)
    pixels = (r.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    return [Image.fromarray(p) for p in pixels]


def save(
    x: torch.Tensor,
    stem: Path,
    *,
    modality: Modality,
    n_per_row: int = 8,
    captions: list[str] | None = None,
) -> list[Path]:
    """`stem.png` (the preview), `stem_<i>.binvox` (the grid at THRESHOLD) for the first
    MAX_FILES shapes and `stem_<i>.gif` (a turntable) for the first GIF_SHAPES."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_suffix(".png")
    save_image(preview(x, modality=modality, n_per_row=n_per_row), png)
    written = [png]
    grids = _grids(x)
    for i, shape in enumerate(grids[:MAX_FILES]):
        if i < GIF_SHAPES:
            gif = stem.with_name(f"{stem.name}_{i}.gif")
            first, *rest = gif_frames(shape[None])
            first.save(gif, save_all=True, append_images=rest, duration=GIF_FRAME_MS, loop=0)
            written.append(gif)
        vox = write_binvox(
            stem.with_name(f"{stem.name}_{i}.binvox"),
            (shape >= THRESHOLD).numpy(),
            translate=(-0.5, -0.5, -0.5),
        )
        written.append(vox)
    return written


def points(shape: torch.Tensor) -> np.ndarray:
    """The filled voxels of one grid (N, N, N) as a W&B point cloud (P, 6): centres in the
    world frame (the cube [-0.5, 0.5]^3, y up) and an RGB colour (0-255) by height."""
    n = shape.shape[-1]
    idx = (shape >= THRESHOLD).nonzero().float()  # (p, 3) as [x, y, z]
    xyz = (idx + 0.5) / n - 0.5
    height = (xyz[:, 1:2] + 0.5).clamp(0, 1)
    colour = torch.cat([80 + 150 * height, 120 + 60 * height, 230 - 120 * height], dim=1)
    return torch.cat([xyz, colour.round()], dim=1).numpy().astype(np.float64)


def media(x: torch.Tensor, *, modality: Modality, captions: list[str] | None = None) -> list[Any]:
    """One wandb.Object3D point cloud of the filled voxels per shape."""
    import wandb

    caps = captions or [None] * len(x)
    return [wandb.Object3D(points(g), caption=caps[i]) for i, g in enumerate(_grids(x))]
