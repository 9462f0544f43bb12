"""CIFAR-10 through torchvision's loader, held in memory as uint8."""

from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset
from torchvision import datasets

from genlab.data.base import (
    ArrayImages,
    ImageDataModule,
    check_files,
    match_channels,
    resize_uint8,
)
from genlab.utils.errors import GenlabError


class _CIFAR10Files(datasets.CIFAR10):
    """torchvision's CIFAR10 reader that checks the files exist instead of re-hashing 170 MB
    at every start (torchvision's check_integrity skips the hash when md5 is None)."""

    train_list = [[f, None] for f, _ in datasets.CIFAR10.train_list]
    test_list = [[f, None] for f, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}


class CIFAR10(ImageDataModule):
    """CIFAR-10 (32x32 RGB, 10 classes): downloaded when allowed, else read from
    `data_dir/cifar-10-batches-py/` (the python pickles). Train is split into train / val."""

    name = "cifar10"

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("num_classes", 10)
        super().__init__(**kwargs)

    def _check(self) -> None:
        base = os.path.join(self.data_dir, datasets.CIFAR10.base_folder)
        names = [f for f, _ in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list]
        check_files(
            [os.path.join(base, f) for f in names],
            what=f"CIFAR-10 not found under data.data_dir={self.data_dir!r}",
            how=(
                f"Extract cifar-10-python.tar.gz so that {base}/ holds the batch files, or run "
                "once where the network allows with data.download=true (the default)."
            ),
        )

    def prepare_data(self) -> None:
        if self.download:
            try:
                datasets.CIFAR10(self.data_dir, train=True, download=True)
            except (RuntimeError, OSError) as exc:
                self._check()
                raise GenlabError(f"CIFAR-10: download failed ({exc}).") from exc
        self._check()

    def load_splits(self) -> dict[str, Dataset]:
        self._check()
        out = {}
        for split, train in (("train", True), ("test", False)):
            ds = _CIFAR10Files(self.data_dir, train=train, download=False)
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
            images = match_channels(
                resize_uint8(images, self.image_size), self.channels, self.name
            )
            out[split] = ArrayImages(images, torch.tensor(ds.targets, dtype=torch.long))
        out["train"], out["val"] = self.split_off(out["train"], self.val_fraction)
        return out
