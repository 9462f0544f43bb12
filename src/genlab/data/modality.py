"""What a sample is, and what it is conditioned on: the data half of genlab's contracts.

Every datamodule declares `modality` (what `x` of a batch `(x, y)` is) and `condition` (what
`y` is, or None). Models size their nets from them, and one writer per modality
(`genlab.writers`) turns samples into files and logger media for callbacks, eval, sample and
the report alike, so no caller assumes images.

Value conventions (per sample; a batch adds a leading B):

| kind       | shape            | values                                              |
|------------|------------------|-----------------------------------------------------|
| `image`    | (C, H, W)        | floats in [0, 1]                                    |
| `video`    | (T, C, H, W)     | floats in [0, 1]; `rate` = frames per second         |
| `waveform` | (C, L)           | floats in [-1, 1]; `rate` = samples per second       |
| `voxels`   | (1, D, H, W)     | occupancy floats in [0, 1] (1 = filled)             |
| `tokens`   | (L,)             | int64 token ids in [0, vocab_size); 0 is padding    |

Conditions (`y`):

| kind         | per sample        | meaning                                            |
|--------------|-------------------|----------------------------------------------------|
| `class`      | () int64          | a class index in [0, num_classes)                  |
| `attributes` | (K,) float        | an attribute vector (0/1, or a measured value)     |
| `tokens`     | (L,) int64        | a token sequence (a caption), 0-padded             |
| `image`      | (C, H, W) float   | an image in [0, 1] (translation sources, sketches) |
| `video`      | (T, C, H, W)      | frames in [0, 1] (the context of a prediction)     |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("image", "video", "waveform", "voxels", "tokens")
CONDITION_KINDS = ("class", "attributes", "tokens", "image", "video")


@dataclass(frozen=True)
class Modality:
    """What one sample is: `kind` (KINDS), its `shape` without the batch axis, the range of
    its values, and `rate` (frames or samples per second) where time is an axis."""

    kind: str
    shape: tuple[int, ...]
    low: float = 0.0
    high: float = 1.0
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"modality kind {self.kind!r}: one of {', '.join(KINDS)}")
        ndim = {"image": 3, "video": 4, "waveform": 2, "voxels": 4, "tokens": 1}[self.kind]
        if len(self.shape) != ndim:
            raise ValueError(f"a {self.kind} sample has {ndim} axes, not shape {self.shape}")

    @property
    def channels(self) -> int:
        """Channels of a sample (0 for token sequences)."""
        axis = {"image": 0, "video": 1, "waveform": 0, "voxels": 0}.get(self.kind)
        return self.shape[axis] if axis is not None else 0


def image(channels: int, height: int, width: int | None = None) -> Modality:
    return Modality("image", (channels, height, width or height))


def video(frames: int, channels: int, height: int, width: int | None = None, fps: float = 4.0):
    return Modality("video", (frames, channels, height, width or height), rate=fps)


def waveform(length: int, rate: int, channels: int = 1) -> Modality:
    return Modality("waveform", (channels, length), low=-1.0, high=1.0, rate=float(rate))


def voxels(size: int) -> Modality:
    return Modality("voxels", (1, size, size, size))


def tokens(length: int, vocab_size: int) -> Modality:
    return Modality("tokens", (length,), low=0, high=vocab_size - 1)


@dataclass(frozen=True)
class Condition:
    """What `y` is: `kind` (CONDITION_KINDS) and its shape per sample; `num_classes` for
    classes and attributes (K), `vocab` (id -> word) for tokens, `names` of classes or
    attributes for captions."""

    kind: str
    shape: tuple[int, ...] = ()
    num_classes: int = 0
    vocab: tuple[str, ...] = ()
    names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in CONDITION_KINDS:
            kinds = ", ".join(CONDITION_KINDS)
            raise ValueError(f"condition kind {self.kind!r}: one of {kinds}")

    def describe(self, y: Any) -> list[str]:
        """One human-readable caption per condition of a batch (for grids and tables)."""
        import torch

        if self.kind == "class":
            ids = torch.as_tensor(y).reshape(-1).tolist()
            return [self.names[i] if i < len(self.names) else str(i) for i in ids]
        if self.kind == "tokens":
            rows = torch.as_tensor(y).tolist()
            return [" ".join(self.vocab[t] for t in row if t != 0) for row in rows]
        if self.kind == "attributes":
            rows = torch.as_tensor(y).float().tolist()
            names = self.names or tuple(str(i) for i in range(len(rows[0]) if rows else 0))
            return [
                ", ".join(f"{n}={v:g}" for n, v in zip(names, row, strict=False)) for row in rows
            ]
        return [self.kind] * len(y)
