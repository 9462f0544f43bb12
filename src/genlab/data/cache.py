"""Image files, decoded once.

`FileDataModule` is the base of the file datasets (`celeba`, `image_folder`). It finds
truncated or undecodable files before training (it decodes every file), and with `cache=true`
keeps the decoded, cropped and resized uint8 images in a memory-mapped array on disk (the
decode-once cache), served exactly like the array datasets: device-resident batches when the
images fit in the training device's memory, else a DataLoader over the mapped array (pinned
host memory on a GPU).

A cache is a folder `<cache_dir>/<dataset>-<key>/` holding `images.npy` (uint8 (N, C, H, W)),
`labels.npy` and `manifest.json`. The folder name is a hash of what shapes the pixels (source
folder, image size, channels, transform, Pillow and torchvision versions); the manifest holds a
fingerprint of the source files (paths, sizes, modification times) and of the label files, and
the cache is rebuilt when that changes. It is built under a temporary name and renamed when
complete, so a half-built cache is never used; one that is damaged is rebuilt.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from genlab.data.datamodules import ArrayImages, ImageDataModule, Indexed
from genlab.data.untrusted_files import (
    DEFAULT_MAX_IMAGE_PIXELS,
    check_links_option,
    check_max_pixels,
    decode_error,
    read_image,
    reason,
)
from genlab.utils.errors import GenlabError
from genlab.utils.untrusted import read_json_object

log = logging.getLogger(__name__)

CACHE_VERSION = 1
# the pixels depend on these: a change of any of them gives another cache folder (16-bit and
# float images were clipped before "by-depth", genlab.data.untrusted_files.eight_bit)
TRANSFORM = "rgb-by-depth|resize-short-side-antialias|center-crop"
# at most this fraction of the free device (or host) memory is taken by resident images
RESIDENT_FRACTION = 0.5
BAD_FILE = ("error", "skip")


# --- decoding --------------------------------------------------------------------------------
def _convert(image: Image.Image, mode: str) -> Image.Image:
    return image.convert(mode)


def _unit_float(x: torch.Tensor) -> torch.Tensor:
    # the same conversion as ArrayImages and TensorBatches (x / 255, not x * (1/255)), so the
    # DataLoader path and the cached path give equal floats
    return x.as_subclass(torch.Tensor).float().div_(255)


def decode_transform(image_size: int, channels: int) -> v2.Compose:
    """RGB PIL image -> uint8 tensor (channels, image_size, image_size): resize the short side
    (antialiased), then center-crop (the DCGAN paper's 64x64 CelebA recipe)."""
    return v2.Compose(
        [
            v2.Lambda(partial(_convert, mode="L" if channels == 1 else "RGB")),
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.PILToTensor(),
        ]
    )


def image_transform(image_size: int, channels: int) -> v2.Compose:
    """RGB PIL image -> float tensor (channels, image_size, image_size) in [0, 1]."""
    return v2.Compose([decode_transform(image_size, channels), v2.Lambda(_unit_float)])


def _progress(total: int, description: str):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    return progress, progress.add_task(description, total=total)


def _threads() -> int:
    # decoding releases the GIL for most of its time: one thread per available core
    return max(1, min(32, len(os.sched_getaffinity(0))))


def find_bad_images(
    paths: Sequence[str], *, what: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> dict[str, str]:
    """{path: reason} for every file of `paths` that does not decode (the up-front check when
    the cache is off; the cache build does the same check while it decodes)."""
    bad: dict[str, str] = {}
    check = partial(decode_error, max_pixels=max_pixels)
    progress, task = _progress(len(paths), f"checking {what}")
    with progress, ThreadPoolExecutor(_threads()) as pool:
        for path, error in zip(paths, pool.map(check, paths), strict=True):
            if error is not None:
                bad[path] = error
            progress.advance(task)
    return bad


# --- datasets --------------------------------------------------------------------------------
class FileImages(Dataset):
    """Images decoded from `paths` on every read, with `labels` (N,) or (N, k).

    With `on_bad_file="skip"`, a file that cannot be decoded when it is read (it changed after
    the check before training) is replaced by the next file that can, with a warning; else the
    error names the file.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: torch.Tensor,
        transform: Callable[[Image.Image], torch.Tensor],
        on_bad_file: str = "error",
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.paths, self.labels, self.transform = list(paths), labels, transform
        self.on_bad_file, self.max_pixels = on_bad_file, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        for k in range(len(self.paths)):
            j = (i + k) % len(self.paths)
            try:
                image = read_image(self.paths[j], max_pixels=self.max_pixels)
                return self.transform(image), self.labels[j]
            except Exception as exc:
                if self.on_bad_file != "skip":
                    raise GenlabError(
                        f"image {self.paths[j]!r} could not be decoded ({reason(exc)}). It "
                        "changed after the check before training: replace it, or set "
                        "data.on_bad_file=skip."
                    ) from None
                warnings.warn(
                    f"skipping image {self.paths[j]!r} ({reason(exc)}); "
                    "reading the next file instead",
                    stacklevel=2,
                )
        raise GenlabError("no image of the dataset can be decoded any more.")


class CachedImages(ArrayImages):
    """The uint8 images of a decode-once cache, memory-mapped (or held in memory when the cache
    could not be written). Pickled by path, so DataLoader workers map the file themselves."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, path: Path | None) -> None:
        super().__init__(images, labels)
        self.path = path

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.path is not None:
            state["images"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.images is None:
            self.images = _map(self.path / "images.npy")  # type: ignore[operator]


def _map(path: Path) -> torch.Tensor:
    # copy-on-write mapping: a writable array (torch warns on read-only ones) that never
    # writes back to the file
    return torch.from_numpy(np.load(path, mmap_mode="c"))


def flatten(data: Indexed) -> Indexed:
    """Indexed(Indexed(base, a), b) -> Indexed(base, a[b]): one gather when materialized."""
    while isinstance(data.base, Indexed):
        data = Indexed(data.base.base, torch.as_tensor(data.base.indices)[data.indices])
    return data


# --- the cache -------------------------------------------------------------------------------
@dataclass
class Source:
    """What a file dataset is made of: its images in order, and what their labels come from."""

    name: str
    root: str
    paths: list[str]
    label_files: list[str] = field(default_factory=list)
    # anything else the labels depend on (e.g. the class folder names)
    extra: list[str] = field(default_factory=list)


def fingerprint(source: Source) -> str:
    """A hash of every image's and label file's path, size and modification time."""
    digest = hashlib.sha256()
    root = os.path.abspath(source.root)
    for path in [*source.paths, *source.label_files]:
        st = os.stat(path)
        rel = os.path.relpath(os.path.abspath(path), root)
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    digest.update(json.dumps(source.extra).encode())
    return digest.hexdigest()


def cache_folder(source: Source, cache_dir: str, image_size: int, channels: int) -> Path:
    """`<cache_dir>/<name>-<hash of what shapes the pixels>`."""
    key = {
        "version": CACHE_VERSION,
        "root": os.path.abspath(source.root),
        "image_size": image_size,
        "channels": channels,
        "transform": TRANSFORM,
        "pillow": PIL.__version__,
        "torchvision": torchvision.__version__.split("+")[0],
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{source.name}-{digest}"


@dataclass
class Decoded:
    """The decoded images of a source: uint8 (N, C, H, W), labels, the files that failed."""

    images: CachedImages
    bad: dict[str, str]
    meta: dict[str, Any]
    folder: Path | None
    built: bool


def load_cache(folder: Path, print_: str, n: int, shape: tuple[int, int, int]) -> Decoded | None:
    """The cache in `folder` if it is complete and matches `print_`, else None."""
    try:
        manifest = read_json_object(folder / "manifest.json", what="decode-cache manifest")
        if manifest.get("version") != CACHE_VERSION or manifest.get("fingerprint") != print_:
            return None
        images = _map(folder / "images.npy")
        labels = torch.from_numpy(np.load(folder / "labels.npy"))
        if images.dtype != torch.uint8 or tuple(images.shape) != (n, *shape) or len(labels) != n:
            return None
        return Decoded(
            CachedImages(images, labels, folder),
            dict(manifest.get("bad", {})),
            dict(manifest.get("meta", {})),
            folder,
            built=False,
        )
    except (OSError, ValueError, KeyError, TypeError, GenlabError):
        return None  # missing, truncated, too large or not ours: rebuild


def _decode_into(
    target: np.ndarray, paths: Sequence[str], transform: Callable, what: str, max_pixels: int
) -> dict[str, str]:
    """Decode every path into target[i]; {path: reason} of those that fail (rows left 0)."""

    def one(i: int) -> str | None:
        try:
            target[i] = transform(read_image(paths[i], max_pixels=max_pixels)).numpy()
            return None
        except Exception as exc:
            return reason(exc)

    bad: dict[str, str] = {}
    progress, task = _progress(len(paths), f"decoding {what} once")
    with progress, ThreadPoolExecutor(_threads()) as pool:
        for i, error in enumerate(pool.map(one, range(len(paths)))):
            if error is not None:
                bad[paths[i]] = error
            progress.advance(task)
    return bad


def build_cache(
    source: Source,
    *,
    folder: Path,
    print_: str,
    shape: tuple[int, int, int],
    labels: Callable[[], tuple[torch.Tensor, dict[str, Any]]],
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Decoded:
    """Decode every image of `source` into `folder` (built under a temporary name, renamed
    when complete); in memory, with a warning, when `folder` cannot be written. A GenlabError
    when its disk has not the room for it, with nothing left behind."""
    n = len(source.paths)
    transform = decode_transform(shape[1], shape[0])
    label_tensor, meta = labels()
    tmp = folder.with_name(f"{folder.name}.tmp-{_HOST}-{os.getpid()}-{time.time_ns()}")
    need = n * int(np.prod(shape)) + label_tensor.numel() * label_tensor.element_size() + _SLACK
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder)
        free = shutil.disk_usage(folder.parent).free
        if need > free:
            raise _no_room(source, folder, need, free)
        tmp.mkdir()
        images = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, *shape)
        )
        _reserve(tmp / "images.npy")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.EFBIG:  # the process's file size limit (ulimit -f)
            raise GenlabError(
                f"the decode-once cache of {source.root} needs a file of {need:,} bytes in "
                f"{folder.parent}, above this process's file size limit (ulimit -f): nothing "
                "was written. Raise the limit, or set data.cache=false to decode the files at "
                "every epoch instead."
            ) from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_room(source, folder, need, shutil.disk_usage(folder.parent).free) from None
        log.warning(
            "the decode-once cache cannot be written to %s (%s): decoding %d images into "
            "memory for this run only. Set data.cache_dir to a writable folder to keep them.",
            folder.parent,
            exc,
            n,
        )
        array = np.zeros((n, *shape), dtype=np.uint8)
        bad = _decode_into(array, source.paths, transform, source.name, max_pixels)
        images = CachedImages(torch.from_numpy(array), label_tensor, None)
        return Decoded(images, bad, meta, None, built=True)
    log.info(
        "decoding %d images of %s once into %s (%d threads)", n, source.root, folder, _threads()
    )
    start = time.perf_counter()
    try:
        bad = _decode_into(images, source.paths, transform, source.name, max_pixels)
        images.flush()
        del images
        np.save(tmp / "labels.npy", label_tensor.numpy())
        manifest = {
            "version": CACHE_VERSION,
            "fingerprint": print_,
            "source": os.path.abspath(source.root),
            "shape": [n, *shape],
            "transform": TRANSFORM,
            "bad": bad,
            "meta": meta,
            "built": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _replace(tmp, folder)
    except OSError as exc:
        raise GenlabError(
            f"the decode-once cache of {source.root} could not be written to {folder.parent} "
            f"({exc.strerror or exc}); nothing of it was kept. Free space there, set "
            "data.cache_dir to another folder, or data.cache=false."
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    found = load_cache(folder, print_, n, shape)
    if found is None:  # another process replaced it in between with something else
        raise GenlabError(f"the decode-once cache {folder} changed while it was being built.")
    found.built = True
    log.info("decode-once cache %s built in %.0f s", folder, time.perf_counter() - start)
    return found


# room for the labels' and the manifest's headers and the manifest itself, beyond the arrays
_SLACK = 1 << 20


def _no_room(source: Source, folder: Path, need: int, free: int) -> GenlabError:
    return GenlabError(
        f"the decode-once cache of {source.root} needs {need:,} bytes in {folder.parent}, "
        f"but only {free:,} are free there: nothing was written. Free space on that disk, set "
        "data.cache_dir to a folder on a disk with room, or set data.cache=false to decode "
        "the files at every epoch instead."
    )


def _reserve(path: Path) -> None:
    """Allocate the blocks of the (sparse) file at `path` now. Writing through a memory map
    to a disk that fills up kills the process with SIGBUS (the run dies with `Bus error`);
    reserving the blocks first turns that into an OSError (ENOSPC) here, even when something
    else takes the free space after the check."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:  # macOS: the free-space check before is all there is
        return
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            raise  # a file system that cannot reserve blocks is served as before
    finally:
        os.close(fd)


_HOST = socket.gethostname().replace("-", "_")


def _remove_stale(folder: Path) -> None:
    """Remove what builds of `folder` that died on this host left behind (a process killed
    mid-build leaves its temporary folder)."""
    for tmp in folder.parent.glob(f"{folder.name}.tmp-{_HOST}-*"):
        try:
            os.kill(int(tmp.name.split("-")[-2]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def _replace(tmp: Path, folder: Path) -> None:
    """Rename the finished `tmp` to `folder`, moving an older cache out of the way first."""
    old = None
    if folder.exists():
        old = folder.with_name(f"{folder.name}.old-{os.getpid()}-{time.time_ns()}")
        try:
            folder.rename(old)
        except FileNotFoundError:  # another process moved it just now
            old = None
    try:
        tmp.rename(folder)
    except OSError:
        if not folder.exists():  # not lost to a concurrent build of the same cache: a failure
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def decoded(
    source: Source,
    *,
    cache_dir: str,
    image_size: int,
    channels: int,
    labels: Callable[[], tuple[torch.Tensor, dict[str, Any]]],
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Decoded:
    """The decode-once cache of `source`: loaded when it is valid, else (re)built."""
    folder = cache_folder(source, cache_dir, image_size, channels)
    print_ = fingerprint(source)
    shape = (channels, image_size, image_size)
    found = load_cache(folder, print_, len(source.paths), shape)
    if found is not None:
        log.info("%s: using the decode-once cache %s", source.root, folder)
        return found
    if folder.exists():
        log.info("the decode-once cache %s is out of date or incomplete: rebuilding it", folder)
    return build_cache(
        source, folder=folder, print_=print_, shape=shape, labels=labels, max_pixels=max_pixels
    )


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: assume it fits


# --- the datamodule base ---------------------------------------------------------------------
class FileDataModule(ImageDataModule):
    """Base of the datamodules that read image files: the up-front decode check, `on_bad_file`,
    and the decode-once cache (`cache`, `cache_dir`).

    Subclasses say which files make the dataset (`source`), what their labels are (`labels`)
    and how they are split (`make_splits`). With `cache=false` every file is decoded once
    before training (to find bad ones) and then on every read by the DataLoader; with
    `cache=true` it is decoded once, ever, while the cache is built, and
    `device_resident=true` serves the cached images like the array datasets.

    The files are untrusted (genlab.data.untrusted_files): an image with more than
    `max_image_pixels` pixels is refused before it is decoded, and a link out of the data
    folder is refused unless `outside_links=follow`.
    """

    def __init__(
        self,
        *,
        on_bad_file: str = "error",
        cache: bool = False,
        cache_dir: str | None = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        outside_links: str = "error",
        **kwargs,
    ) -> None:
        if on_bad_file not in BAD_FILE:
            raise GenlabError(f"data.on_bad_file={on_bad_file!r}: use error or skip.")
        self.max_image_pixels = check_max_pixels(max_image_pixels, "data.max_image_pixels")
        self.outside_links = check_links_option(outside_links, "data.outside_links")
        super().__init__(**kwargs)
        if self.device_resident and not cache:
            raise GenlabError(
                f"data.device_resident=true needs data.cache=true for {self.name}: image files "
                "are decoded one by one unless they are cached. Set data.cache=true, or "
                "data.device_resident=false."
            )
        self.on_bad_file, self.cache = on_bad_file, cache
        self.cache_dir = str(cache_dir or os.path.join(self.data_dir, ".cache", "genlab_images"))
        # (paths, full dataset, bad files, label metadata), once per instance
        self._decoded: tuple[list[str], Dataset, dict[str, str], dict[str, Any]] | None = None
        self._fits: bool | None = None

    # --- what subclasses provide -----------------------------------------------------------
    @property
    def where(self) -> str:
        """The dataset and the option that locates it, for messages."""
        return f"{self.name} (data.data_dir={self.data_dir!r})"

    def source(self) -> Source:
        """The image files in dataset order (cheap: no decoding, no label parsing)."""
        raise NotImplementedError

    def labels(self, source: Source) -> tuple[torch.Tensor, dict[str, Any]]:
        """Labels of `source.paths` in order, and metadata to keep with them (stored in the
        cache: e.g. attribute names)."""
        raise NotImplementedError

    def use_meta(self, meta: dict[str, Any]) -> None:
        """Take the metadata `labels` returned (also when it came from the cache)."""

    def make_splits(self, full: Dataset, keep: torch.Tensor) -> dict[str, Dataset]:
        """{'train', 'val', 'test'} as `Indexed(full, indices)`, from the decodable items
        `keep` (indices into `full`)."""
        raise NotImplementedError

    # --- the shared machinery --------------------------------------------------------------
    def decode(self) -> tuple[Dataset, torch.Tensor]:
        """The full dataset (cached array or files) and the indices of its decodable images;
        bad files raise a GenlabError naming them, or are skipped with a warning."""
        if self._decoded is None:
            source = self.source()
            if self.cache:
                found = decoded(
                    source,
                    cache_dir=self.cache_dir,
                    image_size=self.image_size,
                    channels=self.channels,
                    labels=partial(self.labels, source),
                    max_pixels=self.max_image_pixels,
                )
                full: Dataset = found.images
                bad, meta = found.bad, found.meta
            else:
                bad = find_bad_images(
                    source.paths, what=source.name, max_pixels=self.max_image_pixels
                )
                labels, meta = self.labels(source)
                full = FileImages(
                    source.paths,
                    labels,
                    image_transform(self.image_size, self.channels),
                    self.on_bad_file,
                    self.max_image_pixels,
                )
            self._decoded = (source.paths, full, bad, meta)
        paths, full, bad, meta = self._decoded
        self.use_meta(meta)
        if bad and self.on_bad_file == "error":
            shown = "\n  ".join(f"{p}  ({why})" for p, why in list(bad.items())[:10])
            more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise GenlabError(
                f"{self.where}: {len(bad)} image file(s) cannot be decoded:\n  {shown}{more}\n"
                "Remove or replace them, or set data.on_bad_file=skip to leave them out"
                + (
                    " (or raise data.max_image_pixels for images that are genuinely that large)."
                    if any("data.max_image_pixels" in why for why in bad.values())
                    else "."
                )
            )
        if bad:
            log.warning(
                "%s: skipping %d image(s) that cannot be decoded: %s",
                self.where,
                len(bad),
                ", ".join(list(bad)[:10]),
            )
        keep = torch.tensor([i for i, p in enumerate(paths) if p not in bad], dtype=torch.long)
        if len(keep) == 0:
            raise GenlabError(f"{self.where}: none of the {len(paths)} image files decodes.")
        return full, keep

    def prepare_data(self) -> None:
        # once per machine (rank 0): build the cache (or run the decode check) before the
        # other processes read it
        self.decode()

    def load_splits(self) -> dict[str, Dataset]:
        full, keep = self.decode()
        return {
            k: flatten(v) if isinstance(v, Indexed) else v
            for k, v in self.make_splits(full, keep).items()
        }

    def _loader(self, split: str, *, train: bool):
        if self.device_resident and not self._resident_fits():
            self.device_resident = False
            trainer = self.trainer
            on_gpu = trainer is not None and trainer.strategy.root_device.type == "cuda"
            self.pin_memory = self.pin_memory or on_gpu
        return super()._loader(split, train=train)

    def _resident_fits(self) -> bool:
        """Whether all splits' images fit in RESIDENT_FRACTION of the device's free memory;
        decided once, with a warning when they do not."""
        if self._fits is None:
            trainer = self.trainer
            device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
            splits = [self.dataset(s) for s in ("train", "val", "test")]
            shape = self.image_shape
            need = sum(len(s) for s in splits) * shape[0] * shape[1] * shape[2]  # type: ignore[arg-type]
            free = _free_bytes(device)
            self._fits = need <= RESIDENT_FRACTION * free
            if not self._fits:
                log.warning(
                    "%s: the cached images (%.1f GB) do not fit in half the free memory of %s "
                    "(%.1f GB free): serving them from %s memory through a DataLoader instead.",
                    self.name,
                    need / 1e9,
                    device,
                    free / 1e9,
                    "pinned host" if device.type == "cuda" else "mapped",
                )
        return self._fits
