"""Real videos as folders of frames: one folder per clip, frames as numbered image files.

Layouts (`data.path`):

    path/<clip>/<frame>.png ...                 split by val_fraction / test_fraction
    path/train/<clip>/... [path/val/<clip>/...] [path/test/<clip>/...]

A frame's number is the last run of digits in its file name (`0007.png`, `frame_7.jpg`); a
clip's frames are consecutive numbers. Every clip is checked before training from the image
headers (nothing decoded): frames numbered without gaps or repeats, every file an image of one
of genlab's formats within `max_image_pixels`, every frame of one size, at least
`context_frames + future_frames` of them. A clip that fails is named in one GenlabError with
its problem (or left out with a warning, `on_bad_clip=skip`). A file that passed the header
check but does not decode when read (truncated) is an error naming it.

A clip gives windows of `context_frames + future_frames` frames starting every
`window_stride` frames (default: windows that do not overlap). Frames are center-cropped to a
square and resized to `image_size`, as grey (`channels=1`) or RGB (`channels=3`).
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from genlab.data.clips import VideoDataModule, resize_frames, split_clip
from genlab.data.untrusted_files import (
    DEFAULT_MAX_IMAGE_PIXELS,
    check_links_option,
    check_max_pixels,
    list_files,
    open_image,
    read_image,
    reason,
)
from genlab.utils.errors import GenlabError

BAD_CLIP = ("error", "skip")
SPLITS = ("train", "val", "test")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def frame_number(name: str) -> int | None:
    """The last run of digits in a file name without its extension, or None."""
    match = _NUMBER.search(os.path.splitext(name)[0])
    return int(match.group(1)) if match else None


def clip_problem(
    folder: str, *, root: str, outside_links: str, min_frames: int, max_pixels: int
) -> tuple[list[str], str | None]:
    """(frame files in order, None) for a good clip folder, or ([], why it is not one)."""
    try:
        names = [n for n in os.listdir(folder) if not n.startswith(".")]
    except OSError as exc:
        return [], f"cannot be read ({exc.strerror or exc})"
    others = sorted(n for n in names if not n.lower().endswith(IMG_EXTENSIONS))
    if others:
        return [], f"holds files that are not frames ({', '.join(others[:3])})"
    files = list_files(
        folder, IMG_EXTENSIONS, root=root, outside_links=outside_links, hidden=False
    )
    numbered = [(frame_number(os.path.basename(p)), p) for p in files]
    unnumbered = [os.path.basename(p) for n, p in numbered if n is None]
    if unnumbered:
        return [], f"frames without a number in their name ({', '.join(unnumbered[:3])})"
    numbered.sort()
    numbers = [n for n, _ in numbered]
    if len(set(numbers)) != len(numbers):
        dup = sorted({n for n in numbers if numbers.count(n) > 1})
        return [], f"several files for frame(s) {', '.join(map(str, dup[:5]))}"
    if len(numbers) < min_frames:
        return [], f"{len(numbers)} frame(s), fewer than the {min_frames} a clip needs"
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        return [], f"missing frame(s) {shown} (frames {numbers[0]}-{numbers[-1]})"
    sizes: dict[tuple[int, int], str] = {}
    for _, path in numbered:
        try:
            with open_image(path, max_pixels=max_pixels, option="data.max_image_pixels") as im:
                sizes.setdefault(im.size, os.path.basename(path))
        except OSError as exc:
            return [], f"{os.path.basename(path)} is {reason(exc)}"
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h} ({name})" for (w, h), name in list(sizes.items())[:3])
        return [], f"frames of different sizes: {shown}"
    return [p for _, p in numbered], None


class FrameClips(Dataset):
    """Windows of `frames` frames of clip folders: (future, context) float pairs."""

    def __init__(
        self,
        windows: list[tuple[list[str], int]],
        *,
        frames: int,
        context_frames: int,
        image_size: int,
        channels: int,
        max_pixels: int,
    ) -> None:
        self.windows = windows  # (the clip's frame files, first frame of the window)
        self.frames, self.context_frames = frames, context_frames
        self.image_size, self.channels, self.max_pixels = image_size, channels, max_pixels

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        files, start = self.windows[i]
        out = []
        for path in files[start : start + self.frames]:
            try:
                image = read_image(path, max_pixels=self.max_pixels)
            except OSError as exc:
                raise GenlabError(
                    f"{path} does not decode ({reason(exc)}): it passed the check before "
                    "training (it may have changed since). Replace or remove its clip."
                ) from None
            if self.channels == 1:
                image = image.convert("L")
            out.append(np.asarray(image).reshape(image.height, image.width, -1))
        frames = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)  # (t, c, h, w) uint8
        return split_clip(resize_frames(frames, self.image_size), self.context_frames)


class VideoFolders(VideoDataModule):
    """Clips from folders of numbered frames (see the module docstring for the layouts)."""

    name = "video_folders"

    def __init__(
        self,
        *,
        path: str,
        test_fraction: float = 0.1,
        window_stride: int | None = None,
        on_bad_clip: str = "error",
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        outside_links: str = "error",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("channels", 3)
        super().__init__(**kwargs)
        if on_bad_clip not in BAD_CLIP:
            raise GenlabError(f"data.on_bad_clip={on_bad_clip!r}: use error or skip.")
        if not 0.0 <= test_fraction < 1.0 or self.val_fraction + test_fraction >= 1.0:
            raise GenlabError(
                f"data.val_fraction={self.val_fraction} and data.test_fraction={test_fraction} "
                "must each be in [0, 1) and add up to less than 1."
            )
        if window_stride is not None and window_stride < 1:
            raise GenlabError(f"data.window_stride={window_stride} must be at least 1 (or null).")
        self.path, self.test_fraction = str(path), test_fraction
        self.window_stride = window_stride or self.frames
        self.on_bad_clip = on_bad_clip
        self.max_pixels = check_max_pixels(max_image_pixels, "data.max_image_pixels")
        self.outside_links = check_links_option(outside_links, "data.outside_links")

    def clip_folders(self, folder: str) -> list[str]:
        """The clip folders directly in `folder` (sorted; hidden ones left out)."""
        root = os.path.realpath(self.path)
        out = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if self.outside_links != "follow" and not real.startswith(root + os.sep):
                    raise GenlabError(
                        f"{entry.path} is a link to {real}, outside the data folder {root}: "
                        "genlab reads only files inside it. Copy the clip into the folder, or "
                        "set data.outside_links=follow if you made the link yourself."
                    )
            out.append(entry.path)
        return out

    def good_clips(self, folders: list[str]) -> list[list[str]]:
        """The frame files of each good clip; bad clips are an error naming each (or skipped
        with a warning under on_bad_clip=skip)."""
        root = os.path.realpath(self.path)
        good, bad = [], []
        for folder in folders:
            files, why = clip_problem(
                folder,
                root=root,
                outside_links=self.outside_links,
                min_frames=self.frames,
                max_pixels=self.max_pixels,
            )
            if why:
                bad.append(f"{folder}: {why}")
            else:
                good.append(files)
        if bad:
            shown = "\n  ".join(bad[:10]) + (
                f"\n  ... ({len(bad)} in all)" if len(bad) > 10 else ""
            )
            if self.on_bad_clip == "error":
                raise GenlabError(
                    f"data.path={self.path!r}: {len(bad)} clip folder(s) cannot be used:\n  "
                    f"{shown}\nFix or remove them, or set data.on_bad_clip=skip to leave them "
                    "out."
                )
            warnings.warn(
                f"data.path={self.path!r}: left out {len(bad)} clip folder(s) "
                f"(data.on_bad_clip=skip):\n  {shown}",
                stacklevel=2,
            )
        return good

    def windows(self, clips: list[list[str]]) -> list[tuple[list[str], int]]:
        return [
            (files, start)
            for files in clips
            for start in range(0, len(files) - self.frames + 1, self.window_stride)
        ]

    def dataset_of(self, clips: list[list[str]]) -> FrameClips:
        return FrameClips(
            self.windows(clips),
            frames=self.frames,
            context_frames=self.context_frames,
            image_size=self.image_size,
            channels=self.channels,
            max_pixels=self.max_pixels,
        )

    def split_clips(self, clips: list[list[str]], fraction: float, seed: int) -> tuple[list, list]:
        """(rest, part) of the clips, permuted by `seed`: whole clips, so no window of a clip
        lands in two splits."""
        n_part = round(len(clips) * fraction)
        perm = torch.randperm(len(clips), generator=torch.Generator().manual_seed(seed)).tolist()
        part = sorted(perm[:n_part])
        rest = sorted(perm[n_part:])
        return [clips[i] for i in rest], [clips[i] for i in part]

    def load_splits(self) -> dict[str, Dataset]:
        if not os.path.isdir(self.path):
            raise GenlabError(
                f"data.path={self.path!r} is not a directory. Point it at a folder with one "
                "folder of numbered frames per clip (or train/, val/, test/ folders of them)."
            )
        layout = {s: os.path.join(self.path, s) for s in SPLITS}
        if os.path.isdir(layout["train"]):
            clips = {
                s: self.good_clips(self.clip_folders(p)) if os.path.isdir(p) else None
                for s, p in layout.items()
            }
            train = clips["train"] or []
            if clips["test"] is None:
                train, clips["test"] = self.split_clips(train, self.test_fraction, self.split_seed)
            if clips["val"] is None:
                train, clips["val"] = self.split_clips(
                    train, self.val_fraction, self.split_seed + 1
                )
            clips["train"] = train
        else:
            every = self.good_clips(self.clip_folders(self.path))
            rest, test = self.split_clips(every, self.test_fraction, self.split_seed)
            train, val = self.split_clips(rest, self.val_fraction, self.split_seed + 1)
            clips = {"train": train, "val": val, "test": test}
        if not clips["train"]:
            raise GenlabError(
                f"data.path={self.path!r} gives no training clip (a clip is a folder of at "
                f"least {self.frames} numbered frames): add clips or lower "
                "data.context_frames / data.future_frames."
            )
        return {s: self.dataset_of(clips[s] or []) for s in SPLITS}
