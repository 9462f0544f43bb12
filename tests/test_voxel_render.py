"""Ray casting of voxel grids (genlab.data.voxel_render) against shapes whose views are known
in closed form, a brute-force ray march, and the visual hull's containment of the shape.

Broken variants seen failing (in a scratch copy): a plane crossing entering voxel k for
either direction (rays going -x/-z see the box one voxel deep: the head-on depths and the
march), the image rows not flipped (v = +(row + 0.5)...: the box's rectangle lands upside
down), depth as the distance along the ray instead of camera z (perspective head-on depth
not constant), the hull projecting with the camera's `right` negated (the hull loses shape
voxels), the normal's sign flipped (the shade of a face seen head-on drops to the ambient).
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from genlab.data.procedural_shapes import generate
from genlab.data.voxel_render import (
    Projection,
    camera_frames,
    cast,
    light_directions,
    rays,
    sketch,
    visual_hull,
)
from genlab.utils.errors import GenlabError

N = 16
# a box covering voxels x 3..10, y 5..12, z 2..7 (ends inclusive): faces at these planes
LO, HI = (3, 5, 2), (11, 13, 8)


def box_grid() -> torch.Tensor:
    g = torch.zeros(1, N, N, N)
    g[0, LO[0] : HI[0], LO[1] : HI[1], LO[2] : HI[2]] = 1
    return g


def plane(i: int) -> float:
    return i / N - 0.5


# azimuth -> (the world axis the camera looks along, the face it sees, image right axis)
HEAD_ON = {
    0.0: ("+z", plane(HI[2])),
    90.0: ("+x", plane(HI[0])),
    180.0: ("-z", plane(LO[2])),
    270.0: ("-x", plane(LO[0])),
}


@pytest.mark.parametrize("azimuth", sorted(HEAD_ON))
@pytest.mark.parametrize("kind", ["orthographic", "perspective"])
def test_a_box_seen_head_on_has_its_front_face_depth_everywhere(azimuth, kind):
    """The camera on an axis sees one face: depth = distance - |face coordinate| on the whole
    silhouette (camera-space z is constant on a face facing the camera, in both projections),
    the face's normal points at the camera, and its shade is the Lambert value of that normal."""
    distance = 2.0
    projection = Projection(kind=kind, view_size=1.0, fov=50.0)
    cams = torch.tensor([[azimuth, 0.0, distance]])
    out = cast(box_grid(), cams, image_size=2 * N, projection=projection)
    sil, depth = out["silhouette"][0], out["depth"][0]
    axis, face = HEAD_ON[azimuth]
    want = distance - abs(face)
    assert sil.any()
    assert torch.allclose(depth[sil], torch.full_like(depth[sil], want), atol=1e-5)
    assert torch.isinf(depth[~sil]).all()
    sign = 1.0 if axis[0] == "+" else -1.0
    normal = torch.zeros(3)
    normal[{"x": 0, "z": 2}[axis[1]]] = sign
    assert torch.equal(out["normal"][0][sil], normal.expand(int(sil.sum()), 3))
    lam = max(0.0, float(light_directions(cams, projection)[0] @ normal))
    assert lam > 0.5
    shade = projection.ambient + (1 - projection.ambient) * lam
    assert torch.allclose(out["shade"][0][sil], torch.full((int(sil.sum()),), shade), atol=1e-5)


def test_the_orthographic_silhouette_of_a_box_is_its_rectangle():
    """view_size 1 and 2N pixels: each voxel covers 2 x 2 pixels; seen from +z with +x to the
    right and +y up, the box covers columns 2 * x_lo .. 2 * x_hi and rows counted from the
    top, 2 * (N - y_hi) .. 2 * (N - y_lo)."""
    out = cast(
        box_grid(),
        torch.tensor([[0.0, 0.0, 2.0]]),
        image_size=2 * N,
        projection=Projection(view_size=1.0),
    )
    want = torch.zeros(2 * N, 2 * N, dtype=torch.bool)
    want[2 * (N - HI[1]) : 2 * (N - LO[1]), 2 * LO[0] : 2 * HI[0]] = True
    assert torch.equal(out["silhouette"][0], want)
    s = sketch(out, torch.tensor([[0.0, 0.0, 2.0]]))[0]
    near, far = 2.0 - math.sqrt(3) / 2, 2.0 + math.sqrt(3) / 2
    assert torch.allclose(s[0][want], torch.tensor((2.0 - plane(HI[2]) - near) / (far - near)))
    assert torch.equal(s[0][~want], torch.ones(int((~want).sum()))) and torch.equal(s[1] > 0, want)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_sphere_is_seen_as_a_disc_from_anywhere(seed):
    """A voxelised sphere of radius r: every orthographic silhouette contains the disc of
    radius r - h and lies in the disc of radius r + h about the image centre, with h the half
    diagonal of a voxel (a voxel centre within r of the centre marks the whole voxel)."""
    n, size, r = 32, 64, 0.3
    c = (torch.arange(n) + 0.5) / n - 0.5
    X, Y, Z = torch.meshgrid(c, c, c, indexing="ij")
    grid = ((X**2 + Y**2 + Z**2).sqrt() - r <= 0).float()[None]
    gen = torch.Generator().manual_seed(seed)
    cams = torch.stack(
        [
            torch.rand(4, generator=gen) * 360,
            torch.rand(4, generator=gen) * 160 - 80,
            torch.full((4,), 3.0),
        ],
        1,
    )
    projection = Projection(view_size=1.0)
    sil = cast(grid.expand(4, -1, -1, -1), cams, image_size=size, projection=projection)[
        "silhouette"
    ]
    p = (torch.arange(size) + 0.5) / size - 0.5  # pixel centres in world units
    radius = (p[:, None] ** 2 + p[None, :] ** 2).sqrt()
    h = math.sqrt(3) / (2 * n)
    for s in sil:
        assert s[radius <= r - h].all()
        assert not s[radius > r + h].any()


def march(grid: torch.Tensor, cams: torch.Tensor, size: int, projection: Projection, step: float):
    """A brute-force reference: sample every ray at `step` and take the first sample inside a
    filled voxel; its camera-space depth."""
    origins, dirs, fwd = rays(cams, size, projection)  # (v, r, 3)
    ts = torch.arange(0.0, 4.0, step)
    pts = origins[:, :, None] + ts[None, None, :, None] * dirs[:, :, None]  # (v, r, s, 3)
    n = grid.shape[-1]
    cell = torch.floor((pts + 0.5) * n).long()
    inside = ((cell >= 0) & (cell < n)).all(-1)
    cell = cell.clamp(0, n - 1)
    filled = grid[torch.arange(len(grid))[:, None, None], cell[..., 0], cell[..., 1], cell[..., 2]]
    hit = inside & (filled > 0.5)
    first = torch.where(hit.any(-1), hit.float().argmax(-1), -1)
    t = torch.where(first >= 0, ts[first.clamp(min=0)], math.inf)
    return (t * (dirs * fwd[:, None]).sum(-1)).reshape(len(grid), size, size)


@pytest.mark.parametrize("kind", ["orthographic", "perspective"])
def test_first_hits_match_a_fine_ray_march(kind):
    """Random sparse grids from random viewpoints: the exact first-hit depth equals the
    marched depth up to the march's step, but for the rare rays that graze a voxel within a
    step."""
    gen = torch.Generator().manual_seed(3)
    grid = (torch.rand(3, 8, 8, 8, generator=gen) < 0.08).float()
    cams = torch.stack(
        [
            torch.rand(3, generator=gen) * 360,
            torch.rand(3, generator=gen) * 120 - 60,
            torch.full((3,), 2.5),
        ],
        1,
    )
    projection = Projection(kind=kind, fov=45.0)
    exact = cast(grid, cams, image_size=24, projection=projection)["depth"]
    step = 2e-3
    marched = march(grid, cams, 24, projection, step)
    both = torch.isfinite(exact) & torch.isfinite(marched)
    assert both.sum() > 100
    late = marched[both] - exact[both]
    assert (late >= -1e-5).all()  # the march never finds a hit before the exact one
    # it finds the same one within a step, but for rays that cross a voxel's corner in less
    # than a step (the march steps over it)
    assert (late > step + 1e-5).float().mean() < 0.02, late.max()
    assert (torch.isfinite(exact) != torch.isfinite(marched)).float().mean() < 0.02


def test_the_visual_hull_contains_the_shape_and_carves_the_rest():
    """At a resolution where a voxel's projection always covers the pixel centre nearest its
    centre's projection (pixel half-diagonal <= half a voxel: image_size >= sqrt(2) * view_size
    * N), the hull of one silhouette contains every filled voxel, for random shapes and views;
    it is still far from the whole cube."""
    grids, _ = generate(["chair", "table", "torus", "lamp"], 2, size=N, seed=5)
    gen = torch.Generator().manual_seed(0)
    cams = torch.stack(
        [
            torch.rand(len(grids), generator=gen) * 360,
            torch.rand(len(grids), generator=gen) * 120 - 60,
            torch.full((len(grids),), 2.0),
        ],
        1,
    )
    for projection, size in ((Projection(), 48), (Projection(kind="perspective", fov=60.0), 96)):
        sil = cast(grids.float(), cams, image_size=size, projection=projection)["silhouette"]
        hull = visual_hull(sil, cams, size=N, projection=projection)
        shape = grids.bool()
        assert (hull | ~shape).all()
        assert (hull.float().mean((1, 2, 3)) < 0.6).all()
        assert (hull.sum((1, 2, 3)) > shape.sum((1, 2, 3))).all()


def test_camera_frames_are_orthonormal_and_y_up():
    cams = torch.tensor([[0.0, 0.0, 2.0], [37.0, 61.0, 3.0], [250.0, -45.0, 1.5]])
    eye, right, up, fwd = camera_frames(cams)
    frame = torch.stack([right, up, fwd], 1)  # (v, 3, 3)
    assert torch.allclose(frame @ frame.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert (up[:, 1] > 0).all() and torch.allclose(right[:, 1], torch.zeros(3), atol=1e-6)
    assert torch.allclose(eye.norm(dim=1), cams[:, 2]) and torch.allclose(-eye / cams[:, 2:], fwd)
    assert torch.allclose(right[0], torch.tensor([1.0, 0.0, 0.0]))


def test_a_32_grid_renders_64_pixels_in_well_under_a_second():
    grid = (torch.rand(8, 32, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    cams = torch.tensor([[30.0 * i, 20.0, 2.0] for i in range(8)])
    cast(grid[:1], cams[:1], image_size=64)  # warm-up
    start = time.perf_counter()
    cast(grid, cams, image_size=64)
    per_view = (time.perf_counter() - start) / 8
    assert per_view < 0.25, per_view  # ~0.01 s on a 2-core AMD EPYC


def test_cameras_that_do_not_frame_the_cube_are_refused():
    with pytest.raises(GenlabError, match="does not frame"):
        Projection(kind="perspective", fov=20.0).check_frames_cube(2.0, "data.fov")
    with pytest.raises(GenlabError, match="inside the cube's bounding sphere"):
        Projection().check_frames_cube(0.5, "data.distance")
