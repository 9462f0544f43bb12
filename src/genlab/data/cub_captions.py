"""Real captioned photos in their published layouts: CUB-200-2011 birds and Oxford-102
flowers, each with the 10 captions per image of Reed et al. (CVPR 2016), as StackGAN (Zhang
et al., ICCV 2017) trains on them.

Layouts (under `data_dir/<folder>`; the folders of StackGAN's `Data/birds` and `Data/flowers`):

    birds/                                  flowers/
      CUB_200_2011/images.txt                 jpg/image_00001.jpg ...
      CUB_200_2011/bounding_boxes.txt         text_c10/class_00001/image_06734.txt ...
      CUB_200_2011/classes.txt                trainvalclasses.txt   (82 class folder names)
      CUB_200_2011/images/<class>/<img>.jpg   testclasses.txt       (20)
      text_c10/<class>/<img>.txt   (10 lines each)
      trainvalclasses.txt   (150 class names)
      testclasses.txt       (50)

The split is by CLASS, as in the paper (150 train / 50 test bird species, 82 / 20 flower
classes): the class lists `trainvalclasses.txt` and `testclasses.txt` of Reed et al.'s
caption archives (`class_split=files`, the default). `class_split=seeded` draws
`n_test_classes` test classes by `split_seed` instead (NOT the paper's split: for subsets of
the data). CUB's own `train_test_split.txt` splits images, not classes, and is not used.
The validation split is `val_fraction` of the training images (the paper has none).

Birds are cropped as the authors' code does: a square of side 1.5 x the longer side of the
bounding box, centred on the box, clipped to the image, then resized (bicubic) to
`image_size`. Flowers are resized whole (no boxes). Every item is one (image, caption) pair,
`captions_per_image` items per image; captions are tokenised with a vocabulary built from the
training classes' captions (words only seen in the test classes become `<unk>`; captions
longer than `max_length` words are cut).

Pretrained sentence embeddings (the paper's char-CNN-RNN vectors): the authors ship them as
Python pickles, which genlab does not read (a pickle is a program). Convert them once, where
you trust the pickle, to `.npz` with two arrays: `filenames` (N,) strings naming the images
as StackGAN's filenames do (`001.Black_footed_Albatross/Black_Footed_Albatross_0046_18`,
`jpg/image_06734` or `image_06734`) and `embeddings` (N, K, D) float (K captions in the
order of the image's caption file, or (N, D) for one vector per image); or a `.npy` of shape
(N, K, D) in the datamodule's image order (`records()`). `data.embeddings=PATH` reads it
(bounded, no pickles) and `text_embedding_table()` gives the (caption tokens -> vector)
table of `genlab.nets.text_encoders.LookupTextEncoder`.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from genlab.data.caption_vocab import Vocabulary
from genlab.data.datamodules import SampleDataModule, check_files
from genlab.data.modality import Condition, Modality, image
from genlab.data.untrusted_files import (
    DEFAULT_MAX_IMAGE_PIXELS,
    check_link,
    check_links_option,
    check_max_pixels,
    read_image,
    reason,
)
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

# CUB's images.txt is 0.5 MB, a caption file under 2 KB: far above both
MAX_LIST_BYTES = 64 << 20
MAX_CAPTION_BYTES = 256 << 10
MAX_EMBEDDING_BYTES = 8 << 30
CLASS_SPLITS = ("files", "seeded")
CLASS_FILES = ("trainvalclasses.txt", "testclasses.txt")


# --- reading list files -----------------------------------------------------------------------
def read_lines(path: str, what: str, max_bytes: int = MAX_LIST_BYTES) -> list[str]:
    """The lines of a text file, bounded in size; a GenlabError naming it otherwise."""
    try:
        st = os.stat(path)
    except OSError:
        raise GenlabError(f"{what}: {path} is missing.") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader for ever
        raise GenlabError(f"{what}: {path} is not a regular file: replace it with the file.")
    size = st.st_size
    if size > max_bytes:
        raise GenlabError(
            f"{what}: {path} is {size:,} bytes, more than the {max_bytes:,} genlab reads from "
            "such a file: replace it with the dataset's own."
        )
    try:
        with open(path, "rb") as f:
            return f.read(max_bytes + 1).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise GenlabError(f"{what}: {path} is not UTF-8 text: replace it.") from None
    except OSError as exc:
        raise GenlabError(f"{what}: {path} cannot be read ({exc.strerror or exc}).") from None


def _bad_line(what: str, path: str, number: int, line: str, expected: str) -> GenlabError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return GenlabError(
        f"{what}: line {number} of {path} is {shown!r}, where {expected} is expected. Replace "
        "the file with the dataset's own."
    )


def read_table(path: str, what: str, fields: int, expected: str) -> dict[int, list[str]]:
    """{id: the other fields} of a CUB list file (`<id> <field> ...` per line)."""
    out: dict[int, list[str]] = {}
    for number, line in enumerate(read_lines(path, what), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != fields or not parts[0].isdigit():
            raise _bad_line(what, path, number, line, expected)
        key = int(parts[0])
        if key in out:
            raise _bad_line(what, path, number, line, f"an id not listed before ({key} is)")
        out[key] = parts[1:]
    return out


def read_boxes(path: str) -> dict[int, tuple[float, float, float, float]]:
    """{image id: (x, y, width, height)} of CUB's bounding_boxes.txt."""
    what = "CUB bounding boxes"
    expected = "an image id and x, y, width, height (numbers, width and height positive)"
    out = {}
    for key, values in read_table(path, what, 5, expected).items():
        try:
            x, y, w, h = (float(v) for v in values)
            ok = bool(np.isfinite((x, y, w, h)).all()) and w > 0 and h > 0
        except ValueError:
            ok = False
        if not ok:
            raise GenlabError(
                f"{what}: the box of image {key} in {path} is {' '.join(values)!r}, where "
                f"{expected} are expected. Replace the file with the dataset's own."
            )
        out[key] = (x, y, w, h)
    return out


def read_class_list(path: str, what: str) -> list[str]:
    """Class names, one per line (Reed et al.'s trainvalclasses.txt / testclasses.txt)."""
    return [line.strip() for line in read_lines(path, what) if line.strip()]


def read_captions(path: str, *, need: int) -> list[str]:
    """The first `need` non-empty lines of a caption file (Reed et al.: one caption a line)."""
    if not os.path.lexists(path):
        raise GenlabError(
            f"the caption file {path} is missing: every image needs its text_c10/<class>/"
            "<image>.txt (from Reed et al.'s caption archive of the dataset)."
        )
    lines = [ln.strip() for ln in read_lines(path, "captions", MAX_CAPTION_BYTES) if ln.strip()]
    if len(lines) < need:
        raise GenlabError(
            f"the caption file {path} has {len(lines)} captions, fewer than "
            f"data.captions_per_image={need}: replace it with the archive's file, or set "
            f"data.captions_per_image={max(1, len(lines))}."
        )
    return lines[:need]


# --- cropping ---------------------------------------------------------------------------------
def crop_box(
    width: int, height: int, box: tuple[float, float, float, float]
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of StackGAN's crop of an image of `width` x `height` with the
    bounding box (x, y, w, h): a square of half-side int(0.75 * max(w, h)) around the box's
    centre (integer pixels, as the authors' code truncates), clipped to the image."""
    x, y, w, h = (int(v) for v in box)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    r = int(max(w, h) * 0.75)
    return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)


def decode_photo(
    path: str,
    box: tuple[float, float, float, float] | None,
    *,
    image_size: int,
    channels: int,
    max_pixels: int,
) -> torch.Tensor:
    """uint8 (channels, image_size, image_size) of an image file: cropped to `box` (StackGAN's
    crop) when given, resized with bicubic filtering."""
    photo = read_image(path, max_pixels=max_pixels)
    if box is not None:
        left, top, right, bottom = crop_box(*photo.size, box)
        if right <= left or bottom <= top:
            raise OSError(f"its bounding box {box} lies outside the {photo.size} image")
        photo = photo.crop((left, top, right, bottom))
    photo = photo.resize((image_size, image_size), Image.Resampling.BICUBIC)
    if channels == 1:
        photo = photo.convert("L")
    x = torch.from_numpy(np.asarray(photo, dtype=np.uint8).copy())
    return x[None] if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


# --- embeddings files -------------------------------------------------------------------------
def _npy_member(z: zipfile.ZipFile, name: str, path: str, max_bytes: int) -> np.ndarray:
    try:
        info = z.getinfo(name)
    except KeyError:
        raise GenlabError(
            f"the embeddings file {path} has no array {name.removesuffix('.npy')!r}: save it "
            "with np.savez(path, filenames=..., embeddings=...)."
        ) from None
    if info.file_size > max_bytes:
        raise GenlabError(
            f"the embeddings file {path} holds {name} of {info.file_size:,} bytes, more than "
            f"the {max_bytes:,} genlab reads."
        )
    with z.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def read_embeddings(
    path: str, *, max_bytes: int = MAX_EMBEDDING_BYTES
) -> tuple[list[str] | None, np.ndarray]:
    """(image names or None, float32 embeddings (N, K, D)) of a `.npz` (filenames +
    embeddings) or `.npy` (embeddings in the datamodule's image order) file. Arrays only: a
    file holding Python objects (a pickle) is refused."""
    if not os.path.isfile(path):
        raise GenlabError(f"data.embeddings={path!r}: no such file (or not a regular file).")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise GenlabError(
            f"the embeddings file {path} is {size:,} bytes, more than the {max_bytes:,} genlab "
            "reads."
        )
    names = None
    try:
        if path.endswith(".npz"):
            with zipfile.ZipFile(path) as z:
                raw_names = _npy_member(z, "filenames.npy", path, max_bytes)
                vectors = _npy_member(z, "embeddings.npy", path, max_bytes)
            if raw_names.ndim != 1 or raw_names.dtype.kind not in "US":
                raise GenlabError(
                    f"the embeddings file {path}: 'filenames' must be a 1-d array of strings, "
                    f"not {raw_names.dtype} of shape {raw_names.shape}."
                )
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw_names.tolist()]
        elif path.endswith(".npy"):
            vectors = np.load(path, allow_pickle=False)
        else:
            raise GenlabError(
                f"data.embeddings={path!r}: give a .npz (filenames + embeddings) or a .npy file "
                "(pickles, as the authors ship, are not read: convert them once)."
            )
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise GenlabError(
            f"the embeddings file {path} cannot be read as numpy arrays without pickles "
            f"({type(exc).__name__}: {exc}): save plain arrays with np.savez / np.save."
        ) from None
    if vectors.dtype.kind not in "fiu" or vectors.ndim not in (2, 3):
        raise GenlabError(
            f"the embeddings file {path}: 'embeddings' must be numbers of shape (N, K, D) or "
            f"(N, D), not {vectors.dtype} of shape {vectors.shape}."
        )
    vectors = vectors.astype(np.float32)
    if vectors.ndim == 2:
        vectors = vectors[:, None]
    if not np.isfinite(vectors).all():
        raise GenlabError(f"the embeddings file {path} holds NaN or infinite values.")
    if names is not None and len(names) != len(vectors):
        raise GenlabError(
            f"the embeddings file {path} names {len(names)} images but holds {len(vectors)} "
            "rows of embeddings."
        )
    return names, vectors


def _embedding_key(name: str) -> str:
    name = name.replace("\\", "/").removesuffix(".jpg")
    return name.removeprefix("jpg/")


# --- datasets and datamodules -----------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """One image of a captioned dataset: its name (StackGAN's filename, no suffix), file,
    class, bounding box (x, y, w, h) or None, and caption file."""

    name: str
    path: str
    class_name: str
    box: tuple[float, float, float, float] | None
    captions: str


class CaptionedPhotos(Dataset):
    """(image, caption) pairs: item i is image i // K with caption i % K, as (image float
    (C, S, S) in [0, 1], tokens int64 (L,)). Images are held decoded (`images`, uint8) or
    decoded on every read (`images=None`)."""

    def __init__(
        self,
        records: Sequence[Record],
        texts: list[list[str]],
        tokens: torch.Tensor,
        images: torch.Tensor | None,
        decode: Any,
    ) -> None:
        self.records, self.texts, self.tokens, self.images = list(records), texts, tokens, images
        self.decode = decode
        self.per_image = tokens.shape[1]

    def __len__(self) -> int:
        return len(self.records) * self.per_image

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j, k = divmod(i, self.per_image)
        if self.images is not None:
            x = self.images[j]
        else:
            try:
                x = self.decode(self.records[j])
            except Exception as exc:
                raise GenlabError(
                    f"image {self.records[j].path!r} could not be decoded ({reason(exc)}); it "
                    "changed after the check before training: replace it."
                ) from None
        return x.float().div_(255), self.tokens[j, k]

    def caption(self, i: int) -> str:
        j, k = divmod(i, self.per_image)
        return self.texts[j][k]


class CaptionedPhotoData(SampleDataModule):
    """Base of the real captioned datasets: subclasses list their images (`records`);
    this class splits them by class, builds the vocabulary, decodes and serves them."""

    name = "captioned_photos"
    folder_default = "captioned"

    def __init__(
        self,
        *,
        folder: str | None = None,
        image_size: int = 64,
        channels: int = 3,
        captions_per_image: int = 10,
        max_length: int = 32,
        min_word_count: int = 1,
        class_split: str = "files",
        n_test_classes: int = 50,
        embeddings: str | None = None,
        preload: bool = True,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        outside_links: str = "error",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if class_split not in CLASS_SPLITS:
            raise GenlabError(
                f"data.class_split={class_split!r}: use files (the paper's class lists) or seeded."
            )
        if image_size < 4 or channels not in (1, 3) or captions_per_image < 1 or max_length < 1:
            raise GenlabError(
                f"data.image_size={image_size}, data.channels={channels}, "
                f"data.captions_per_image={captions_per_image}, data.max_length={max_length}: "
                "the size must be at least 4, channels 1 or 3, the others at least 1."
            )
        self.folder = folder or self.folder_default
        self.image_size, self.channels = image_size, channels
        self.captions_per_image, self.max_length = captions_per_image, max_length
        self.min_word_count = min_word_count
        self.class_split, self.n_test_classes = class_split, n_test_classes
        self.embeddings_path = str(embeddings) if embeddings else None
        self.preload = preload
        self.max_image_pixels = check_max_pixels(max_image_pixels, "data.max_image_pixels")
        self.outside_links = check_links_option(outside_links, "data.outside_links")
        self.vocab: Vocabulary | None = None
        self.num_classes = None
        self._records: list[Record] | None = None
        self._embeddings: np.ndarray | None = None  # (N images, K, D) in records() order

    @property
    def root(self) -> str:
        return os.path.join(self.data_dir, self.folder)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def modality(self) -> Modality:
        return image(self.channels, self.image_size)

    @property
    def condition(self) -> Condition:
        if self.vocab is None:
            self.setup()
        assert self.vocab is not None
        return Condition("tokens", (self.max_length,), vocab=self.vocab.words)

    def encode_condition(self, text: str) -> torch.Tensor:
        """`genlab.sample text=...`: one caption as int64 (1, max_length) tokens, in words of
        the training captions (an unknown word is refused, named; a longer caption too)."""
        if self.vocab is None:
            self.setup()
        assert self.vocab is not None
        return self.vocab.encode_batch([text], max_length=self.max_length, where="text=")

    # --- what subclasses provide ------------------------------------------------------------
    def list_records(self) -> list[Record]:
        raise NotImplementedError

    # --- shared machinery -------------------------------------------------------------------
    def records(self) -> list[Record]:
        """Every image of the dataset, in a fixed order (read once)."""
        if self._records is None:
            self._records = self.list_records()
            if not self._records:
                raise GenlabError(f"{self.name}: no images found under {self.root}.")
        return self._records

    def _inside(self, path: str) -> str:
        """`path`, after refusing one that leads out of the data folder (a name with `..` in
        a list file, or a link), unless data.outside_links=follow."""
        root = os.path.realpath(self.root)
        check_link(path, root, outside_links=self.outside_links, option="data.outside_links")
        return path

    def class_split_of(self, classes: list[str]) -> tuple[set[str], set[str]]:
        """(train classes, test classes) of the dataset's `classes`."""
        if self.class_split == "seeded":
            if not 0 < self.n_test_classes < len(classes):
                raise GenlabError(
                    f"data.n_test_classes={self.n_test_classes}: the dataset has "
                    f"{len(classes)} classes; hold out between 1 and {len(classes) - 1}."
                )
            gen = torch.Generator().manual_seed(self.split_seed)
            perm = torch.randperm(len(classes), generator=gen).tolist()
            test = {classes[i] for i in perm[: self.n_test_classes]}
            return set(classes) - test, test
        paths = [os.path.join(self.root, f) for f in CLASS_FILES]
        check_files(
            paths,
            what=f"{self.name}: the class split (data.class_split=files)",
            how=(
                f"Put Reed et al.'s class lists ({', '.join(CLASS_FILES)}, one class name a "
                f"line) in {self.root}, or set data.class_split=seeded to draw "
                "data.n_test_classes test classes by data.split_seed (not the paper's split)."
            ),
        )
        train = read_class_list(paths[0], f"{self.name} class list")
        test = read_class_list(paths[1], f"{self.name} class list")
        both = sorted(set(train) & set(test))
        if both:
            raise GenlabError(
                f"{self.name}: {', '.join(both[:5])} are listed both in {paths[0]} and "
                f"{paths[1]}: a class is either trained on or held out."
            )
        unlisted = sorted(set(classes) - set(train) - set(test))
        if unlisted:
            raise GenlabError(
                f"{self.name}: the classes {', '.join(unlisted[:5])}"
                f"{' ...' if len(unlisted) > 5 else ''} have images but are in neither "
                f"{paths[0]} nor {paths[1]}: list each class in one of them."
            )
        return set(train), set(test)

    def decode_record(self, record: Record) -> torch.Tensor:
        return decode_photo(
            record.path,
            record.box,
            image_size=self.image_size,
            channels=self.channels,
            max_pixels=self.max_image_pixels,
        )

    def _decode_all(self, records: list[Record]) -> torch.Tensor:
        """Decode every image once (threads); a GenlabError listing those that fail."""
        out = torch.zeros(len(records), *self.image_shape, dtype=torch.uint8)
        bad: dict[str, str] = {}

        def one(i: int) -> None:
            try:
                out[i] = self.decode_record(records[i])
            except Exception as exc:
                bad[records[i].path] = reason(exc)

        workers = max(1, min(16, len(os.sched_getaffinity(0))))
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(len(records))))
        if bad:
            shown = "\n  ".join(f"{p}  ({why})" for p, why in sorted(bad.items())[:10])
            raise GenlabError(
                f"{self.name}: {len(bad)} image file(s) cannot be decoded:\n  {shown}\n"
                "Replace them with the dataset's files (or raise data.max_image_pixels for "
                "images that are genuinely that large)."
            )
        return out

    def _check_decodes(self, records: list[Record]) -> None:
        # without preloading, still find bad files before training (decoded, then dropped)
        bad = {}
        for r in records:
            try:
                self.decode_record(r)
            except Exception as exc:
                bad[r.path] = reason(exc)
        if bad:
            shown = "\n  ".join(f"{p}  ({why})" for p, why in sorted(bad.items())[:10])
            raise GenlabError(
                f"{self.name}: {len(bad)} image file(s) cannot be decoded:\n  {shown}\n"
                "Replace them with the dataset's files."
            )

    def load_splits(self) -> dict[str, Dataset]:
        records = self.records()
        texts = [read_captions(r.captions, need=self.captions_per_image) for r in records]
        classes = sorted({r.class_name for r in records})
        train_classes, test_classes = self.class_split_of(classes)
        trainval = [i for i, r in enumerate(records) if r.class_name in train_classes]
        test = [i for i, r in enumerate(records) if r.class_name in test_classes]
        if not trainval or not test:
            raise GenlabError(
                f"{self.name}: the class split leaves {len(trainval)} training and {len(test)} "
                "test images: both need some."
            )
        n_val = round(len(trainval) * self.val_fraction)
        gen = torch.Generator().manual_seed(self.split_seed)
        perm = torch.randperm(len(trainval), generator=gen).tolist()
        val = sorted(trainval[i] for i in perm[:n_val])
        train = sorted(trainval[i] for i in perm[n_val:])
        self.vocab = Vocabulary.build(
            [t for i in train for t in texts[i]],
            min_count=self.min_word_count,
            source=f"the training captions of {self.name}",
        )
        if self.embeddings_path is not None:
            self._embeddings = self._aligned_embeddings(records)
        out: dict[str, Dataset] = {}
        for split, idx in (("train", train), ("val", val), ("test", test)):
            recs = [records[i] for i in idx]
            flat = [t for i in idx for t in texts[i]]
            tokens = self.vocab.encode_batch(
                flat,
                max_length=self.max_length,
                unknown="error" if split == "train" else "unk",
                too_long="truncate",
            ).view(len(idx), self.captions_per_image, self.max_length)
            if self.preload:
                images = self._decode_all(recs)
            else:
                self._check_decodes(recs)
                images = None
            out[split] = CaptionedPhotos(
                recs, [texts[i] for i in idx], tokens, images, self.decode_record
            )
        return out

    def _aligned_embeddings(self, records: list[Record]) -> np.ndarray:
        assert self.embeddings_path is not None
        names, vectors = read_embeddings(self.embeddings_path)
        if vectors.shape[1] not in (1,) and vectors.shape[1] < self.captions_per_image:
            raise GenlabError(
                f"the embeddings file {self.embeddings_path} has {vectors.shape[1]} vectors per "
                f"image, fewer than data.captions_per_image={self.captions_per_image}."
            )
        if names is None:
            if len(vectors) != len(records):
                raise GenlabError(
                    f"the embeddings file {self.embeddings_path} has {len(vectors)} rows but "
                    f"{self.name} has {len(records)} images: a .npy must hold one row per image "
                    "in the dataset's order; give a .npz with filenames instead."
                )
            return vectors
        row = {_embedding_key(n): i for i, n in enumerate(names)}
        missing = [r.name for r in records if _embedding_key(r.name) not in row]
        if missing:
            raise GenlabError(
                f"the embeddings file {self.embeddings_path} has no embeddings for "
                f"{len(missing)} images, e.g. {', '.join(missing[:3])}: give embeddings for "
                "every image (both class splits)."
            )
        return vectors[[row[_embedding_key(r.name)] for r in records]]

    def text_embedding_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens int64 (M, L), vectors float (M, D)): the pretrained embedding of every
        distinct caption token sequence of every split (duplicates averaged), for
        `genlab.nets.text_encoders.LookupTextEncoder`. Needs `data.embeddings`."""
        if self.embeddings_path is None:
            raise GenlabError(
                f"{self.name}: pretrained text embeddings need data.embeddings=<file.npz>."
            )
        self.setup()
        assert self._embeddings is not None
        row_of = {r.name: i for i, r in enumerate(self.records())}
        keys, vecs = [], []
        for split in ("train", "val", "test"):
            data = self.dataset(split)
            assert isinstance(data, CaptionedPhotos)
            for j, r in enumerate(data.records):
                e = self._embeddings[row_of[r.name]]
                for k in range(data.per_image):
                    keys.append(data.tokens[j, k])
                    vecs.append(torch.from_numpy(e[k if len(e) > 1 else 0]))
        tokens, inverse = torch.unique(torch.stack(keys), dim=0, return_inverse=True)
        vectors = torch.zeros(len(tokens), vecs[0].shape[0])
        counts = torch.zeros(len(tokens))
        vectors.index_add_(0, inverse, torch.stack(vecs))
        counts.index_add_(0, inverse, torch.ones(len(inverse)))
        return tokens, vectors / counts[:, None]


class CUBCaptions(CaptionedPhotoData):
    """CUB-200-2011 birds with Reed et al.'s captions (module docstring): cropped to their
    bounding boxes, split 150 / 50 by class."""

    name = "cub_captions"
    folder_default = "birds"

    def __init__(self, *, n_test_classes: int = 50, **kwargs: Any) -> None:
        super().__init__(n_test_classes=n_test_classes, **kwargs)

    def list_records(self) -> list[Record]:
        cub = os.path.join(self.root, "CUB_200_2011")
        tables = [
            os.path.join(cub, f) for f in ("images.txt", "bounding_boxes.txt", "classes.txt")
        ]
        check_files(
            tables,
            what=f"CUB-200-2011 not found under data.data_dir={self.data_dir!r}",
            how=(
                f"Extract CUB_200_2011.tgz into {self.root}/ (it holds CUB_200_2011/images.txt, "
                "bounding_boxes.txt, classes.txt and images/) and Reed et al.'s captions "
                f"(text_c10/) beside it, or point data.data_dir at the folder holding "
                f"{self.folder}/."
            ),
        )
        images = read_table(tables[0], "CUB image list", 2, "an image id and a relative path")
        boxes = read_boxes(tables[1])
        classes = {
            v[0]
            for v in read_table(tables[2], "CUB class list", 2, "a class id and name").values()
        }
        records = []
        for key, (rel,) in sorted(images.items()):
            cls, _, file = rel.partition("/")
            if cls not in classes or not file or "/" in file or rel.startswith(("/", ".")):
                raise GenlabError(
                    f"CUB image list {tables[0]}: image {key} is {rel!r}, not "
                    "'<class from classes.txt>/<file>': replace the file with the dataset's own."
                )
            if key not in boxes:
                raise GenlabError(
                    f"CUB bounding boxes {tables[1]}: image {key} ({rel}) has no box: replace "
                    "the file with the dataset's own."
                )
            name = rel.removesuffix(".jpg")
            records.append(
                Record(
                    name=name,
                    path=self._inside(os.path.join(cub, "images", rel)),
                    class_name=cls,
                    box=boxes[key],
                    captions=self._inside(os.path.join(self.root, "text_c10", name + ".txt")),
                )
            )
        check_files(
            [r.path for r in records],
            what=f"CUB: images listed in {tables[0]}",
            how=f"Extract all of CUB_200_2011.tgz into {self.root}/.",
        )
        return records


class FlowersCaptions(CaptionedPhotoData):
    """Oxford-102 flowers with Reed et al.'s captions (module docstring): whole images,
    split 82 / 20 by class. The images are those with a caption file."""

    name = "flowers_captions"
    folder_default = "flowers"

    def __init__(self, *, n_test_classes: int = 20, **kwargs: Any) -> None:
        super().__init__(n_test_classes=n_test_classes, **kwargs)

    def list_records(self) -> list[Record]:
        text_dir, jpg_dir = os.path.join(self.root, "text_c10"), os.path.join(self.root, "jpg")
        check_files(
            [text_dir, jpg_dir],
            what=f"Oxford-102 flowers not found under data.data_dir={self.data_dir!r}",
            how=(
                f"Extract 102flowers.tgz (jpg/) and Reed et al.'s flower captions (text_c10/) "
                f"into {self.root}/, or point data.data_dir at the folder holding "
                f"{self.folder}/."
            ),
        )
        records = []
        for cls in sorted(os.listdir(text_dir)):
            folder = os.path.join(text_dir, cls)
            if not cls.startswith("class_") or not os.path.isdir(folder):
                continue
            self._inside(folder)
            for file in sorted(os.listdir(folder)):
                if not file.endswith(".txt"):
                    continue
                stem = file.removesuffix(".txt")
                records.append(
                    Record(
                        name=stem,
                        path=self._inside(os.path.join(jpg_dir, stem + ".jpg")),
                        class_name=cls,
                        box=None,
                        captions=self._inside(os.path.join(folder, file)),
                    )
                )
        check_files(
            [r.path for r in records],
            what=f"Oxford-102: images with captions in {text_dir}",
            how=f"Extract all of 102flowers.tgz into {self.root}/ (its jpg/ folder).",
        )
        return records
