"""The `.binvox` voxel file format (Min; used by 3D-GAN, ShapeHD and ShapeNet's voxelisations),
read and written as untrusted data.

A file is a short ASCII header and run-length encoded bytes:

    #binvox 1
    dim 32 32 32
    translate -0.5 -0.5 -0.5
    scale 1
    data
    <(value, count) byte pairs>

`dim` gives depth, width and height, which must be equal (genlab reads cubic grids only);
`translate` and `scale` (optional; 0 and 1 when absent) map the voxel centre (i, j, k) to
mesh coordinates `((i, j, k) + 0.5) / d * scale + translate`. The data are pairs of bytes:
a value (0 empty, 1 filled; version 2 files store any value > 0 for filled) and a count
1-255 of voxels that share it. Voxels come in x-z-y order: y runs fastest, then z, then x, so
the voxel (x, y, z) is number `x * d * d + z * d + y` of the stream.

genlab's voxel tensors are indexed (x, y, z) in this order, y up (as ShapeNet's models): the
grid returned by `read_binvox` and taken by `write_binvox` is `grid[x, y, z]`.

Bounds: the dimension is checked against `max_dim` before anything is allocated, the file's
size against the largest stream that dimension can have, and the runs must add up to exactly
d^3 voxels; anything else is a GenlabError naming the file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genlab.utils.errors import GenlabError

# 256^3 = 16.8 M voxels: ShapeNetCore's solid voxelisations are 128^3; one byte per voxel
DEFAULT_MAX_DIM = 256
MAX_HEADER_BYTES = 1024
MAX_HEADER_LINES = 16


@dataclass
class BinvoxGrid:
    """A cubic occupancy grid `voxels[x, y, z]` (bool, (d, d, d)) and the normalisation the
    file stores (mesh coordinates of voxel centres: ((i, j, k) + 0.5) / d * scale + translate).
    """

    voxels: np.ndarray
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    version: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.voxels.shape[0])


def _problem(path: str | Path, what: str) -> GenlabError:
    return GenlabError(
        f"the voxel file {path} is not a valid .binvox file: {what}. Re-export it with binvox "
        "(or genlab.data.binvox.write_binvox), or remove it from the data folder."
    )


def _parse_header(raw: bytes, path: str | Path, max_dim: int) -> tuple[int, dict, int]:
    """(dim, header fields, offset of the data) of a file's first bytes."""
    offset = 0
    fields: dict[str, list[str]] = {}
    version = None
    for n in range(MAX_HEADER_LINES):
        end = raw.find(b"\n", offset)
        if end < 0:
            raise _problem(
                path, f"its header does not end with a 'data' line within {MAX_HEADER_BYTES} bytes"
            )
        try:
            line = raw[offset:end].decode("ascii").strip()
        except UnicodeDecodeError:
            raise _problem(path, f"header line {n + 1} is not ASCII text") from None
        offset = end + 1
        if n == 0:
            words = line.split()
            if len(words) != 2 or words[0] != "#binvox" or words[1] not in ("1", "2"):
                raise _problem(path, f"the first line is {line[:40]!r}, not '#binvox 1'")
            version = int(words[1])
            continue
        if line == "data":
            break
        if not line:
            continue
        key, *values = line.split()
        fields[key] = values
    else:
        raise _problem(path, f"no 'data' line among its first {MAX_HEADER_LINES} lines")
    if "dim" not in fields:
        raise _problem(path, "its header has no 'dim' line")
    try:
        dims = [int(v) for v in fields["dim"]]
    except ValueError:
        raise _problem(
            path, f"'dim {' '.join(fields['dim'])[:40]}' is not three integers"
        ) from None
    if len(dims) != 3 or len(set(dims)) != 1:
        raise _problem(
            path,
            f"'dim {' '.join(map(str, dims))}': genlab reads cubic grids (three equal sizes) only",
        )
    dim = dims[0]
    if not 1 <= dim <= max_dim:
        raise GenlabError(
            f"the voxel file {path} has a {dim}^3 grid, outside 1..{max_dim} "
            f"(data.max_voxel_dim): refused before reading it. Raise data.max_voxel_dim if the "
            "file is genuine, or downsample it."
        )
    out: dict = {"version": version, "translate": (0.0, 0.0, 0.0), "scale": 1.0, "extra": {}}
    try:
        if "translate" in fields:
            t = [float(v) for v in fields["translate"]]
            if len(t) != 3:
                raise ValueError
            out["translate"] = (t[0], t[1], t[2])
        if "scale" in fields:
            (out["scale"],) = (float(v) for v in fields["scale"])
    except ValueError:
        raise _problem(path, "its 'translate' / 'scale' lines are not 3 / 1 numbers") from None
    if not all(np.isfinite([*out["translate"], out["scale"]])):
        raise _problem(path, "its 'translate' / 'scale' are not finite numbers")
    out["extra"] = {
        k: " ".join(v) for k, v in fields.items() if k not in ("dim", "translate", "scale")
    }
    return dim, out, offset


def decode_runs(data: bytes, dim: int, path: str | Path = "<bytes>") -> np.ndarray:
    """The run-length encoded stream -> bool grid[x, y, z] (dim^3 voxels exactly)."""
    if len(data) % 2:
        raise _problem(path, f"its data are {len(data)} bytes, not (value, count) pairs")
    pairs = np.frombuffer(data, dtype=np.uint8).reshape(-1, 2)
    values, counts = pairs[:, 0], pairs[:, 1].astype(np.int64)
    total = int(counts.sum())
    if total != dim**3:
        raise _problem(
            path,
            f"its runs add up to {total:,} voxels, not {dim}^3 = {dim**3:,} (cut short, "
            "or another grid size than its header says)",
        )
    stream = np.repeat(values > 0, counts)  # x-z-y order: y fastest
    return np.ascontiguousarray(stream.reshape(dim, dim, dim).transpose(0, 2, 1))


def read_binvox(path: str | Path, *, max_dim: int = DEFAULT_MAX_DIM) -> BinvoxGrid:
    """Read a `.binvox` file (bounded; a GenlabError naming it when it is not valid)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise GenlabError(
            f"the voxel file {path} cannot be opened ({exc.strerror or exc}): make it readable "
            "or remove it."
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _problem(path, "it is not a regular file (a FIFO, device or socket)")
        head = f.read(MAX_HEADER_BYTES)
        dim, fields, offset = _parse_header(head, path, max_dim)
        # the longest valid stream: one (value, count) pair per voxel
        most = offset + 2 * dim**3
        if st.st_size > most:
            raise _problem(
                path, f"it is {st.st_size:,} bytes, more than a {dim}^3 grid can take ({most:,})"
            )
        data = head[offset:] + f.read(most - len(head) + 1)
    return BinvoxGrid(decode_runs(data, dim, path), **fields)


def encode_runs(voxels: np.ndarray) -> bytes:
    """bool grid[x, y, z] -> the run-length encoded stream (runs of at most 255)."""
    stream = np.asarray(voxels, dtype=bool).transpose(0, 2, 1).reshape(-1).astype(np.uint8)
    if stream.size == 0:
        return b""
    change = np.flatnonzero(np.diff(stream)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [stream.size]]))
    values = stream[starts]
    # split runs longer than 255 into full runs of 255 and a remainder
    full, rest = np.divmod(lengths, 255)
    reps = full + (rest > 0)
    out_values = np.repeat(values, reps)
    out_counts = np.full(out_values.shape, 255, dtype=np.int64)
    last = np.cumsum(reps) - 1
    out_counts[last[rest > 0]] = rest[rest > 0]
    return np.stack([out_values, out_counts.astype(np.uint8)], axis=1).tobytes()


def binvox_bytes(
    voxels: np.ndarray,
    *,
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
) -> bytes:
    """A whole `.binvox` file (version 1) of a cubic bool grid[x, y, z]."""
    voxels = np.asarray(voxels)
    if voxels.ndim != 3 or len(set(voxels.shape)) != 1 or voxels.shape[0] < 1:
        raise ValueError(f"a binvox grid is cubic (d, d, d), not {voxels.shape}")
    d = voxels.shape[0]
    header = (
        f"#binvox 1\ndim {d} {d} {d}\n"
        f"translate {translate[0]:g} {translate[1]:g} {translate[2]:g}\nscale {scale:g}\ndata\n"
    )
    return header.encode("ascii") + encode_runs(voxels > 0)


def write_binvox(path: str | Path, voxels: np.ndarray, **normalisation) -> Path:
    """Write `voxels[x, y, z]` (> 0 = filled) as a `.binvox` file, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(binvox_bytes(voxels, **normalisation))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
