"""CelebA (aligned and cropped faces) in the torchvision layout, with its 40 attributes."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import datasets

from genlab.data.cache import FileDataModule, Source, image_transform
from genlab.data.datamodules import Indexed, check_files
from genlab.utils.errors import GenlabError

__all__ = ["CelebA", "image_transform"]

_FILES = [f for _, _, f in datasets.CelebA.file_list if not f.endswith(".zip")]
# the official list_attr_celeba.txt is 26 MB (202,599 lines); a list file above this is refused
MAX_LIST_BYTES = 256 << 20


def _list_lines(path: str) -> list[str]:
    """The lines of a CelebA list file, bounded in size; a GenlabError naming it otherwise."""
    size = os.path.getsize(path)
    if size > MAX_LIST_BYTES:
        raise GenlabError(
            f"CelebA: {path} is {size:,} bytes, more than the {MAX_LIST_BYTES:,} genlab reads "
            "from a list file (the official ones are under 30 MB): replace it."
        )
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError:
        raise GenlabError(f"CelebA: {path} is not a text file: replace it.") from None


def _bad_line(path: str, number: int, line: str, expected: str) -> GenlabError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return GenlabError(
        f"CelebA: line {number} of {path} is {shown!r}, where {expected} is expected. Replace "
        "the file with the official one (from the CelebA site or a mirror of it)."
    )


def read_partition(path: str) -> tuple[list[str], list[int]]:
    """(image names, partition 0 train / 1 valid / 2 test) of list_eval_partition.txt."""
    names, parts = [], []
    for number, line in enumerate(_list_lines(path), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise _bad_line(path, number, line, "an image name and its partition (0, 1 or 2)")
        names.append(fields[0])
        parts.append(int(fields[1]))
    return names, parts


def read_attributes(path: str) -> tuple[list[str], list[str], torch.Tensor]:
    """(attribute names, image names, attributes 0/1 (N, n_attributes)) of
    list_attr_celeba.txt: a count, the attribute names, then a name and -1/1 per attribute
    on each line."""
    lines = [line for line in _list_lines(path) if line.strip()]
    if len(lines) < 2:
        raise GenlabError(f"CelebA: {path} has no attribute names: replace it.")
    attr_names = lines[1].split()
    names, rows = [], []
    for number, line in enumerate(lines[2:], 3):
        fields = line.split()
        values = fields[1:]
        if len(values) != len(attr_names) or any(v not in ("-1", "1") for v in values):
            raise _bad_line(
                path, number, line, f"an image name and {len(attr_names)} values of -1 or 1"
            )
        names.append(fields[0])
        rows.append([v == "1" for v in values])
    return attr_names, names, torch.tensor(rows, dtype=torch.long).view(-1, len(attr_names))


# the 40 attributes of the official list_attr_celeba.txt, in its order: the names of the
# condition before the file is read (genlab.edit and genlab.sample build a run's data without
# setting it up); setup replaces them with the file's own
ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip


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
        self.attr_names: list[str] = list(ATTRIBUTES)
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
        names, parts = read_partition(partition)
        self._partition = torch.tensor(parts, dtype=torch.long)
        images = os.path.join(self.root, "img_align_celeba")
        for name in names:  # a name is a file in img_align_celeba/, not a path elsewhere
            if os.path.basename(name) != name or name in (".", ".."):
                raise GenlabError(
                    f"CelebA: {partition} lists {name!r}, which is not a file name of "
                    f"{images}/: replace the file with the official one."
                )
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
        attr_names, names, attrs = read_attributes(os.path.join(self.root, "list_attr_celeba.txt"))
        if [os.path.basename(p) for p in source.paths] != names:
            raise GenlabError(
                f"CelebA: list_attr_celeba.txt and list_eval_partition.txt in {self.root} do not "
                "list the same images in the same order."
            )
        return attrs, {"attr_names": attr_names}

    def use_meta(self, meta: dict[str, Any]) -> None:
        self.attr_names = list(meta["attr_names"])

    def make_splits(self, full: Dataset, keep: torch.Tensor) -> dict[str, Dataset]:
        part = self._partition[keep]
        return {
            split: Indexed(full, keep[part == k])
            for k, split in enumerate(("train", "val", "test"))
        }
