"""Any folder of images: flat, or one subfolder per class (torchvision's ImageFolder layout)."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, find_classes, make_dataset

from genlab.data.base import ImageDataModule
from genlab.data.celeba import image_transform
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)


class FileImages(Dataset):
    """Images read from `samples` [(path, label)], transformed to tensors in [0, 1]."""

    def __init__(self, samples: list[tuple[str, int]], transform: Any) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        try:
            image = default_loader(path)
        except OSError as exc:  # the file changed after the check in setup
            raise GenlabError(f"image {path!r} could not be read: {exc}") from exc
        return self.transform(image), label


def _readable(path: str) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:
        return False


class ImageFolder(ImageDataModule):
    """Images from `path`, resized (short side) and center-cropped to `image_size`.

    With one subfolder per class the labels are the class indices (sorted folder names);
    a flat folder gives label 0 to every image. Every file is checked when the data is set up:
    an unreadable one is an error naming it, or, with `on_bad_file=skip`, skipped with a
    warning. Train / val / test are split by `val_fraction` and `test_fraction`.
    """

    name = "image_folder"

    def __init__(
        self,
        *,
        path: str,
        test_fraction: float = 0.1,
        on_bad_file: str = "error",
        **kwargs,
    ) -> None:
        if on_bad_file not in ("error", "skip"):
            raise GenlabError(f"data.on_bad_file={on_bad_file!r}: use error or skip.")
        super().__init__(**kwargs)
        self.path, self.test_fraction, self.on_bad_file = str(path), test_fraction, on_bad_file
        self.classes: list[str] = []

    def scan(self) -> list[tuple[str, int]]:
        """List (path, label) of every image, checking each file can be opened."""
        if not os.path.isdir(self.path):
            raise GenlabError(
                f"data.path={self.path!r} is not a directory. Point it at a folder of images "
                "(flat, or one subfolder per class)."
            )
        subdirs = [e for e in os.scandir(self.path) if e.is_dir()]
        if subdirs:
            self.classes, class_to_idx = find_classes(self.path)
            samples = make_dataset(
                self.path, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True
            )
        else:
            self.classes = []
            samples = [
                (os.path.join(self.path, f), 0)
                for f in sorted(os.listdir(self.path))
                if f.lower().endswith(IMG_EXTENSIONS)
            ]
        bad = [p for p, _ in samples if not _readable(p)]
        if bad and self.on_bad_file == "error":
            shown = "\n  ".join(bad[:10]) + ("\n  ..." if len(bad) > 10 else "")
            raise GenlabError(
                f"data.path={self.path!r}: {len(bad)} image file(s) cannot be read:\n  {shown}\n"
                "Remove or replace them, or set data.on_bad_file=skip to leave them out."
            )
        if bad:
            log.warning("skipping %d unreadable image(s) in %s: %s", len(bad), self.path, bad[:10])
        good = [s for s in samples if s[0] not in set(bad)]
        if not good:
            raise GenlabError(
                f"data.path={self.path!r} holds no readable images ({', '.join(IMG_EXTENSIONS)})."
            )
        return good

    def prepare_data(self) -> None:
        self.scan()

    def load_splits(self) -> dict[str, Dataset]:
        samples = self.scan()
        if self.classes:
            if self.num_classes not in (None, len(self.classes)):
                raise GenlabError(
                    f"data.num_classes={self.num_classes} but {self.path!r} has "
                    f"{len(self.classes)} class folders; set data.num_classes={len(self.classes)}."
                )
            self.num_classes = len(self.classes)
        full = FileImages(samples, image_transform(self.image_size, self.channels))
        rest, test = self.split_off(full, self.test_fraction)
        train, val = self.split_off(rest, self.val_fraction)
        return {"train": train, "val": val, "test": test}
