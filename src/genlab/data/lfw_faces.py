"""The 100 small faces scikit-image ships (`skimage.data.lfw_subset()`: 25 x 25 grey crops of
Labeled Faces in the Wild, offline): real faces for a GAN inversion demo where no face dataset
can be downloaded. The subset's other 100 images are background patches and are left out."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from genlab.data.datamodules import ArrayImages, ImageDataModule, match_channels
from genlab.utils.errors import GenlabError

N_FACES = 100


def lfw_faces(image_size: int = 25, channels: int = 1) -> torch.Tensor:
    """The 100 faces as uint8 (100, channels, image_size, image_size) (bilinear resize)."""
    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise GenlabError(
            "the LFW faces come with scikit-image, which is not installed: "
            "pip install 'scikit-image>=0.22'."
        ) from None
    faces = torch.from_numpy(lfw_subset()[:N_FACES]).float()[:, None]  # (100, 1, 25, 25) [0,1]
    if faces.shape[-1] != image_size:
        faces = F.interpolate(
            faces,
            size=(image_size, image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
    images = faces.clamp(0, 1).mul(255).round().to(torch.uint8)
    return match_channels(images, channels, "the LFW faces")


class LFWFaces(ImageDataModule):
    """The 100 LFW faces of scikit-image, split 80 / 10 / 10 (by `split_seed`), unlabelled
    (label 0). `repeat` serves the training split that many times per epoch, so that an
    epoch is more than one batch."""

    name = "lfw_faces"

    def __init__(self, *, test_fraction: float = 0.1, repeat: int = 1, **kwargs: Any) -> None:
        if repeat < 1:
            raise GenlabError(f"data.repeat={repeat} must be at least 1.")
        kwargs.setdefault("num_classes", None)
        super().__init__(**kwargs)
        self.test_fraction, self.repeat = test_fraction, repeat

    def load_splits(self) -> dict[str, Dataset]:
        images = lfw_faces(self.image_size, self.channels)
        full = ArrayImages(images, torch.zeros(len(images), dtype=torch.long))
        rest, test = self.split_off(full, self.test_fraction)
        train, val = self.split_off(rest, self.val_fraction / (1 - self.test_fraction))
        if self.repeat > 1:
            from genlab.data.datamodules import Indexed

            train = Indexed(train, torch.arange(len(train)).repeat(self.repeat))
        return {"train": train, "val": val, "test": test}
