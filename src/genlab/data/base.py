"""The base datamodule: images in [0, 1] with labels, deterministic splits, shape from config."""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from genlab.utils.errors import GenlabError

BINARIZE = (None, "static", "dynamic")


class ArrayImages(Dataset):
    """Images held in memory as uint8 (N, C, H, W) with labels; items are floats in [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        assert images.dtype == torch.uint8 and images.ndim == 4, images.shape
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        return self.images[i].float().div_(255), self.labels[i]


class Binarized(Dataset):
    """Samples each pixel as Bernoulli(p = intensity).

    `static`: one fixed draw per image (seeded by its index, so every epoch and every process
    sees the same binary image); `dynamic`: a fresh draw each time the image is read.
    """

    def __init__(self, base: Dataset, mode: str, seed: int) -> None:
        self.base, self.mode, self.seed = base, mode, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        x, y = self.base[i]
        gen = None
        if self.mode == "static":
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return torch.bernoulli(x, generator=gen), y


class Indexed(Dataset):
    """The items of `base` at `indices` (a deterministic split)."""

    def __init__(self, base: Dataset, indices: torch.Tensor) -> None:
        self.base, self.indices = base, indices.tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.base[self.indices[i]]


class EpochShuffle(Sampler[int]):
    """A random permutation that depends only on (seed, epoch): the order survives a resume."""

    def __init__(self, data: Sized, seed: int) -> None:
        self.n, self.seed, self.epoch = len(data), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to (size, size) with antialiasing, in chunks."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = [
        F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for chunk in images.split(4096)
    ]
    return torch.cat(out)


def match_channels(images: torch.Tensor, channels: int, name: str) -> torch.Tensor:
    """Convert uint8 (N, C, H, W) grey images to RGB (or RGB to grey) to give `channels`."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round_().to(torch.uint8)
    raise GenlabError(f"data.channels={channels} is not possible for {name}: use 1 or 3.")


class ImageDataModule(L.LightningDataModule):
    """Base class: subclasses load the splits; this class batches, binarizes and describes them.

    Every batch is `(x, y)`: x float (B, channels, image_size, image_size) in [0, 1], y the
    labels (class index, or an attribute vector for CelebA). `image_shape`, `channels` and
    `num_classes` let models size their nets from the data.
    """

    name = "images"

    def __init__(
        self,
        *,
        data_dir: str = "data",
        image_size: int,
        channels: int,
        num_classes: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        binarize: str | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        download: bool = True,
    ) -> None:
        super().__init__()
        if binarize not in BINARIZE:
            raise GenlabError(
                f"data.binarize={binarize!r} is not an option: use null, static or dynamic."
            )
        if image_size < 4 or channels not in (1, 3):
            raise GenlabError(
                f"data.image_size={image_size} / data.channels={channels}: the image size must "
                "be at least 4 pixels and channels 1 (grey) or 3 (RGB)."
            )
        if not 0.0 <= val_fraction < 1.0:
            raise GenlabError(f"data.val_fraction={val_fraction} must be in [0, 1).")
        self.data_dir = str(data_dir)
        self.image_size, self.channels, self.num_classes = image_size, channels, num_classes
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.binarize, self.val_fraction = binarize, val_fraction
        self.split_seed, self.shuffle_seed, self.download = split_seed, shuffle_seed, download
        self.splits: dict[str, Dataset] = {}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image in every batch."""
        return (self.channels, self.image_size, self.image_size)

    # --- what subclasses provide -----------------------------------------------------------
    def load_splits(self) -> dict[str, Dataset]:
        """Return {'train', 'val', 'test'} datasets of (x in [0, 1], label)."""
        raise NotImplementedError

    # --- shared machinery ------------------------------------------------------------------
    def split_off(self, data: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
        """Split `data` into (rest, part of size `fraction`) by a permutation seeded by split_seed."""
        n = len(data)  # type: ignore[arg-type]
        n_part = round(n * fraction)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        return Indexed(data, perm[n_part:].sort().values), Indexed(data, perm[:n_part].sort().values)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = self.load_splits()
        if self.binarize is not None:
            # Evaluation splits always use a fixed draw so test numbers are comparable.
            splits = {
                name: Binarized(ds, self.binarize if name == "train" else "static", self.split_seed + i)
                for i, (name, ds) in enumerate(splits.items())
            }
        self.splits = splits

    def dataset(self, split: str) -> Dataset:
        if not self.splits:
            self.setup()
        return self.splits[split]

    def _loader(self, split: str, *, train: bool) -> DataLoader:
        data = self.dataset(split)
        return DataLoader(
            data,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=EpochShuffle(data, self.shuffle_seed) if train else None,
            drop_last=train and len(data) > self.batch_size,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


def check_files(paths: list[str], *, what: str, how: str) -> None:
    """Raise a GenlabError listing the files of `paths` that do not exist."""
    import os

    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        shown = "\n  ".join(missing[:8]) + ("\n  ..." if len(missing) > 8 else "")
        raise GenlabError(f"{what}: these files are missing:\n  {shown}\n{how}")


Transform = Callable[[Any], torch.Tensor]
