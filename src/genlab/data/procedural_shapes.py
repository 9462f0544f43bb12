"""Procedural 3D shapes as voxel grids: primitives and objects composed of parts, each category
with its own proportions drawn at random, reproducible from a seed.

Every shape lies in the cube [-0.5, 0.5]^3 (genlab.data.voxel_render's world frame, y up)
within a margin of 0.05, and is voxelised by testing the voxel centres against its
solid parts (a voxel is filled when its centre is inside a part). Furniture stands on the
floor y = -0.45 with its back towards -z; primitives are centred at the origin.

Categories (`CATEGORIES`):
- `box`, `sphere`, `cylinder` (axis y), `torus` (axis y, lying flat): random sizes;
- `chair`: a seat on four legs with a backrest; `table`: a top on four legs or on a pedestal
  with a round foot; `lamp`: a round base, a pole and a conical shade; `bench`: a long
  narrow seat on four legs or two panels, sometimes with a backrest.

Shape `i` of a category is drawn from `random.Random(f"{seed}/{category}/{i}")` (Python's
string seeding is a SHA-512 of the text: stable across platforms and versions), so a shape
depends only on (seed, category, i), not on the other categories asked for.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from genlab.utils.errors import GenlabError

CATEGORIES = ("box", "sphere", "cylinder", "torus", "chair", "table", "lamp", "bench")
FLOOR = -0.45
# parts thinner than ~1.6 voxels at 32^3 would break up when voxelised
MIN_HALF = 0.026


class Space:
    """The voxel centres' coordinates X, Y, Z, each (N, N, N) indexed [x, y, z]."""

    def __init__(self, size: int) -> None:
        c = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
        self.X, self.Y, self.Z = torch.meshgrid(c, c, c, indexing="ij")

    def box(self, centre: Sequence[float], half: Sequence[float]) -> torch.Tensor:
        (cx, cy, cz), (hx, hy, hz) = centre, half
        return (
            ((self.X - cx).abs() <= hx) & ((self.Y - cy).abs() <= hy) & ((self.Z - cz).abs() <= hz)
        )

    def span(self, lo: Sequence[float], hi: Sequence[float]) -> torch.Tensor:
        """The box between corners lo and hi."""
        centre = [(a + b) / 2 for a, b in zip(lo, hi, strict=True)]
        half = [(b - a) / 2 for a, b in zip(lo, hi, strict=True)]
        return self.box(centre, half)

    def sphere(self, centre: Sequence[float], radius: float) -> torch.Tensor:
        cx, cy, cz = centre
        return (self.X - cx) ** 2 + (self.Y - cy) ** 2 + (self.Z - cz) ** 2 <= radius**2

    def cylinder(
        self, x: float, z: float, y0: float, y1: float, r0: float, r1: float | None = None
    ) -> torch.Tensor:
        """A vertical cylinder (or cone frustum: radius r0 at y0, r1 at y1) on axis (x, z)."""
        r1 = r0 if r1 is None else r1
        frac = ((self.Y - y0) / max(y1 - y0, 1e-6)).clamp(0, 1)
        radius = r0 + (r1 - r0) * frac
        inside = (self.X - x) ** 2 + (self.Z - z) ** 2 <= radius**2
        return inside & ((self.Y - y0) >= 0) & ((self.Y - y1) <= 0)

    def torus(self, major: float, minor: float) -> torch.Tensor:
        ring = (self.X**2 + self.Z**2).sqrt() - major
        return ring**2 + self.Y**2 <= minor**2


def _legs(
    s: Space, half_x: float, half_z: float, top: float, thick: float, inset: float = 0.0
) -> torch.Tensor:
    """Four square legs from the floor to `top` under the corners of a (2 half_x, 2 half_z)
    rectangle."""
    out = torch.zeros_like(s.X, dtype=torch.bool)
    for sx in (-1, 1):
        for sz in (-1, 1):
            x = sx * (half_x - thick - inset)
            z = sz * (half_z - thick - inset)
            out |= s.span((x - thick, FLOOR, z - thick), (x + thick, top, z + thick))
    return out


def box(s: Space, r: random.Random) -> torch.Tensor:
    return s.box((0, 0, 0), [r.uniform(0.1, 0.4) for _ in range(3)])


def sphere(s: Space, r: random.Random) -> torch.Tensor:
    return s.sphere((0, 0, 0), r.uniform(0.15, 0.45))


def cylinder(s: Space, r: random.Random) -> torch.Tensor:
    h = r.uniform(0.1, 0.42)
    return s.cylinder(0, 0, -h, h, r.uniform(0.1, 0.4))


def torus(s: Space, r: random.Random) -> torch.Tensor:
    major = r.uniform(0.18, 0.32)
    return s.torus(major, r.uniform(0.05, min(0.13, 0.45 - major)))


def chair(s: Space, r: random.Random) -> torch.Tensor:
    w, d = r.uniform(0.2, 0.38), r.uniform(0.2, 0.38)
    seat, t = r.uniform(-0.15, 0.1), r.uniform(0.03, 0.06)
    leg = r.uniform(MIN_HALF, 0.05)
    back_top, back_t = r.uniform(seat + 0.2, 0.45), r.uniform(MIN_HALF, 0.05)
    out = s.span((-w, seat - t, -d), (w, seat + t, d))
    out |= _legs(s, w, d, seat - t, leg)
    out |= s.span((-w, seat, -d), (w, back_top, -d + 2 * back_t))
    return out


def table(s: Space, r: random.Random) -> torch.Tensor:
    w, d = r.uniform(0.25, 0.45), r.uniform(0.2, 0.45)
    top, t = r.uniform(-0.1, 0.3), r.uniform(0.03, 0.06)
    out = s.span((-w, top - t, -d), (w, top + t, d))
    if r.random() < 0.7:
        out |= _legs(s, w, d, top - t, r.uniform(MIN_HALF, 0.06), inset=r.uniform(0, 0.05))
    else:  # a pedestal on a round foot
        out |= s.cylinder(0, 0, FLOOR, top, r.uniform(0.04, 0.08))
        out |= s.cylinder(0, 0, FLOOR, FLOOR + r.uniform(0.03, 0.06), r.uniform(0.15, 0.25))
    return out


def lamp(s: Space, r: random.Random) -> torch.Tensor:
    base_h = FLOOR + r.uniform(0.03, 0.08)
    out = s.cylinder(0, 0, FLOOR, base_h, r.uniform(0.12, 0.25))
    top = r.uniform(0.1, 0.3)
    out |= s.cylinder(0, 0, base_h, top, r.uniform(0.03, 0.045))
    shade_lo, shade_hi = top - r.uniform(0.1, 0.2), min(0.45, top + r.uniform(0.05, 0.12))
    out |= s.cylinder(0, 0, shade_lo, shade_hi, r.uniform(0.18, 0.3), r.uniform(0.08, 0.15))
    return out


def bench(s: Space, r: random.Random) -> torch.Tensor:
    w, d = r.uniform(0.38, 0.45), r.uniform(0.1, 0.18)
    seat, t = r.uniform(-0.2, 0.0), r.uniform(0.03, 0.05)
    out = s.span((-w, seat - t, -d), (w, seat + t, d))
    if r.random() < 0.5:
        out |= _legs(s, w, d, seat - t, r.uniform(MIN_HALF, 0.045))
    else:  # two panels at the ends
        p = r.uniform(MIN_HALF, 0.045)
        for sx in (-1, 1):
            x = sx * (w - p - r.uniform(0, 0.08))
            out |= s.span((x - p, FLOOR, -d), (x + p, seat - t, d))
    if r.random() < 0.5:
        bt = r.uniform(MIN_HALF, 0.04)
        out |= s.span((-w, seat, -d), (w, r.uniform(seat + 0.15, 0.4), -d + 2 * bt))
    return out


MAKERS: dict[str, Callable[[Space, random.Random], torch.Tensor]] = {
    "box": box,
    "sphere": sphere,
    "cylinder": cylinder,
    "torus": torus,
    "chair": chair,
    "table": table,
    "lamp": lamp,
    "bench": bench,
}


def check_categories(categories: Sequence[str], option: str = "data.categories") -> list[str]:
    names = [str(c) for c in categories]
    bad = [c for c in names if c not in MAKERS]
    if bad or not names or len(set(names)) != len(names):
        raise GenlabError(
            f"{option}={names}: each category once, from {', '.join(CATEGORIES)}"
            + (f" ({', '.join(bad)} is not one)" if bad else "")
            + "."
        )
    return names


def shape_rng(seed: int, category: str, index: int, what: str = "") -> random.Random:
    """The random stream of one shape (or of its views / colour with `what`)."""
    return random.Random(f"{seed}/{category}/{index}{what}")


def make_shape(category: str, index: int, *, size: int, seed: int) -> torch.Tensor:
    """Shape `index` of `category`: a bool grid (size, size, size) indexed [x, y, z]."""
    return MAKERS[category](Space(size), shape_rng(seed, category, index))


def generate(
    categories: Sequence[str], per_category: int, *, size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_category` shapes of each category: uint8 grids (S, size, size, size) in {0, 1} and
    labels (S,) (the category's position in `categories`), ordered by index, then category."""
    categories = check_categories(categories)
    space = Space(size)
    grids, labels = [], []
    for i in range(per_category):
        for label, name in enumerate(categories):
            grids.append(MAKERS[name](space, shape_rng(seed, name, i)).to(torch.uint8))
            labels.append(label)
    if not grids:
        return torch.zeros(0, size, size, size, dtype=torch.uint8), torch.zeros(0).long()
    return torch.stack(grids), torch.tensor(labels, dtype=torch.long)


def colours(categories: Sequence[str], per_category: int, *, seed: int) -> torch.Tensor:
    """The albedo (S, 3) in [0.35, 0.95] of each shape of `generate` (for colour renders)."""
    out = []
    for i in range(per_category):
        for name in categories:
            r = shape_rng(seed, name, i, "/colour")
            out.append([r.uniform(0.35, 0.95) for _ in range(3)])
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 3)


def view_cameras(
    categories: Sequence[str],
    per_category: int,
    views: int,
    *,
    seed: int,
    elevation: tuple[float, float],
    distance: float,
) -> torch.Tensor:
    """Random cameras (S, views, 3) = (azimuth uniform in [0, 360), elevation uniform in
    `elevation`, `distance`) for the shapes of `generate`."""
    lo, hi = elevation
    out = []
    for i in range(per_category):
        for name in categories:
            r = shape_rng(seed, name, i, "/views")
            out.append([[r.uniform(0, 360), r.uniform(lo, hi), distance] for _ in range(views)])
    return torch.tensor(out, dtype=torch.float32).reshape(-1, views, 3)
