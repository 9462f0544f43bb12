"""What every video datamodule shares: clips cut into the frames to predict and their context.

A batch is `(x, y)` with x the frames to predict (B, future_frames, C, H, W) and y the context
the model sees (B, context_frames, C, H, W), both floats in [0, 1] (genlab.data.modality:
modality `video`, condition `video`). Subclasses (Moving MNIST generated or read from the
published file, folders of frames) load the splits; items of every split are such pairs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from genlab.data.datamodules import SampleDataModule
from genlab.data.modality import Condition, Modality, video
from genlab.utils.errors import GenlabError


def split_clip(frames: torch.Tensor, context_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (T, C, H, W) -> (future, context) as floats in [0, 1]: the batch pair (x, y)."""
    clip = frames.float().div_(255)
    return clip[context_frames:], clip[:context_frames]


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (T, C, H, W) -> uint8 (T, C, size, size): center-cropped to a square, then resized
    with antialiasing (a no-op when the frames are already size x size)."""
    h, w = frames.shape[-2:]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        frames = frames[..., top : top + s, left : left + s]
    if frames.shape[-1] == size:
        return frames
    out = F.interpolate(frames.float(), size=(size, size), mode="bilinear", antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


class VideoDataModule(SampleDataModule):
    """Clips of `context_frames + future_frames` frames of `channels` x `image_size` x
    `image_size` pixels; batches (future, context) as the module docstring says. `fps` is
    the frame rate writers use for GIFs and W&B videos."""

    name = "video"

    def __init__(
        self,
        *,
        image_size: int = 64,
        channels: int = 1,
        context_frames: int = 10,
        future_frames: int = 10,
        fps: float = 4.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if image_size < 4 or channels not in (1, 3):
            raise GenlabError(
                f"data.image_size={image_size} / data.channels={channels}: frames must be at "
                "least 4 pixels wide and have 1 (grey) or 3 (RGB) channels."
            )
        if context_frames < 1 or future_frames < 1:
            raise GenlabError(
                f"data.context_frames={context_frames} / data.future_frames={future_frames}: "
                "a model needs at least one frame of context and one to predict."
            )
        if fps <= 0:
            raise GenlabError(f"data.fps={fps} must be a positive number of frames a second.")
        self.image_size, self.channels = image_size, channels
        self.context_frames, self.future_frames, self.fps = context_frames, future_frames, fps

    @property
    def frames(self) -> int:
        """Frames in one clip: context then future."""
        return self.context_frames + self.future_frames

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every frame."""
        return (self.channels, self.image_size, self.image_size)

    @property
    def modality(self) -> Modality:
        return video(self.future_frames, self.channels, self.image_size, fps=self.fps)

    @property
    def condition(self) -> Condition:
        return Condition("video", (self.context_frames, *self.image_shape))
