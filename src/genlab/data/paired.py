"""Paired images for image-to-image translation.

A translation batch is `(target, source)`: the image to produce first, where every other
genlab batch has its images, and the source image in the condition slot, where class-conditional
models get their labels. So a translation model is conditional on an image, not on a class,
and everything that reads a split's images (generation metrics' real features, fixed batches)
sees the targets.

Pairs come from files (`PairedImages`, `data=paired`) or are derived from any image dataset by a
pairing (`data/pairing=sr_x4|center_mask|edges|...`, genlab.data.pairing), which the datamodule
applies to every batch on its device. `pair_dataset(dm, split)` and `load_pairs(...)` give
(target, source) pairs of a split whichever way they are made, for callbacks, evaluation and
the translate CLI.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2 import functional as TF

from genlab.data.cache import find_bad_images
from genlab.data.datamodules import ImageDataModule, Indexed
from genlab.data.pairing import FilePairs, Pairing
from genlab.data.untrusted_files import (
    DEFAULT_MAX_IMAGE_PIXELS,
    check_link,
    check_links_option,
    check_max_pixels,
    list_files,
    open_image,
    read_image,
    reason,
)
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# pix2pix's random jitter: resize 256 -> 286, then a random 256 crop
JITTER_SCALE = 286 / 256


# modes of images with one colour channel (grey, with or without alpha, any bit depth)
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def image_files(
    folder: str | Path,
    *,
    root: str | None = None,
    outside_links: str = "error",
    option: str = "data.outside_links",
) -> list[str]:
    """The image files directly inside `folder` (not hidden), sorted by name; a link out of
    the real folder `root` (default: `folder`) is a GenlabError unless `outside_links=follow`."""
    root = os.path.realpath(root if root is not None else folder)
    return list_files(
        str(folder), IMG_EXTENSIONS, root=root, outside_links=outside_links, option=option
    )


def to_tensor(image: Image.Image, channels: int, size: int) -> torch.Tensor:
    """PIL image -> float (channels, size, size) in [0, 1]: short side resized (antialiased),
    then center-cropped, as the other file datasets do."""
    image = image.convert("L" if channels == 1 else "RGB")
    x = TF.pil_to_tensor(image)  # (c, h, w) uint8
    x = TF.resize(x, [size], antialias=True)
    x = TF.center_crop(x, [size, size])
    return x.float().div_(255)


class PairFiles(Dataset):
    """(target, source) pairs read from files: `items` are (A path, B path), or (AB path, None)
    for pix2pix's aligned files (A left, B right, each half the width). `direction` AtoB makes
    A the source. With `augment`, pix2pix's training augmentation: random jitter (resize to
    286/256 of the size, random crop back) and/or horizontal flips, the same for both images.
    """

    def __init__(
        self,
        items: Sequence[tuple[str, str | None]],
        *,
        direction: str,
        channels: int,
        image_size: int,
        jitter: bool = False,
        hflip: bool = False,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.items, self.direction = list(items), direction
        self.max_pixels = max_pixels
        self.channels, self.image_size, self.jitter, self.hflip = (
            channels,
            image_size,
            jitter,
            hflip,
        )

    def __len__(self) -> int:
        return len(self.items)

    def read(self, i: int) -> tuple[Image.Image, Image.Image]:
        """The (A, B) images of pair i."""
        a_path, b_path = self.items[i]
        try:
            if b_path is None:
                ab = read_image(a_path, max_pixels=self.max_pixels)
                w, h = ab.size
                half = w // 2  # pix2pix: A = [0, w/2), B = [w/2, w)
                return ab.crop((0, 0, half, h)), ab.crop((half, 0, w, h))
            return (
                read_image(a_path, max_pixels=self.max_pixels),
                read_image(b_path, max_pixels=self.max_pixels),
            )
        except OSError as exc:  # the file changed after the check in setup
            raise GenlabError(
                f"image {(a_path, b_path)!r} could not be read ({reason(exc)}): "
                "it changed after the check before training; replace it."
            ) from None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.read(i)
        source, target = (a, b) if self.direction == "AtoB" else (b, a)
        size = self.image_size
        if self.jitter:
            size = round(self.image_size * JITTER_SCALE)
        pair = [to_tensor(im, self.channels, size) for im in (target, source)]
        if self.jitter:
            top, left = (int(v) for v in torch.randint(0, size - self.image_size + 1, (2,)))
            pair = [x[:, top : top + self.image_size, left : left + self.image_size] for x in pair]
        if self.hflip and bool(torch.rand(()) < 0.5):
            pair = [x.flip(-1) for x in pair]
        return pair[0], pair[1]


class PairedImages(ImageDataModule):
    """Image pairs from files; batches are (target, source), both (B, C, H, W) in [0, 1].

    `layout`:
    - `aligned` (pix2pix's format): each file holds the pair side by side, A on the left and B
      on the right (e.g. facades: 512x256 files);
    - `folders`: `path/<a_dir>/` and `path/<b_dir>/` hold the two images of each pair under the
      same file name (the extension may differ).

    Splits: `path/train/`, `val/`, `test/` (for `folders`: `path/A/train/`, ...) when they
    exist (no `val/`: `val_fraction` of train; no `test/`: the val split is also the test
    split), else one flat folder split by `val_fraction` and `test_fraction`. `direction`
    `AtoB` maps A to B, `BtoA` the reverse. Both images are resized (short side) and
    center-cropped to `image_size`; `jitter` and `hflip` augment training pairs as pix2pix does.

    Every file is decoded before training: an unreadable file, or one without its partner, is
    an error naming it, or with `on_bad_file=skip` left out (with its pair) with a warning.
    Files are untrusted (genlab.data.untrusted_files): an image above `max_image_pixels`
    pixels is refused before decoding, a link out of `path` unless `outside_links=follow`.
    When the files are smaller than `image_size` or grey while `channels=3` (the defaults are
    pix2pix's 256-px RGB), a warning says what is done to them and which options fit them.
    """

    name = "paired"

    def __init__(
        self,
        *,
        path: str,
        layout: str = "aligned",
        direction: str = "AtoB",
        a_dir: str = "A",
        b_dir: str = "B",
        on_bad_file: str = "error",
        jitter: bool = False,
        test_fraction: float = 0.1,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        outside_links: str = "error",
        **kwargs: Any,
    ) -> None:
        if layout not in ("aligned", "folders"):
            raise GenlabError(f"data.layout={layout!r}: use aligned (AB files) or folders.")
        if direction not in ("AtoB", "BtoA"):
            raise GenlabError(f"data.direction={direction!r}: use AtoB or BtoA.")
        if on_bad_file not in ("error", "skip"):
            raise GenlabError(f"data.on_bad_file={on_bad_file!r}: use error or skip.")
        if kwargs.get("pairing") is not None:
            raise GenlabError(
                "data=paired reads both images of a pair from files, so it takes no pairing; "
                "the translation models bring one for single-image datasets (model=pix2pix: "
                "edges): drop it with ~data/pairing on the command line (an experiment file: "
                "`- override /data/pairing@data.pairing: null` in its defaults)."
            )
        if kwargs.get("binarize") is not None or kwargs.get("device_resident"):
            raise GenlabError(
                "data=paired supports neither data.binarize nor data.device_resident: set them "
                "to null / false."
            )
        kwargs.pop("pairing", None)
        kwargs.setdefault("num_classes", None)
        super().__init__(**kwargs)
        self.pairing: Pairing = FilePairs()
        self.path, self.layout, self.direction = str(path), layout, direction
        self.a_dir, self.b_dir, self.on_bad_file = a_dir, b_dir, on_bad_file
        self.jitter, self.test_fraction = jitter, test_fraction
        self.max_image_pixels = check_max_pixels(max_image_pixels, "data.max_image_pixels")
        self.outside_links = check_links_option(outside_links, "data.outside_links")
        self._scanned: dict[str, list[tuple[str, str | None]]] | None = None

    # --- finding the pairs ------------------------------------------------------------------
    def _roots(self) -> list[str]:
        if self.layout == "aligned":
            return [self.path]
        return [os.path.join(self.path, self.a_dir), os.path.join(self.path, self.b_dir)]

    def _groups(self) -> dict[str, list[str]]:
        """{split or 'all': [folder per root]}: split subfolders when train/ exists."""
        roots = self._roots()
        for root in roots:
            if not os.path.isdir(root):
                raise GenlabError(
                    f"data.path={self.path!r}: {root!r} is not a directory. data.layout="
                    f"{self.layout} expects "
                    + (
                        "a folder of AB images (or train/ val/ test/ folders of them)."
                        if self.layout == "aligned"
                        else f"the folders {self.a_dir}/ and {self.b_dir}/ (data.a_dir, "
                        "data.b_dir) holding images with matching names."
                    )
                )
        if os.path.isdir(os.path.join(roots[0], "train")):
            groups = {
                s: [os.path.join(r, s) for r in roots]
                for s in SPLITS
                if os.path.isdir(os.path.join(roots[0], s))
            }
        else:
            groups = {"all": roots}
        top = os.path.realpath(self.path)
        for folder in {f for folders in groups.values() for f in [*folders, *roots]}:
            if os.path.islink(folder):
                check_link(
                    folder, top, outside_links=self.outside_links, option="data.outside_links"
                )
        return groups

    def _files(self, folder: str) -> list[str]:
        return image_files(folder, root=self.path, outside_links=self.outside_links)

    def _pairs_in(self, folders: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
        """The pairs in one group of folders, and the files without a partner."""
        if self.layout == "aligned":
            return [(p, None) for p in self._files(folders[0])], []
        by_stem: list[dict[str, str]] = []
        for folder in folders:
            if not os.path.isdir(folder):
                raise GenlabError(
                    f"data.path={self.path!r}: {folders[0]!r} has no counterpart {folder!r}: "
                    "both image folders need the same split subfolders."
                )
            stems: dict[str, str] = {}
            for p in self._files(folder):
                stem = Path(p).stem
                if stem in stems:
                    raise GenlabError(
                        f"data.path={self.path!r}: {stems[stem]!r} and {p!r} have the same name; "
                        "pairs are matched by file name without extension, so rename one."
                    )
                stems[stem] = p
            by_stem.append(stems)
        a, b = by_stem
        lonely = [f"{a[s]} (no {self.b_dir} file named {s}.*)" for s in sorted(set(a) - set(b))]
        lonely += [f"{b[s]} (no {self.a_dir} file named {s}.*)" for s in sorted(set(b) - set(a))]
        return [(a[s], b[s]) for s in sorted(set(a) & set(b))], lonely

    def scan(self) -> dict[str, list[tuple[str, str | None]]]:
        """{split or 'all': [(A path, B path | None)]} of every usable pair, after the checks."""
        if self._scanned is not None:
            return self._scanned
        groups = self._groups()
        pairs, lonely = {}, []
        for name, folders in groups.items():
            pairs[name], missing = self._pairs_in(folders)
            lonely += missing
        if lonely and self.on_bad_file == "error":
            shown = "\n  ".join(lonely[:10]) + ("\n  ..." if len(lonely) > 10 else "")
            raise GenlabError(
                f"data.path={self.path!r}: {len(lonely)} image(s) have no partner:\n  {shown}\n"
                "Add the partners or remove these files, or set data.on_bad_file=skip to leave "
                "them out."
            )
        if lonely:
            log.warning(
                "%s: leaving out %d image(s) without a partner: %s",
                self.path,
                len(lonely),
                lonely[:10],
            )
        files = [p for items in pairs.values() for item in items for p in item if p is not None]
        bad = find_bad_images(files, what=self.name, max_pixels=self.max_image_pixels)
        headers = self._headers([f for f in files if f not in bad])
        bad.update(self._too_narrow(headers))
        if bad and self.on_bad_file == "error":
            shown = "\n  ".join(f"{p}  ({why})" for p, why in list(bad.items())[:10])
            more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise GenlabError(
                f"data.path={self.path!r}: {len(bad)} image file(s) cannot be read:\n  "
                f"{shown}{more}\nRemove or replace them, or set data.on_bad_file=skip to leave "
                "them (and their pairs) out"
                + (
                    " (or raise data.max_image_pixels for images that are genuinely that large)."
                    if any("data.max_image_pixels" in why for why in bad.values())
                    else "."
                )
            )
        if bad:
            log.warning(
                "%s: skipping %d unreadable image(s) and their pairs: %s",
                self.path,
                len(bad),
                list(bad)[:10],
            )
        pairs = {k: [it for it in v if not set(it) & set(bad)] for k, v in pairs.items()}
        if not pairs.get("train", pairs.get("all")):
            raise GenlabError(
                f"data.path={self.path!r} holds no readable image pairs for training "
                f"(layout={self.layout}, extensions {', '.join(IMG_EXTENSIONS)})."
            )
        self._say_what_is_done(
            {f: headers[f] for items in pairs.values() for item in items for f in item if f}
        )
        self._scanned = pairs
        return pairs

    def _headers(self, files: list[str]) -> dict[str, tuple[int, int, str]]:
        """{file: (width, height, mode)} from the headers (nothing decoded: the files were
        checked just before)."""
        out = {}
        for f in files:
            with open_image(
                f, max_pixels=self.max_image_pixels, option="data.max_image_pixels"
            ) as im:
                out[f] = (*im.size, im.mode)
        return out

    def _too_narrow(self, headers: dict[str, tuple[int, int, str]]) -> dict[str, str]:
        if self.layout != "aligned":
            return {}
        return {
            f: f"{w} px wide: an AB file holds two images side by side"
            for f, (w, _, _) in headers.items()
            if w < 2
        }

    def _say_what_is_done(self, headers: dict[str, tuple[int, int, str]]) -> None:
        """Warn when the images are upscaled to `image_size` or grey ones copied to RGB (the
        defaults are pix2pix's 256-px RGB, far from e.g. 32-px grey pairs), naming the options
        that would keep them as they are."""
        if not headers:
            return
        half = self.layout == "aligned"  # an AB file holds two images side by side
        short = Counter(min(w // 2 if half else w, h) for w, h, _ in headers.values())
        smaller = sum(n for side, n in short.items() if side < self.image_size)
        grey = all(mode in GREY_MODES for _, _, mode in headers.values())
        done = []
        if smaller:
            typical = short.most_common(1)[0][0]
            done.append(
                f"{smaller} of the {len(headers)} images are smaller than data.image_size="
                f"{self.image_size} (short side {typical} px for most) and are upscaled to it"
            )
        if grey and self.channels == 3:
            done.append("all of them are grey and are copied to 3 channels (data.channels=3)")
        if not done:
            return
        fit = []
        if smaller:
            fit.append(f"data.image_size={short.most_common(1)[0][0]}")
        if grey and self.channels == 3:
            fit.append("data.channels=1")
        log.warning(
            "data.path=%r: %s. To train at the files' own size and channels, set %s (the "
            "model's nets follow them).",
            self.path,
            "; ".join(done),
            " ".join(fit),
        )

    # --- splits -----------------------------------------------------------------------------
    def _dataset(self, items: list[tuple[str, str | None]], *, train: bool) -> PairFiles:
        return PairFiles(
            items,
            direction=self.direction,
            channels=self.channels,
            image_size=self.image_size,
            jitter=self.jitter and train,
            hflip=self.hflip and train,
            max_pixels=self.max_image_pixels,
        )

    def prepare_data(self) -> None:
        self.scan()

    def load_splits(self) -> dict[str, Dataset]:
        pairs = self.scan()
        if "all" in pairs:
            items = pairs["all"]
            rest, test = self.split_off(self._dataset(items, train=False), self.test_fraction)
        else:
            items = pairs["train"]
            rest, test = Indexed(self._dataset(items, train=False), torch.arange(len(items))), None
        if "val" in pairs:
            train_idx, val = (
                torch.as_tensor(rest.indices),
                self._dataset(pairs["val"], train=False),
            )
        else:
            train_part, val = self.split_off(rest, self.val_fraction)
            train_idx = torch.as_tensor(rest.indices)[torch.as_tensor(train_part.indices)]
        if test is None:
            test = self._dataset(pairs["test"], train=False) if "test" in pairs else val
        train = Indexed(self._dataset(items, train=True), train_idx)
        splits = {"train": train, "val": val, "test": test}
        # a split its fraction asks for but that got no pair leaves the run without it
        asked = {"train": True, "val": self.val_fraction > 0, "test": self.test_fraction > 0}
        if "all" not in pairs:
            asked["test"] = asked["val"] = asked["val"] or "val" in pairs
        empty = [k for k, v in splits.items() if asked[k] and len(v) == 0]  # type: ignore[arg-type]
        if empty:
            raise GenlabError(
                f"data.path={self.path!r}: the {' and '.join(empty)} split(s) got no pairs "
                f"({', '.join(f'{len(v)} {k}' for k, v in splits.items())}): add pairs or "
                "change data.val_fraction / data.test_fraction."
            )
        return splits

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch  # both images come from files; flips happen per pair in PairFiles


# --- pairs of any datamodule ---------------------------------------------------------------
def translation_pairing(datamodule: Any) -> Pairing:
    """The datamodule's pairing: how its sources are made, shown and baselined."""
    pairing = getattr(datamodule, "pairing", None)
    if pairing is None:
        raise GenlabError(
            f"the data ({getattr(datamodule, 'name', type(datamodule).__name__)}) gives single "
            "images, but image-to-image translation needs pairs: derive the sources with a "
            "pairing (data/pairing=edges, sr_x4, sr_x2, center_mask, rectangles, strokes or "
            "greyscale; with `+` for models other than pix2pix, srgan and inpaint) or read "
            "pairs from files with data=paired."
        )
    return pairing


def source_shape(datamodule: Any) -> tuple[int, int, int]:
    """(channels, height, width) of the datamodule's source images."""
    return translation_pairing(datamodule).source_shape(datamodule.image_shape)


class DerivedPairs(Dataset):
    """(target, source) items of a single-image dataset and a pairing (evaluation sources:
    the same for an image whenever it is read)."""

    def __init__(self, base: Dataset, pairing: Pairing) -> None:
        self.base, self.pairing = base, pairing

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.base[i][0]
        return x, self.pairing(x[None])[0]


def pair_dataset(datamodule: Any, split: str) -> Dataset:
    """A split as (target, source) items, for file pairs and derived pairs alike."""
    pairing = translation_pairing(datamodule)
    data = datamodule.dataset(split)
    return data if isinstance(pairing, FilePairs) else DerivedPairs(data, pairing)


def load_pairs(
    datamodule: Any, split: str, indices: Sequence[int], device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (n, C, H, W) and sources of the items `indices` of a split, on `device`;
    derived sources are made there, on the whole batch (evaluation sources)."""
    pairing = translation_pairing(datamodule)
    data = datamodule.dataset(split)
    items = [data[i] for i in indices]
    target = torch.stack([x for x, _ in items]).to(device)
    if isinstance(pairing, FilePairs):
        return target, torch.stack([s for _, s in items]).to(device)
    return target, pairing(target)
