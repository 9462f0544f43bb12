"""Any folder of images: flat, or one subfolder per class (torchvision's ImageFolder layout)."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from genlab.data.cache import FileDataModule, Source
from genlab.data.datamodules import Indexed
from genlab.data.untrusted_files import check_link, list_files, walk_files
from genlab.utils.errors import GenlabError


class ImageFolder(FileDataModule):
    """Images from `path`, resized (short side) and center-cropped to `image_size`.

    With one subfolder per class the labels are the class indices (sorted folder names);
    a flat folder gives label 0 to every image. Every file is decoded before training: one that
    does not decode (truncated, not an image) is an error naming it, or, with
    `on_bad_file=skip`, left out with a warning. Train / val / test are split by `val_fraction`
    and `test_fraction`; a split that a fraction asks for but that gets no image is an error.
    `cache=true` keeps the decoded images on disk (see genlab.data.cache).

    Class folders are walked recursively, following links inside `path`; a link loop, or a
    link out of `path` (unless `outside_links=follow`), is an error naming it.
    """

    name = "image_folder"

    def __init__(self, *, path: str, test_fraction: float = 0.1, **kwargs) -> None:
        if not 0.0 <= test_fraction <= 1.0:
            raise GenlabError(f"data.test_fraction={test_fraction} must be in [0, 1].")
        super().__init__(**kwargs)
        self.path, self.test_fraction = str(path), test_fraction
        self.classes: list[str] = []
        self._labels: list[int] = []

    @property
    def where(self) -> str:
        return f"data.path={self.path!r}"

    def source(self) -> Source:
        if not os.path.isdir(self.path):
            raise GenlabError(
                f"data.path={self.path!r} is not a directory. Point it at a folder of images "
                "(flat, or one subfolder per class)."
            )
        root = os.path.realpath(self.path)
        walk = {"root": root, "outside_links": self.outside_links}
        # hidden folders (.cache, .ipynb_checkpoints) are not classes
        subdirs = [e.name for e in os.scandir(self.path) if e.is_dir() and e.name[0] != "."]
        if subdirs:
            # the order of torchvision's make_dataset (classes sorted, then paths), without
            # its walk, which follows link loops for ever
            self.classes = sorted(subdirs)
            samples = []
            for label, name in enumerate(self.classes):
                folder = os.path.join(self.path, name)
                if os.path.islink(folder):
                    check_link(
                        folder, root, outside_links=self.outside_links, option="data.outside_links"
                    )
                samples += [(p, label) for p in walk_files(folder, IMG_EXTENSIONS, **walk)]
        else:
            self.classes = []
            files = list_files(self.path, IMG_EXTENSIONS, hidden=True, **walk)
            samples = [(p, 0) for p in files]
        if not samples:
            raise GenlabError(
                f"data.path={self.path!r} holds no image files ({', '.join(IMG_EXTENSIONS)})."
            )
        self._labels = [label for _, label in samples]
        return Source(
            name=self.name,
            root=self.path,
            paths=[p for p, _ in samples],
            extra=self.classes,
        )

    def labels(self, source: Source) -> tuple[torch.Tensor, dict[str, Any]]:
        return torch.tensor(self._labels, dtype=torch.long), {"classes": self.classes}

    def use_meta(self, meta: dict[str, Any]) -> None:
        if self.classes:
            if self.num_classes not in (None, len(self.classes)):
                raise GenlabError(
                    f"data.num_classes={self.num_classes} but {self.path!r} has "
                    f"{len(self.classes)} class folders; set data.num_classes={len(self.classes)}."
                )
            self.num_classes = len(self.classes)

    def make_splits(self, full: Dataset, keep: torch.Tensor) -> dict[str, Dataset]:
        rest, test = self.split_off(Indexed(full, keep), self.test_fraction)
        train, val = self.split_off(rest, self.val_fraction)
        splits = {"train": train, "val": val, "test": test}
        self._check_sizes(len(keep), {k: len(v) for k, v in splits.items()})
        return splits

    def _check_sizes(self, n: int, sizes: dict[str, int]) -> None:
        """A split that its fraction asks for but that gets no image would leave the run
        without its metrics (or without training): say so before training."""
        asked = {
            "train": 1.0 - self.test_fraction > 0,
            "val": self.val_fraction > 0,
            "test": self.test_fraction > 0,
        }
        empty = [k for k in ("train", "val", "test") if asked[k] and sizes[k] == 0]
        if not empty:
            return
        need = next(
            (m for m in range(n + 1, 100_000) if all(self._sizes(m)[k] > 0 for k in empty)),
            None,
        )
        got = ", ".join(f"{sizes[k]} {k}" for k in ("train", "val", "test"))
        which = " and ".join(empty) + (" splits" if len(empty) > 1 else " split")
        what = "nothing to train on" if "train" in empty else "no metrics from them"
        if len(empty) == 1 and "train" not in empty:
            what = "no metrics from it"
        add = f"Add images (at least {need} in all), raise the fraction(s), " if need else ""
        raise GenlabError(
            f"data.path={self.path!r} has {n} usable image(s): with "
            f"data.val_fraction={self.val_fraction} and data.test_fraction={self.test_fraction} "
            f"the splits get {got} image(s), so the {which} would be empty ({what}). {add}"
            "or set the fraction of a split you do not want to 0 (data.val_fraction=0; "
            "data.test_fraction=0 with test=false)."
        )

    def _sizes(self, n: int) -> dict[str, int]:
        # the sizes split_off gives n images
        n_test = round(n * self.test_fraction)
        n_val = round((n - n_test) * self.val_fraction)
        return {"train": n - n_test - n_val, "val": n_val, "test": n_test}
