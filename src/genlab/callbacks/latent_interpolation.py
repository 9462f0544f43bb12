"""Interpolation strips logged during training, for models with an encoder and a decoder."""

from __future__ import annotations

import lightning as L

from genlab.analysis.latent_space import encoded_interpolations, modes_of
from genlab.callbacks.images import (
    SPLIT_WORDS,
    _EveryN,
    data_modality,
    examples_split,
    fixed_batch,
    images_dir,
)
from genlab.models.protocols import CanDecode, CanEncode
from genlab.utils.loggers import log_image


class LatentInterpolation(_EveryN):
    """Decoded interpolations between the codes of fixed validation images (training images
    when the run has no validation split), one row per pair, the real images at both ends.
    `mode`: linear, spherical or both. Written as `images/interpolation_<mode>_<stamp>.png`,
    logged as `val/interpolation_<mode>` with a caption saying what the rows are. Models
    without `encode_latent` and `decode` are skipped.
    """

    def __init__(
        self, *, pairs: int = 4, steps: int = 8, mode: str = "both", every_n_epochs: int = 1
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs)
        self.pairs, self.steps = pairs, steps
        self.modes = modes_of(mode, "callbacks.latent_interpolation.mode")

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (isinstance(pl_module, CanEncode) and isinstance(pl_module, CanDecode)):
            return
        split = examples_split(trainer)
        x, y = fixed_batch(trainer, 2 * self.pairs, split)
        if len(x) < 2 or data_modality(trainer, x).kind != "image":
            return  # interpolation strips are drawn for images
        grids = encoded_interpolations(pl_module, x, y, self.modes, steps=self.steps)
        for mode, grid in grids.items():
            caption = (
                f"{PATHS[mode]} interpolation, one row per pair of fixed {SPLIT_WORDS[split]} "
                f"images ({len(x) // 2} rows): the first image, {self.steps} decodings along "
                f"the path between the two codes, the second image ({self.when(trainer)})"
            )
            log_image(
                trainer,
                f"val/interpolation_{mode}",
                grid,
                path=images_dir(trainer) / f"interpolation_{mode}_{self.stamp}.png",
                caption=caption,
            )


# how each mode moves between two codes, for captions
PATHS = {"linear": "linear (lerp)", "spherical": "spherical (slerp)"}
