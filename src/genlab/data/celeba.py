"""CelebA (aligned and cropped faces) in the torchvision layout, with its 40 attributes."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import datasets

from genlab.data.base import Indexed, check_files
from genlab.data.cache import FileDataModule, Source, image_transform
from genlab.utils.errors import GenlabError

__all__ = ["CelebA", "image_transform"]

_FILES = [f for _, _, f in datasets.CelebA.file_list if not f.endswith(".zip")]


class _CelebAFiles(datasets.CelebA):
    """torchvision's CelebA that accepts the files present without re-hashing them."""

    def _check_integrity(self) -> bool:
        base = os.path.join(self.root, self.base_folder)
        return all(os.path.isfile(os.path.join(base, f)) for f in _FILES) and os.path.isdir(
            os.path.join(base, "img_align_celeba")
        )


class CelebA(FileDataModule):
    """CelebA faces, resized and center-cropped to `image_size` (64 by default).

    Expects torchvision's layout: `data_dir/celeba/img_align_celeba/*.jpg` plus the five
    annotation files. Labels are the 40 binary attributes (`attr_names`), used for attribute
    vector arithmetic. Uses the official train / valid / test partition. Every image is
    decoded before training (`on_bad_file`); `cache=true` keeps them decoded on disk (see
    genlab.data.cache).
    """

    name = "celeba"

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("num_classes", None)
        super().__init__(**kwargs)
        self.attr_names: list[str] = []
        self._partition = torch.zeros(0, dtype=torch.long)

    @property
    def root(self) -> str:
        return os.path.join(self.data_dir, "celeba")

    def _check(self) -> None:
        check_files(
            [os.path.join(self.root, "img_align_celeba")]
            + [os.path.join(self.root, f) for f in _FILES],
            what=f"CelebA not found under data.data_dir={self.data_dir!r}",
            how=(
                "torchvision's Google Drive download often fails (quota). Get "
                "img_align_celeba.zip and the five .txt files from the CelebA website "
                "(mmlab.ie.cuhk.edu.hk/projects/CelebA.html) or a mirror of it, unzip the images "
                f"into {self.root}/img_align_celeba/ "
                f"and put the .txt files in {self.root}/; or point data.data_dir at a folder that "
                "holds celeba/."
            ),
        )

    def prepare_data(self) -> None:
        if self.download and not os.path.isdir(os.path.join(self.root, "img_align_celeba")):
            try:
                datasets.CelebA(self.data_dir, split="all", download=True)
            except Exception as exc:  # gdown missing, quota exceeded, no network...
                self._check()
                raise GenlabError(f"CelebA: download failed ({exc}).") from exc
        self._check()
        super().prepare_data()

    def source(self) -> Source:
        self._check()
        partition = os.path.join(self.root, "list_eval_partition.txt")
        names, parts = [], []
        with open(partition) as f:
            for line in f:
                if line.strip():
                    name, part = line.split()
                    names.append(name)
                    parts.append(int(part))
        self._partition = torch.tensor(parts, dtype=torch.long)
        images = os.path.join(self.root, "img_align_celeba")
        paths = [os.path.join(images, name) for name in names]
        check_files(
            paths,
            what=f"CelebA: images listed in {partition}",
            how=f"Unzip all of img_align_celeba.zip into {images}/.",
        )
        return Source(
            name=self.name,
            root=self.root,
            paths=paths,
            label_files=[os.path.join(self.root, "list_attr_celeba.txt"), partition],
        )

    def labels(self, source: Source) -> tuple[torch.Tensor, dict[str, Any]]:
        files = _CelebAFiles(self.data_dir, split="all", target_type="attr")
        if [os.path.basename(p) for p in source.paths] != list(files.filename):
            raise GenlabError(
                f"CelebA: list_attr_celeba.txt and list_eval_partition.txt in {self.root} do not "
                "list the same images in the same order."
            )
        return files.attr.long(), {"attr_names": list(files.attr_names)}

    def use_meta(self, meta: dict[str, Any]) -> None:
        self.attr_names = list(meta["attr_names"])

    def make_splits(self, full: Dataset, keep: torch.Tensor) -> dict[str, Dataset]:
        part = self._partition[keep]
        return {
            split: Indexed(full, keep[part == k])
            for k, split in enumerate(("train", "val", "test"))
        }
