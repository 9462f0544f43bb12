"""CelebA (aligned and cropped faces) in the torchvision layout, with its 40 attributes."""

from __future__ import annotations

import os
from functools import partial

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from genlab.data.base import ImageDataModule, check_files
from genlab.utils.errors import GenlabError

_FILES = [f for _, _, f in datasets.CelebA.file_list if not f.endswith(".zip")]


class _CelebAFiles(datasets.CelebA):
    """torchvision's CelebA that accepts the files present without re-hashing them."""

    def _check_integrity(self) -> bool:
        base = os.path.join(self.root, self.base_folder)
        return all(os.path.isfile(os.path.join(base, f)) for f in _FILES) and os.path.isdir(
            os.path.join(base, "img_align_celeba")
        )


def _convert(image: Image.Image, mode: str) -> Image.Image:
    return image.convert(mode)


def image_transform(image_size: int, channels: int) -> v2.Compose:
    """PIL image -> float tensor (channels, image_size, image_size) in [0, 1]: resize the short
    side, then center-crop (the DCGAN paper's 64x64 CelebA recipe)."""
    return v2.Compose(
        [
            v2.Lambda(partial(_convert, mode="L" if channels == 1 else "RGB")),
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


class CelebA(ImageDataModule):
    """CelebA faces, resized and center-cropped to `image_size` (64 by default).

    Expects torchvision's layout: `data_dir/celeba/img_align_celeba/*.jpg` plus the five
    annotation files. Labels are the 40 binary attributes (`attr_names`), used for attribute
    vector arithmetic. Uses the official train / valid / test partition.
    """

    name = "celeba"

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("num_classes", None)
        super().__init__(**kwargs)
        self.attr_names: list[str] = []

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

    def load_splits(self) -> dict[str, Dataset]:
        self._check()
        transform = image_transform(self.image_size, self.channels)
        out = {}
        for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
            out[split] = _CelebAFiles(
                self.data_dir, split=name, target_type="attr", transform=transform
            )
        self.attr_names = list(out["train"].attr_names)
        return out
