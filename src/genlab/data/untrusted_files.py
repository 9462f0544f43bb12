"""Image files and folders someone else may have made: opened as data, never as anything else.

genlab trusts your config files and code; every dataset file and image it reads is untrusted
(docs/data.md, "What genlab trusts"). So an image is opened by Pillow only as one of
`IMAGE_FORMATS` whatever its extension (an EPS file named `.png` would otherwise make Pillow
run Ghostscript on it), refused before decoding when it has more pixels than a limit (a 150 KB
PNG can hold 12,500 x 12,500 pixels, 1.6 GB decoded), opened without blocking (a FIFO named
`.png` would hang the reader) and converted to 8 bits by its real depth (16-bit and float
images would otherwise be clipped to white or black). A folder is walked without following a
link out of it (unless asked) or into a folder already walked (a link loop would make the
walk run forever).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, UnidentifiedImageError

from genlab.utils.errors import GenlabError

# the formats genlab reads (Pillow's plugin names; JPEG includes MPO, the camera variant)
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
# 64 megapixels (e.g. 9,800 x 6,530): above any camera photo a dataset is usually made of, and
# about 200 MB decoded as RGB per decoding thread
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
LINKS = ("error", "follow")
# integer modes Pillow gives 16-bit files (PNG, TIFF, PGM: Pillow scales PGM to 16 bits)
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N")


class ImageRefused(OSError):
    """An image file genlab does not decode: why, in words (an OSError, so the code that
    handles undecodable files handles it)."""


def reason(exc: BaseException) -> str:
    """Why a file was not decoded, in words, for messages that name it."""
    return str(exc) if isinstance(exc, ImageRefused) else f"{type(exc).__name__}: {exc}"


def check_max_pixels(value: int, option: str) -> int:
    """`value` as a pixel limit, or a GenlabError naming `option`."""
    cap = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GenlabError(f"{option}={value!r} must be a positive number of pixels (w x h).")
    if cap is not None and value > cap:
        raise GenlabError(
            f"{option}={value:,} is above {cap:,}, the most Pillow opens at all (twice "
            "PIL.Image.MAX_IMAGE_PIXELS): use a value up to that."
        )
    return value


@contextmanager
def open_image(path: str, *, max_pixels: int, option: str) -> Iterator[Image.Image]:
    """Pillow's lazy image of the regular file `path` (nothing decoded yet), opened only as
    one of IMAGE_FORMATS and only when it has at most `max_pixels` pixels; else ImageRefused
    saying why (`option` names the limit in the message)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ImageRefused(f"cannot be opened ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageRefused("not a regular file (a FIFO, device or socket): not read")
        try:
            image = Image.open(f, formats=IMAGE_FORMATS)
        except UnidentifiedImageError:
            raise ImageRefused(
                f"not a {', '.join(IMAGE_FORMATS)} file (genlab opens no other format, "
                "whatever the extension)"
            ) from None
        except Image.DecompressionBombError as exc:
            raise ImageRefused(f"too many pixels ({exc})") from None
        with image:
            w, h = image.size
            if w * h > max_pixels:
                raise ImageRefused(
                    f"{w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} "
                    f"({option}): refused before decoding"
                )
            yield image


def eight_bit(image: Image.Image) -> Image.Image:
    """A decoded image in an 8-bit mode: 16-bit integers shifted down by 8 bits, float pixels
    in [0, 1] scaled by 255; ImageRefused for integer pixels beyond 16 bits or float pixels
    outside [0, 1] (their scale is unknown). Other modes are returned as they are."""
    mode = image.mode
    if mode not in (*_MODES_16, "I", "F"):
        return image
    x = np.asarray(image)
    if mode == "F":
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
            raise ImageRefused(
                f"float pixels in [{lo:g}, {hi:g}]: genlab reads float images as [0, 1]; "
                "convert it to 8 or 16 bits, or scale it to [0, 1]"
            )
        return Image.fromarray(np.rint(x * 255.0).astype(np.uint8), mode="L")
    x = x.astype(np.int64)
    if mode == "I" and x.size and (x.min() < 0 or x.max() > 65535):
        raise ImageRefused(
            f"32-bit integer pixels in [{x.min()}, {x.max()}]: genlab reads integer images of "
            "up to 16 bits; convert it to 8 or 16 bits"
        )
    return Image.fromarray((x >> 8).astype(np.uint8), mode="L")


def read_image(
    path: str,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    option: str = "data.max_image_pixels",
) -> Image.Image:
    """Open and fully decode an image file as RGB (a truncated file raises OSError here)."""
    with open_image(path, max_pixels=max_pixels, option=option) as image:
        image.load()
        return eight_bit(image).convert("RGB")


def decode_error(
    path: str,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    option: str = "data.max_image_pixels",
) -> str | None:
    """Why the image at `path` cannot be decoded, or None when it decodes."""
    try:
        with open_image(path, max_pixels=max_pixels, option=option) as image:
            image.draft("RGB", (64, 64))  # JPEG: decode at a reduced scale, still every byte
            image.load()
            eight_bit(image)
        return None
    except Exception as exc:  # refused, truncated, damaged, a mode Pillow cannot convert...
        return reason(exc)


# --- folders ---------------------------------------------------------------------------------
def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _link_problem(path: str, root: str, *, option: str) -> str:
    target = os.path.realpath(path)
    return (
        f"{path} is a link to {target}, outside the data folder {root}: genlab reads only "
        f"files inside it. Copy what you want to use into the folder, or set {option}=follow "
        "if you made these links yourself."
    )


def check_link(path: str, root: str, *, outside_links: str, option: str) -> None:
    """A GenlabError when `path` resolves outside the real folder `root` and links out of it
    are not followed (`outside_links=error`)."""
    if outside_links != "follow" and not _inside(os.path.realpath(path), root):
        raise GenlabError(_link_problem(path, root, option=option))


def walk_files(
    folder: str,
    extensions: tuple[str, ...],
    *,
    root: str,
    outside_links: str = "error",
    option: str = "data.outside_links",
) -> list[str]:
    """The files under `folder` (recursively) whose names end with `extensions`, in the order
    torchvision's `make_dataset` gives (folders sorted by path, files by name). Links to
    folders are followed once: a link back into a folder on the way (a loop) or to one already
    walked is a GenlabError naming it, as is a link out of the real folder `root` unless
    `outside_links=follow`."""
    seen: dict[tuple[int, int], str] = {}
    found: list[tuple[str, list[str]]] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        st = os.stat(current)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise GenlabError(
                f"{current} is a link to {os.path.realpath(current)}, a folder the walk of "
                f"{root} already went through as {seen[key]} (a link loop, or one folder "
                "linked twice): remove the link."
            )
        seen[key] = current
        files, subdirs = [], []
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        check_link(entry.path, root, outside_links=outside_links, option=option)
                    if entry.is_dir():
                        subdirs.append(entry.path)
                    elif entry.name.lower().endswith(extensions):
                        files.append(entry.name)
        except OSError as exc:
            raise GenlabError(
                f"the folder {current} under {root} cannot be read ({exc.strerror or exc}): "
                "make it readable or remove it."
            ) from None
        found.append((current, sorted(files)))
        stack.extend(subdirs)
    return [os.path.join(d, f) for d, names in sorted(found) for f in names]


def list_files(
    folder: str,
    extensions: Iterable[str],
    *,
    root: str,
    outside_links: str = "error",
    option: str = "data.outside_links",
    hidden: bool = False,
) -> list[str]:
    """The files directly in `folder` whose names end with `extensions` (hidden ones only with
    `hidden`), sorted; links out of the real folder `root` are refused as in `walk_files`."""
    out = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if (name.startswith(".") and not hidden) or not name.lower().endswith(tuple(extensions)):
            continue
        if os.path.islink(path):
            check_link(path, root, outside_links=outside_links, option=option)
        out.append(path)
    return out


def check_links_option(value: str, option: str) -> str:
    if value not in LINKS:
        raise GenlabError(f"{option}={value!r}: use error (the default) or follow.")
    return value
