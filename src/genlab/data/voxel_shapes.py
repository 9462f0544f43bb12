"""Voxel shapes with rendered views: the procedural shape set (offline) and ShapeNet-style
folders of `.binvox` files with rendered images.

Every batch is `(x, y)`: x the voxel grids (B, 1, N, N, N), floats in {0, 1}, indexed
[x, y, z] with y up (genlab.data.binvox); y by `condition`:

- `class`: the category index (B,) (the shape prior's data; one item per shape);
- `sketch`: the 2.5D sketch (B, 2, H, W) of one view: depth mapped to [0, 1] over the cube's
  depth range (1 off the shape) and the silhouette (genlab.data.voxel_render.sketch); one item
  per (shape, view);
- `rgb`: the shaded colour render (B, 3, H, W) of one view, white background.

Splits are by shape: all views of a shape are in the same split (`split_seed` permutes the
shapes; `test_fraction` and `val_fraction` of them are held out). `item_cameras(split)` gives
the camera (azimuth, elevation, distance) of every item, in item order, and `projection` how
the cameras project, for baselines such as the visual hull.

The ShapeNet-style layout (`ShapeNetVoxels`, docs/3d.md):

    ROOT/<category>/<shape_id>/model.binvox          the voxel grid (dim = size * k)
    ROOT/<category>/<shape_id>/views/cameras.json    the camera of each view
    ROOT/<category>/<shape_id>/views/<image>         one rendered image per view

with `cameras.json` a JSON object:

    {"projection": "perspective", "fov": 40,
     "views": [{"image": "00.png", "azimuth": 30.0, "elevation": 20.0, "distance": 2.0}, ...]}

angles in degrees, distance in units of the voxel cube's side (the cube is centred on the
origin, y up, as genlab.data.voxel_render says); `projection` is `orthographic` (then
`view_size`, default sqrt(3), the world width of the image) or `perspective` (then `fov`, the
full field of view in degrees). The sketch of a view is ray cast from the voxels with that
camera; its image is the `rgb` condition.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from genlab.data import procedural_shapes as procedural
from genlab.data import voxel_render as render
from genlab.data.binvox import DEFAULT_MAX_DIM, read_binvox
from genlab.data.datamodules import SampleDataModule
from genlab.data.modality import Condition, Modality, voxels
from genlab.data.untrusted_files import (
    DEFAULT_MAX_IMAGE_PIXELS,
    check_link,
    check_links_option,
    check_max_pixels,
    eight_bit,
    open_image,
    reason,
)
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

CONDITIONS = ("class", "sketch", "rgb")
RENDER_VERSION = 1
MAX_CAMERAS_BYTES = 1 << 20
MAX_VIEWS = 1000


def pack(grids: torch.Tensor) -> torch.Tensor:
    """uint8 {0, 1} grids (S, N, N, N) -> bits (S, N, N, ceil(N / 8)) (8x less memory)."""
    return torch.from_numpy(np.packbits(grids.numpy().astype(bool), axis=-1))


def unpack(bits: torch.Tensor, size: int) -> torch.Tensor:
    """bits (..., N, N, ceil(N / 8)) -> float grids (..., N, N, N) in {0, 1}."""
    out = np.unpackbits(bits.numpy(), axis=-1, count=size)
    return torch.from_numpy(out).float()


def check_condition(condition: str) -> str:
    if condition not in CONDITIONS:
        raise GenlabError(
            f"data.condition={condition!r}: use class (the category), sketch (depth and "
            "silhouette of one view) or rgb (a shaded render of one view)."
        )
    return condition


def check_power_of_two(value: int, option: str, low: int = 8, high: int = 256) -> int:
    if not (isinstance(value, int) and low <= value <= high and value & (value - 1) == 0):
        raise GenlabError(
            f"{option}={value!r}: use a power of two from {low} to {high} (the 3D and 2D nets "
            "halve and double it)."
        )
    return value


class ShapeItems(Dataset):
    """The items of one split: `shapes` (indices into the source) and, for view conditions,
    every view of each. `source.item(shape, view)` makes the (x, y) pair."""

    def __init__(self, source: Any, shapes: torch.Tensor, *, per_view: bool) -> None:
        self.source = source
        pairs = []
        for s in shapes.tolist():
            views = range(source.views_of(s)) if per_view else (None,)
            pairs += [(s, v) for v in views]
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        return self.source.item(*self.pairs[i])

    def cameras(self) -> torch.Tensor:
        """(len, 3) the camera of each item (NaN for per-shape items)."""
        return torch.stack([self.source.camera(s, v) for s, v in self.pairs]).reshape(-1, 3)

    def labels(self) -> torch.Tensor:
        return torch.tensor([int(self.source.labels[s]) for s, _ in self.pairs], dtype=torch.long)


class VoxelDataModule(SampleDataModule):
    """What both voxel datamodules share: sizes, the condition, class names, split by shape."""

    name = "voxels"

    def __init__(
        self,
        *,
        size: int = 32,
        image_size: int = 64,
        condition: str = "class",
        test_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.size = check_power_of_two(size, "data.size")
        self.image_size = check_power_of_two(image_size, "data.image_size")
        self.condition_kind = check_condition(condition)
        if not 0.0 <= test_fraction < 1.0 or self.val_fraction + test_fraction >= 1.0:
            raise GenlabError(
                f"data.test_fraction={test_fraction} and data.val_fraction={self.val_fraction} "
                "must each be in [0, 1) and leave shapes for training."
            )
        self.test_fraction = test_fraction
        self.classes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def modality(self) -> Modality:
        return voxels(self.size)

    @property
    def condition(self) -> Condition:
        h = self.image_size
        if self.condition_kind == "class":
            return Condition("class", (), self.num_classes, names=self.classes)
        if self.condition_kind == "sketch":
            return Condition("image", (2, h, h), names=("depth", "silhouette"))
        return Condition("image", (3, h, h))

    def split_shapes(self, n: int) -> dict[str, torch.Tensor]:
        """Shape indices of each split: a `split_seed` permutation, test then val held out."""
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_test, n_val = round(n * self.test_fraction), round(n * self.val_fraction)
        parts = {
            "test": perm[:n_test],
            "val": perm[n_test : n_test + n_val],
            "train": perm[n_test + n_val :],
        }
        if len(parts["train"]) == 0:
            raise GenlabError(f"{self.name}: {n} shapes leave none for training.")
        return {k: v.sort().values for k, v in parts.items()}

    def make_items(self, source: Any, n: int) -> dict[str, Dataset]:
        per_view = self.condition_kind != "class"
        return {
            k: ShapeItems(source, idx, per_view=per_view)
            for k, idx in self.split_shapes(n).items()
        }

    def item_cameras(self, split: str) -> torch.Tensor:
        """The camera (azimuth, elevation, distance) of each item of `split`, (M, 3)."""
        return self.dataset(split).cameras()  # type: ignore[attr-defined]

    def arrays(self, split: str, limit: int | None = None) -> dict[str, torch.Tensor]:
        """The first `limit` items of `split` stacked: x, y, cameras, labels (for evaluation)."""
        data = self.dataset(split)
        n = len(data) if limit is None else min(limit, len(data))  # type: ignore[arg-type]
        items = [data[i] for i in range(n)]
        return {
            "x": torch.stack([x for x, _ in items]),
            "y": torch.stack([torch.as_tensor(y) for _, y in items]),
            "cameras": self.item_cameras(split)[:n],
            "labels": data.labels()[:n],  # type: ignore[attr-defined]
        }


# --- the procedural shape set -----------------------------------------------------------------
def encode_views(
    out: dict[str, torch.Tensor], cameras: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray-cast views (voxel_render.cast) as stored: depth (V, H, W) float16 in [0, 1] (1 off
    the shape) and shade (V, H, W) uint8 (0 off the shape, 1 + 254 * shade on it)."""
    depth = render.sketch(out, cameras)[:, 0].half()
    shade = torch.where(out["silhouette"], 1 + (out["shade"] * 254).round(), 0).to(torch.uint8)
    return depth, shade


class ProceduralSource:
    """Generated shapes; their views rendered on request (and kept), or precomputed."""

    def __init__(self, dm: ProceduralShapes, renders: dict[str, torch.Tensor] | None) -> None:
        self.size, self.condition = dm.size, dm.condition_kind
        self.image_size, self.projection = dm.image_size, dm.projection
        grids, self.labels = procedural.generate(
            dm.classes, dm.shapes_per_category, size=dm.size, seed=dm.seed
        )
        self.bits = pack(grids)
        self.cameras = dm.cameras()  # (s, k, 3)
        self.albedo = procedural.colours(dm.classes, dm.shapes_per_category, seed=dm.seed)
        self.renders = renders
        self.k = dm.views_per_shape
        self.rendered: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def views_of(self, shape: int) -> int:
        return self.k

    def camera(self, shape: int, view: int | None) -> torch.Tensor:
        if view is None:
            return torch.full((3,), math.nan)
        return self.cameras[shape, view]

    def view(self, shape: int, view: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(depth, shade) of one view as `encode_views` stores them."""
        if self.renders is not None:
            at = shape * self.k + view
            return self.renders["depth"][at], self.renders["shade"][at]
        if (shape, view) not in self.rendered:
            x = unpack(self.bits[shape], self.size)[None]
            cam = self.cameras[shape, view][None]
            out = render.cast(x, cam, image_size=self.image_size, projection=self.projection)
            depth, shade = encode_views(out, cam)
            self.rendered[shape, view] = (depth[0], shade[0])
        return self.rendered[shape, view]

    def item(self, shape: int, view: int | None) -> tuple[torch.Tensor, Any]:
        x = unpack(self.bits[shape], self.size)[None]  # (1, n, n, n)
        if view is None:
            return x, self.labels[shape]
        depth, shade = self.view(shape, view)
        hit = shade > 0
        if self.condition == "sketch":
            return x, torch.stack([depth.float(), hit.float()])
        colour = (shade.float() - 1).clamp(min=0) / 254 * self.albedo[shape][:, None, None]
        return x, torch.where(hit, colour, 1.0)


class ProceduralShapes(VoxelDataModule):
    """Procedural shapes (genlab.data.procedural_shapes) at `size`^3, `shapes_per_category` of
    each of `categories`, each seen by `views_per_shape` random cameras (azimuth uniform in
    [0, 360), elevation uniform in `elevation`, at `distance`), rendered at `image_size`^2 by
    first-hit ray casting (genlab.data.voxel_render). Shapes, cameras and colours follow from
    `seed`. A view is rendered when an item first asks for it and kept in memory (in each
    DataLoader worker); with `cache=true` every view is rendered before training instead and
    kept under `data_dir/procedural_shapes/`, keyed by every option that shapes them, for the
    next runs. Both give the same values.
    """

    name = "voxel_shapes"

    def __init__(
        self,
        *,
        categories: Sequence[str] = procedural.CATEGORIES,
        shapes_per_category: int = 250,
        views_per_shape: int = 4,
        projection: str = "orthographic",
        view_size: float = math.sqrt(3),
        fov: float = 40.0,
        distance: float = 2.0,
        elevation: Sequence[float] = (0.0, 40.0),
        seed: int = 0,
        cache: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.classes = tuple(procedural.check_categories(list(categories)))
        if shapes_per_category < 1 or not 1 <= views_per_shape <= MAX_VIEWS:
            raise GenlabError(
                f"data.shapes_per_category={shapes_per_category} must be >= 1 and "
                f"data.views_per_shape={views_per_shape} in 1..{MAX_VIEWS}."
            )
        self.shapes_per_category, self.views_per_shape = shapes_per_category, views_per_shape
        self.projection = render.Projection(kind=projection, view_size=view_size, fov=fov)
        lo, hi = (float(e) for e in elevation)
        if not -89.9 < lo <= hi < 89.9:
            raise GenlabError(
                f"data.elevation={[lo, hi]}: a range [low, high] inside (-89.9, 89.9) degrees."
            )
        self.projection.check_frames_cube(distance, "data.distance / data.fov")
        self.distance, self.elevation, self.seed, self.cache = distance, (lo, hi), seed, cache
        self._source: ProceduralSource | None = None

    def cameras(self) -> torch.Tensor:
        """(S, views_per_shape, 3): every shape's cameras, in `generate` order."""
        return procedural.view_cameras(
            self.classes,
            self.shapes_per_category,
            self.views_per_shape,
            seed=self.seed,
            elevation=self.elevation,
            distance=self.distance,
        )

    def render_key(self) -> dict[str, Any]:
        """Everything the renders depend on (the cache folder is named by its hash)."""
        p = self.projection
        return {
            "version": RENDER_VERSION,
            "size": self.size,
            "image_size": self.image_size,
            "categories": list(self.classes),
            "shapes_per_category": self.shapes_per_category,
            "views_per_shape": self.views_per_shape,
            "projection": [p.kind, p.view_size, p.fov, list(p.light), p.ambient],
            "distance": self.distance,
            "elevation": list(self.elevation),
            "seed": self.seed,
        }

    def render_all(self, grids: torch.Tensor, cameras: torch.Tensor) -> dict[str, torch.Tensor]:
        """Depth (V, H, W) float16 in [0, 1] and shade (V, H, W) uint8 of every view."""
        k = self.views_per_shape
        depth, shade = [], []
        started = time.monotonic()
        step = 64
        for s in range(0, len(grids), step):
            g = grids[s : s + step].repeat_interleave(k, dim=0)
            cams = cameras[s : s + step].reshape(-1, 3)
            out = render.cast(g, cams, image_size=self.image_size, projection=self.projection)
            d, sh = encode_views(out, cams)
            depth.append(d)
            shade.append(sh)
        log.info(
            "%s: rendered %d views in %.1f s",
            self.name,
            len(grids) * k,
            time.monotonic() - started,
        )
        return {"depth": torch.cat(depth), "shade": torch.cat(shade)}

    def renders(self) -> dict[str, torch.Tensor]:
        """Every view's render, from the cache when it holds them, else computed (and cached
        with `cache=true`)."""
        key = self.render_key()
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        folder = Path(self.data_dir) / "procedural_shapes" / f"renders-{digest}"
        n_views = len(self.classes) * self.shapes_per_category * self.views_per_shape
        shape = (n_views, self.image_size, self.image_size)
        if self.cache:
            found = _load_renders(folder, key, shape)
            if found is not None:
                return found
        grids, _ = procedural.generate(
            self.classes, self.shapes_per_category, size=self.size, seed=self.seed
        )
        out = self.render_all(grids.float(), self.cameras())
        if self.cache:
            _save_renders(folder, key, out)
        return out

    def source(self) -> ProceduralSource:
        if self._source is None:
            renders = self.renders() if self.condition_kind != "class" and self.cache else None
            self._source = ProceduralSource(self, renders)
        return self._source

    def prepare_data(self) -> None:
        if self.condition_kind != "class" and self.cache:
            self.renders()  # once per machine: the cache, before other processes read it

    def load_splits(self) -> dict[str, Dataset]:
        source = self.source()
        return self.make_items(source, len(source.labels))


def _load_renders(
    folder: Path, key: dict[str, Any], shape: tuple[int, int, int]
) -> dict[str, torch.Tensor] | None:
    """The cached renders, or None when absent or not as expected (then they are rebuilt)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text()[:100_000])
        if manifest != key:
            return None
        out = {}
        for name, dtype in (("depth", np.float16), ("shade", np.uint8)):
            arr = np.load(folder / f"{name}.npy", allow_pickle=False, mmap_mode="r")
            if arr.shape != shape or arr.dtype != dtype:
                return None
            out[name] = torch.from_numpy(np.array(arr))
        return out
    except (OSError, ValueError):
        return None


def _save_renders(folder: Path, key: dict[str, Any], renders: dict[str, torch.Tensor]) -> None:
    """Write the cache under a temporary name and rename it when complete; a folder that
    cannot be written is only a warning (the renders are in memory)."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for name, value in renders.items():
            np.save(tmp / f"{name}.npy", value.numpy(), allow_pickle=False)
        (tmp / "manifest.json").write_text(json.dumps(key, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except OSError as exc:
        log.warning("the renders could not be cached in %s (%s): kept in memory", folder, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- ShapeNet-style folders -------------------------------------------------------------------
def _number(view: dict, key: str, where: str, default: float | None = None) -> float:
    value = view.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GenlabError(f"{where}: '{key}' must be a finite number, not {value!r}.")
    return float(value)


def read_cameras(path: Path, views_dir: Path) -> tuple[render.Projection, list[dict]]:
    """A cameras file (module docstring) -> its projection and views [{image, camera}], each
    image a regular file inside `views_dir`; a GenlabError naming the file otherwise."""
    where = f"the cameras file {path}"
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise GenlabError(f"{where} is not a regular file.")
            raw = f.read(MAX_CAMERAS_BYTES + 1)
    except OSError as exc:
        raise GenlabError(f"{where} cannot be read ({exc.strerror or exc}).") from None
    if len(raw) > MAX_CAMERAS_BYTES:
        raise GenlabError(
            f"{where} is larger than {MAX_CAMERAS_BYTES:,} bytes: not a cameras file."
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GenlabError(
            f"{where} is not valid JSON ({type(exc).__name__}): write it as docs/3d.md shows."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("views"), list):
        raise GenlabError(f"{where} must be a JSON object with a list 'views' (docs/3d.md).")
    kind = data.get("projection", "orthographic")
    if kind not in render.PROJECTIONS:
        raise GenlabError(f"{where}: 'projection' is {kind!r}: use orthographic or perspective.")
    projection = render.Projection(
        kind=kind,
        view_size=_number(data, "view_size", where, math.sqrt(3)),
        fov=_number(data, "fov", where, 40.0),
    )
    views = data["views"]
    if not 1 <= len(views) <= MAX_VIEWS:
        raise GenlabError(f"{where}: {len(views)} views; give 1 to {MAX_VIEWS}.")
    out = []
    for i, view in enumerate(views):
        at = f"{where}, view {i}"
        if not isinstance(view, dict) or not isinstance(view.get("image"), str):
            raise GenlabError(f"{at}: each view is an object with an 'image' file name.")
        name = view["image"]
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise GenlabError(f"{at}: 'image' must be a file name in {views_dir}, not {name!r}.")
        camera = [_number(view, k, at) for k in ("azimuth", "elevation", "distance")]
        out.append({"image": views_dir / name, "camera": torch.tensor(camera)})
    cams = torch.stack([v["camera"] for v in out])
    render.check_cameras(cams, projection, where)
    return projection, out


class ShapeNetSource:
    """Shapes read from `.binvox` files (held as bits), views from cameras files; the sketch of
    a view is ray cast on request, its image decoded on request."""

    def __init__(self, dm: ShapeNetVoxels, shapes: list[dict], labels: torch.Tensor) -> None:
        self.size, self.image_size, self.condition = dm.size, dm.image_size, dm.condition_kind
        self.max_pixels = dm.max_image_pixels
        self.shapes, self.labels = shapes, labels

    def views_of(self, shape: int) -> int:
        return len(self.shapes[shape]["views"])

    def camera(self, shape: int, view: int | None) -> torch.Tensor:
        if view is None:
            return torch.full((3,), math.nan)
        return self.shapes[shape]["views"][view]["camera"]

    def item(self, shape: int, view: int | None) -> tuple[torch.Tensor, Any]:
        info = self.shapes[shape]
        x = unpack(info["bits"], self.size)[None]
        if view is None:
            return x, self.labels[shape]
        if self.condition == "sketch":
            cam = self.camera(shape, view)[None]
            out = render.cast(x, cam, image_size=self.image_size, projection=info["projection"])
            return x, render.sketch(out, cam)[0]
        return x, self.image(info["views"][view]["image"])

    def image(self, path: Path) -> torch.Tensor:
        """An image file -> (3, H, W) in [0, 1], transparent pixels on white."""
        try:
            with open_image(
                str(path), max_pixels=self.max_pixels, option="data.max_image_pixels"
            ) as im:
                im.load()
                im = eight_bit(im)
                if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                    im = im.convert("RGBA")
                    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(white, im)
                im = im.convert("RGB")
        except Exception as exc:  # refused, truncated, damaged...
            raise GenlabError(
                f"the view image {path} cannot be read ({reason(exc)}): replace or remove it "
                "(and its entry in cameras.json)."
            ) from None
        x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float()[None] / 255
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True
            )
        return x[0].clamp(0, 1)


class ShapeNetVoxels(VoxelDataModule):
    """ShapeNet-style folders (module docstring): `root/<category>/<shape>/model.binvox` and
    `views/cameras.json` with one image per view. Categories are the folders of `root`
    (sorted; or `categories` to choose and order them). Grids larger than `size` are reduced
    by an integer factor (a voxel is filled when any voxel it covers is). Every file is
    untrusted: voxel grids above `max_voxel_dim`, images above `max_image_pixels` and links out
    of `root` (unless `outside_links=follow`) are refused; every voxel and cameras file is
    read and checked before training, and every problem is reported at once."""

    name = "shapenet_voxels"

    def __init__(
        self,
        *,
        root: str,
        categories: Sequence[str] | None = None,
        voxel_file: str = "model.binvox",
        views_dir: str = "views",
        max_voxel_dim: int = DEFAULT_MAX_DIM,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        outside_links: str = "error",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = str(root)
        self.wanted = None if categories is None else [str(c) for c in categories]
        self.voxel_file, self.views_dir = voxel_file, views_dir
        self.max_voxel_dim = int(max_voxel_dim)
        self.max_image_pixels = check_max_pixels(max_image_pixels, "data.max_image_pixels")
        self.outside_links = check_links_option(outside_links, "data.outside_links")
        self.projection = render.Projection()
        self._source: ShapeNetSource | None = None

    def _folders(self, path: str) -> list[str]:
        real = os.path.realpath(self.root)
        out = []
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                check_link(
                    entry.path, real, outside_links=self.outside_links, option="data.outside_links"
                )
            if entry.is_dir():
                out.append(entry.name)
        return out

    def scan(self) -> ShapeNetSource:
        """Read and check every voxel and cameras file (all problems reported together)."""
        if self._source is not None:
            return self._source
        root = Path(self.root)
        if not root.is_dir():
            raise GenlabError(
                f"data.root={self.root!r} is not a folder. Put ShapeNet-style voxel folders "
                "there (root/<category>/<shape>/model.binvox, docs/3d.md) or use "
                "data=voxel_shapes for the procedural shapes."
            )
        found = self._folders(self.root)
        categories = found if self.wanted is None else self.wanted
        missing = [c for c in categories if c not in found]
        if missing or not categories:
            raise GenlabError(
                f"data.categories: {missing or 'none'} not found as folders of {self.root} "
                f"(it has {found[:20]})."
            )
        self.classes = tuple(categories)
        shapes, labels, problems = [], [], []
        real = os.path.realpath(self.root)
        for label, category in enumerate(categories):
            for shape_id in self._folders(str(root / category)):
                folder = root / category / shape_id
                try:
                    shapes.append(self._read_shape(folder, real))
                    labels.append(label)
                except GenlabError as exc:
                    problems.append(str(exc))
        if problems:
            shown = "\n  ".join(problems[:8])
            more = f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else ""
            raise GenlabError(
                f"{self.name} (data.root={self.root!r}): {len(problems)} shape(s) cannot be "
                f"used:\n  {shown}{more}"
            )
        if not shapes:
            raise GenlabError(f"data.root={self.root!r} holds no shapes under {categories}.")
        if self.condition_kind != "class":
            self.projection = shapes[0]["projection"]
            other = [s for s in shapes if s["projection"] != self.projection]
            if other:
                raise GenlabError(
                    f"{other[0]['cameras']} has another projection ({other[0]['projection']}) "
                    f"than {shapes[0]['cameras']} ({self.projection}): every view of a dataset "
                    "is seen through the same projection; render them alike."
                )
        self._source = ShapeNetSource(self, shapes, torch.tensor(labels, dtype=torch.long))
        return self._source

    def _read_shape(self, folder: Path, real_root: str) -> dict:
        path = folder / self.voxel_file
        if path.is_symlink():
            check_link(
                str(path), real_root, outside_links=self.outside_links, option="data.outside_links"
            )
        if not path.is_file():
            raise GenlabError(f"{folder} has no {self.voxel_file}.")
        grid = read_binvox(path, max_dim=self.max_voxel_dim)
        if grid.dim % self.size:
            raise GenlabError(
                f"the voxel file {path} is {grid.dim}^3, not a multiple of data.size={self.size}:"
                " set data.size to a divisor of it."
            )
        g = torch.from_numpy(grid.voxels)
        if grid.dim != self.size:
            f = grid.dim // self.size
            g = F.max_pool3d(g[None, None].float(), f)[0, 0] > 0
        info: dict[str, Any] = {"bits": pack(g.to(torch.uint8)[None])[0], "views": []}
        info["projection"] = render.Projection()
        if self.condition_kind != "class":
            views = folder / self.views_dir
            info["cameras"] = views / "cameras.json"
            info["projection"], info["views"] = read_cameras(info["cameras"], views)
            for view in info["views"]:
                image = view["image"]
                if image.is_symlink():
                    check_link(
                        str(image),
                        real_root,
                        outside_links=self.outside_links,
                        option="data.outside_links",
                    )
                if self.condition_kind == "rgb" and not image.is_file():
                    raise GenlabError(f"the view image {image} named in cameras.json is missing.")
        return info

    def prepare_data(self) -> None:
        self.scan()

    def load_splits(self) -> dict[str, Dataset]:
        source = self.scan()
        return self.make_items(source, len(source.labels))
