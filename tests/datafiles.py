"""Writers of tiny datasets in the real on-disk formats the torchvision loaders read."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

CELEBA_ATTRS = [f"Attr_{i:02d}" for i in range(38)] + ["Smiling", "Eyeglasses"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file (MNIST's format): magic, big-endian dims, uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())


def write_mnist(
    root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20, seed: int = 0
):
    """root/<folder>/raw/ with the four IDX files of random images, labels i % 10."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return out


def write_cifar10(root: Path, per_batch: int = 10, n_test: int = 10, seed: int = 0):
    """root/cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta pickles."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [
        ("test_batch", n_test)
    ]:
        data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(base / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, f)
        batches[name] = (data, labels)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return batches


def write_celeba(root: Path, n: int = 12, seed: int = 0) -> np.ndarray:
    """root/celeba/ in torchvision's layout: img_align_celeba/*.jpg (178x218) and the five
    annotation files. Partition: 0 train, 1 valid, 2 test by index mod 3 (n//3 each)."""
    rng = np.random.default_rng(seed)
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    attrs = rng.choice([-1, 1], size=(n, len(CELEBA_ATTRS)))
    for name in names:
        pixels = rng.integers(0, 256, size=(218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(base / "img_align_celeba" / name, quality=90)
    lines = [str(n), " ".join(CELEBA_ATTRS)]
    rows = zip(names, attrs, strict=True)
    lines += [f"{name} " + " ".join(f"{a:2d}" for a in row) for name, row in rows]
    (base / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (base / "identity_CelebA.txt").write_text(
        "".join(f"{m} {i % 5}\n" for i, m in enumerate(names))
    )
    bbox = [str(n), "image_id x_1 y_1 width height"] + [f"{m} 1 2 100 120" for m in names]
    (base / "list_bbox_celeba.txt").write_text("\n".join(bbox) + "\n")
    marks_header = " ".join(
        f"{part}_{axis}"
        for part in ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
        for axis in "xy"
    )
    marks = [str(n), marks_header] + [f"{m} " + " ".join(["50"] * 10) for m in names]
    (base / "list_landmarks_align_celeba.txt").write_text("\n".join(marks) + "\n")
    (base / "list_eval_partition.txt").write_text(
        "".join(f"{m} {i % 3}\n" for i, m in enumerate(names))
    )
    return attrs


def write_image_folder(
    root: Path, classes: list[str] | None, per_class: int = 10, size=(40, 30), seed=0
):
    """PNG images under root (flat) or root/<class>/ for each class."""
    rng = np.random.default_rng(seed)
    dirs = [root / c for c in classes] if classes else [root]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(d / f"img_{i:03d}.png")
    return dirs


def write_ab_images(
    folder: Path, n: int, size: int = 16, seed: int = 0, offset: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """pix2pix's aligned format: n PNGs of (size, 2 * size) RGB pixels, A the left half and B
    the right. `offset` > 0 makes A = B + offset (B drawn below 256 - offset); else both random.
    Returns the (A, B) arrays (h, w, 3) in file order (ab_000.png, ...)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(n):
        b = rng.integers(0, 256 - offset, size=(size, size, 3), dtype=np.uint8)
        a = b + offset if offset else rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([a, b], axis=1)).save(folder / f"ab_{i:03d}.png")
        pairs.append((a, b))
    return pairs


def write_pair_folders(
    root: Path, names: list[str], size: int = 16, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """root/A/<name>.png and root/B/<name>.png, random RGB pixels; {name: (A, B) arrays}."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        pair = []
        for side in ("A", "B"):
            (root / side).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / side / f"{name}.png")
            pair.append(pixels)
        out[name] = (pair[0], pair[1])
    return out


# --- hostile files (tests/test_untrusted_data.py) ------------------------------------------------
def write_flat_png(path: Path, width: int, height: int, value: int = 0) -> int:
    """A real 8-bit grey PNG of one value, compressed row by row (a 12,500 x 12,500 one is
    about 150 KB on disk and never held in memory here); returns its size in bytes."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    row = b"\x00" + bytes([value]) * width  # filter type 0, then the pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", idat))
        f.write(chunk(b"IEND", b""))
    return path.stat().st_size


def write_eps(path: Path) -> None:
    """A real (tiny) Encapsulated PostScript file, whatever `path`'s extension says: Pillow
    renders EPS by running Ghostscript on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
        "newpath 0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n"
    )


class _MakesFolder:
    """Pickles as a call of os.mkdir(marker): what a planted pickle could run instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def write_planted_cifar_batch(root: Path, marker: Path, name: str = "data_batch_1") -> Path:
    """root/cifar-10-batches-py/<name>: a CIFAR-10 batch whose 'data' is a pickled call of
    os.mkdir(marker) (harmless, and visible if it ever runs)."""
    path = root / "cifar-10-batches-py" / name
    with open(path, "wb") as f:
        pickle.dump({"batch_label": name, "data": _MakesFolder(marker), "labels": [0] * 10}, f)
    return path
