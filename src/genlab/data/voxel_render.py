"""Views of voxel grids by first-hit ray casting, vectorised in torch: depth maps,
silhouettes, Lambert-shaded renders, and the visual hull of a silhouette.

World frame: a grid `voxels[x, y, z]` of size N fills the cube [-0.5, 0.5]^3, voxel (i, j, k)
spanning [i/N - 0.5, (i+1)/N - 0.5] along x (likewise j along y, k along z); y is up.

Cameras look at the origin. A camera is (azimuth, elevation, distance), angles in degrees:
its eye is at distance * (cos(el) sin(az), sin(el), cos(el) cos(az)), so azimuth 0 and
elevation 0 look down the -z axis with +x to the right of the image and +y up. Elevation
must lie strictly inside (-90, 90) and the eye outside the cube's bounding sphere
(distance > sqrt(3)/2).

Projections (`Projection`):
- `orthographic`: parallel rays along the viewing direction; the image spans `view_size`
  world units (default sqrt(3), the widest the cube can appear) across, centred on the
  origin. The distance only shifts depth.
- `perspective`: rays from the eye through the pixels; `fov` (degrees) is the full angle the
  image spans, horizontally and vertically.

Pixel (row, col) of an H x W image is the ray through u = (col + 0.5) / W * 2 - 1 (right),
v = 1 - (row + 0.5) / H * 2 (up). Depth is the distance from the eye's plane along the
viewing direction (camera-space z, the same for both projections), +inf where the ray hits
nothing. The first hit is exact: for each axis every grid plane the ray crosses is tested,
and the nearest crossing that enters a filled voxel wins (no stepping, no sampling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlab.utils.errors import GenlabError

PROJECTIONS = ("orthographic", "perspective")
# the cube's bounding sphere: every view depth of the cube lies in distance -/+ this
CUBE_RADIUS = math.sqrt(3) / 2
# elements of the (views, rays, N + 1) candidate tensors computed at once
CHUNK_ELEMENTS = 1 << 19


@dataclass(frozen=True)
class Projection:
    """How cameras map the world to images: `kind` orthographic or perspective, the image
    extent `view_size` (orthographic, world units) or field of view `fov` (perspective,
    degrees), and the light direction in the camera frame (right, up, towards the camera) of
    the shaded renders with its `ambient` term."""

    kind: str = "orthographic"
    view_size: float = math.sqrt(3)
    fov: float = 40.0
    light: tuple[float, float, float] = (-0.4, 0.6, 1.0)
    ambient: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in PROJECTIONS:
            raise GenlabError(f"projection {self.kind!r}: use one of {', '.join(PROJECTIONS)}.")
        if not self.view_size > 0 or not 0 < self.fov < 180:
            raise GenlabError(
                f"view_size={self.view_size} must be > 0 and fov={self.fov} in (0, 180) degrees."
            )
        if not 0 <= self.ambient <= 1:
            raise GenlabError(f"ambient={self.ambient} must be in [0, 1].")

    def check_frames_cube(self, distance: float, what: str) -> None:
        """A GenlabError when a camera at `distance` would not see the whole cube."""
        if not distance > CUBE_RADIUS:
            raise GenlabError(
                f"{what}: a camera distance of {distance:g} puts the eye inside the cube's "
                f"bounding sphere (radius {CUBE_RADIUS:.3f}): use a distance above it."
            )
        if self.kind == "perspective":
            half = math.radians(self.fov) / 2
            if math.sin(half) * distance < CUBE_RADIUS:
                need = 2 * math.degrees(math.asin(min(1.0, CUBE_RADIUS / distance)))
                raise GenlabError(
                    f"{what}: a {self.fov:g} degree field of view at distance {distance:g} does "
                    f"not frame the unit cube: use a field of view of at least {need:.1f} "
                    "degrees or a larger distance."
                )


def camera_frames(cameras: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(eye, right, up, forward), each (V, 3), of cameras (V, 3) = (azimuth, elevation,
    distance) in degrees and world units."""
    az, el = torch.deg2rad(cameras[:, 0]), torch.deg2rad(cameras[:, 1])
    dist = cameras[:, 2]
    direction = torch.stack([el.cos() * az.sin(), el.sin(), el.cos() * az.cos()], dim=1)
    eye = direction * dist[:, None]
    forward = -direction
    world_up = torch.tensor([0.0, 1.0, 0.0], dtype=cameras.dtype, device=cameras.device)
    right = torch.linalg.cross(forward, world_up.expand_as(forward))
    right = right / right.norm(dim=1, keepdim=True)
    up = torch.linalg.cross(right, forward)
    return eye, right, up, forward


def check_cameras(cameras: torch.Tensor, projection: Projection, what: str) -> None:
    """A GenlabError naming `what` for cameras that are not finite, look straight up or down,
    or do not frame the cube."""
    if cameras.ndim != 2 or cameras.shape[1] != 3 or not torch.isfinite(cameras).all():
        raise GenlabError(f"{what}: cameras must be finite (azimuth, elevation, distance).")
    el = cameras[:, 1].abs().max().item() if len(cameras) else 0.0
    if el >= 89.9:
        raise GenlabError(
            f"{what}: an elevation of {el:g} degrees looks straight up or down; use "
            "elevations inside (-89.9, 89.9)."
        )
    if len(cameras):
        projection.check_frames_cube(cameras[:, 2].min().item(), what)


def pixel_grid(image_size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) of the pixel centres, each (H * W,), row-major; u right, v up, in (-1, 1)."""
    c = (torch.arange(image_size, device=device, dtype=torch.float32) + 0.5) / image_size * 2 - 1
    v, u = torch.meshgrid(-c, c, indexing="ij")
    return u.reshape(-1), v.reshape(-1)


def rays(
    cameras: torch.Tensor, image_size: int, projection: Projection
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(origins, unit directions, forward) of every pixel's ray: (V, R, 3) x 2 and (V, 3)."""
    eye, right, up, fwd = camera_frames(cameras)
    u, v = pixel_grid(image_size, cameras.device)
    offset = u[None, :, None] * right[:, None] + v[None, :, None] * up[:, None]  # (v, r, 3)
    if projection.kind == "orthographic":
        origins = eye[:, None] + offset * (projection.view_size / 2)
        dirs = fwd[:, None].expand_as(origins)
    else:
        dirs = fwd[:, None] + offset * math.tan(math.radians(projection.fov) / 2)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origins = eye[:, None].expand_as(dirs)
    return origins, dirs, fwd


def _first_hits(
    grid: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray parameter t of the first filled voxel entered ((V, R), inf on a miss) and the axis
    of the face it was entered through ((V, R) int64), for bool grids (V, N, N, N).

    For each axis a, the ray crosses the N + 1 grid planes x_a = k / N - 0.5 at
    t_k = (plane_k - o_a) / d_a; crossing plane k in the + direction enters the voxel with
    index k along a, in the - direction the one with index k - 1; the two other indices are
    those of the crossing point. The first hit is the least t over all crossings that enter
    a filled voxel: every voxel the ray passes through is entered through one of its faces
    (the eye lies outside the cube).
    """
    v, n = grid.shape[0], grid.shape[1]
    flat_grid = grid.reshape(v, -1)
    planes = torch.arange(n + 1, device=grid.device, dtype=origins.dtype) / n - 0.5  # (n+1,)
    k = torch.arange(n + 1, device=grid.device)
    strides = (n * n, n, 1)
    best_t, best_axis = None, None
    for a in range(3):
        b, c = [axis for axis in range(3) if axis != a]
        da = dirs[..., a, None]  # (v, r, 1)
        moving = da.abs() > 1e-12
        t = (planes - origins[..., a, None]) / torch.where(moving, da, 1.0)  # (v, r, n+1)
        entered = k - (da < 0).long()  # (v, r, n+1)
        ok = moving & (t > 0) & (entered >= 0) & (entered < n)
        index = entered.clamp(0, n - 1) * strides[a]
        for other in (b, c):
            cell = torch.floor((origins[..., other, None] + t * dirs[..., other, None] + 0.5) * n)
            ok &= (cell >= 0) & (cell < n)
            index += cell.clamp(0, n - 1).long() * strides[other]
        filled = torch.gather(flat_grid, 1, index.reshape(v, -1)).reshape(index.shape)
        t_a = torch.where(ok & filled, t, math.inf).amin(dim=-1)  # (v, r)
        if best_t is None:
            best_t, best_axis = t_a, torch.zeros_like(t_a, dtype=torch.long)
        else:
            closer = t_a < best_t
            best_t = torch.where(closer, t_a, best_t)
            best_axis = torch.where(closer, a, best_axis)
    return best_t, best_axis


def cast(
    voxels: torch.Tensor,
    cameras: torch.Tensor,
    *,
    image_size: int,
    projection: Projection = Projection(),
) -> dict[str, torch.Tensor]:
    """First-hit ray casting of grids (V, N, N, N) (or (V, 1, N, N, N); > 0.5 filled) seen by
    cameras (V, 3). Returns `depth` (V, H, W): camera-space z of the first hit, +inf where
    none; `silhouette` (V, H, W) bool; `normal` (V, H, W, 3): the outward normal of the face
    hit (0 off the silhouette); `shade` (V, H, W): ambient + (1 - ambient) max(0, n . light)
    on the silhouette, 0 off it."""
    if voxels.ndim == 5:
        voxels = voxels[:, 0]
    grid = voxels > 0.5
    cameras = cameras.to(device=voxels.device, dtype=torch.float32)
    views, n = grid.shape[0], grid.shape[1]
    per_view = image_size * image_size * (n + 1)
    step = max(1, CHUNK_ELEMENTS // per_view)
    depth, axes = [], []
    fwd_all = []
    dirs_all = []
    for s in range(0, views, step):
        origins, dirs, fwd = rays(cameras[s : s + step], image_size, projection)
        t, axis = _first_hits(grid[s : s + step], origins, dirs)
        along = (dirs * fwd[:, None]).sum(-1)  # cos of the ray to the viewing axis
        depth.append(t * along)
        axes.append(axis)
        fwd_all.append(fwd)
        dirs_all.append(dirs)
    z = torch.cat(depth).reshape(views, image_size, image_size)
    axis = torch.cat(axes)
    dirs = torch.cat(dirs_all)
    hit = torch.isfinite(z)
    # the face entered along `axis` faces against the ray's component on that axis
    comp = torch.gather(dirs, 2, axis[..., None])  # (v, r, 1)
    normal = -torch.nn.functional.one_hot(axis, 3).to(dirs.dtype) * comp.sign()
    normal = normal.reshape(views, image_size, image_size, 3) * hit[..., None]
    light = light_directions(cameras, projection)  # (v, 3)
    lambert = (normal * light[:, None, None]).sum(-1).clamp(min=0)
    shade = torch.where(hit, projection.ambient + (1 - projection.ambient) * lambert, 0.0)
    return {"depth": z, "silhouette": hit, "normal": normal, "shade": shade}


def light_directions(cameras: torch.Tensor, projection: Projection) -> torch.Tensor:
    """The unit light direction (towards the light) of each camera in world coordinates."""
    _, right, up, fwd = camera_frames(cameras)
    lr, lu, lb = projection.light
    light = lr * right + lu * up - lb * fwd
    return light / light.norm(dim=1, keepdim=True)


def depth_range(cameras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(near, far) (V,) bounding every depth of the cube: distance -/+ sqrt(3)/2."""
    return cameras[:, 2] - CUBE_RADIUS, cameras[:, 2] + CUBE_RADIUS


def sketch(rendered: dict[str, torch.Tensor], cameras: torch.Tensor) -> torch.Tensor:
    """The 2.5D sketch (V, 2, H, W) in [0, 1]: channel 0 the depth mapped linearly from
    [near, far] (depth_range) to [0, 1], 1 (far) off the silhouette; channel 1 the
    silhouette."""
    near, far = depth_range(cameras.to(rendered["depth"]))
    z = rendered["depth"]
    d01 = ((z - near[:, None, None]) / (far - near)[:, None, None]).clamp(0, 1)
    d01 = torch.where(rendered["silhouette"], d01, torch.ones_like(d01))
    return torch.stack([d01, rendered["silhouette"].to(d01.dtype)], dim=1)


def rgb(
    rendered: dict[str, torch.Tensor], albedo: torch.Tensor, background: float = 1.0
) -> torch.Tensor:
    """Shaded colour renders (V, 3, H, W) in [0, 1]: albedo (V, 3) times the Lambert shade on
    the silhouette, `background` off it."""
    colour = rendered["shade"][:, None] * albedo[:, :, None, None]
    return torch.where(rendered["silhouette"][:, None], colour, background).clamp(0, 1)


def voxel_centres(n: int, device=None) -> torch.Tensor:
    """World coordinates of the voxel centres, (N, N, N, 3) indexed [x, y, z]."""
    c = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n - 0.5
    return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1)


def project(
    points: torch.Tensor, cameras: torch.Tensor, *, image_size: int, projection: Projection
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel (row, col) (V, P) int64 and camera-space depth (V, P) of world points (P, 3) seen
    by cameras (V, 3): the pixel whose area the point's projection falls in (may lie outside
    [0, image_size))."""
    eye, right, up, fwd = camera_frames(cameras.to(points))
    rel = points[None] - eye[:, None]  # (v, p, 3)
    x = (rel * right[:, None]).sum(-1)
    y = (rel * up[:, None]).sum(-1)
    z = (rel * fwd[:, None]).sum(-1)
    if projection.kind == "orthographic":
        half = projection.view_size / 2
        u, v = x / half, y / half
    else:
        tan = math.tan(math.radians(projection.fov) / 2)
        u, v = x / (z * tan), y / (z * tan)
    col = torch.floor((u + 1) / 2 * image_size).long()
    row = torch.floor((1 - v) / 2 * image_size).long()
    return row, col, z


def visual_hull(
    silhouettes: torch.Tensor, cameras: torch.Tensor, *, size: int, projection: Projection
) -> torch.Tensor:
    """The voxels (V, N, N, N) bool consistent with each silhouette (V, H, W) seen by its
    camera (V, 3): a voxel is kept when its centre projects, in the camera frame, onto a
    silhouette pixel (the silhouette extruded along the viewing rays: a prism for the
    orthographic projection, a cone for the perspective one). Several views of one shape
    intersect: `visual_hull(...).all(0)`."""
    sil = silhouettes > 0.5
    views, image_size = sil.shape[0], sil.shape[-1]
    centres = voxel_centres(size, sil.device).reshape(-1, 3)
    row, col, _ = project(centres, cameras, image_size=image_size, projection=projection)
    inside = (row >= 0) & (row < image_size) & (col >= 0) & (col < image_size)
    flat = row.clamp(0, image_size - 1) * image_size + col.clamp(0, image_size - 1)
    on = torch.gather(sil.reshape(views, -1), 1, flat)
    return (on & inside).reshape(views, size, size, size)
