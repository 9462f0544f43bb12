"""Interpolation strips logged during training, for models with an encoder and a decoder."""

from __future__ import annotations

import lightning as L

from genlab.analysis.latent_space import encoded_interpolations, modes_of
from genlab.callbacks.images import _EveryN, data_modality, fixed_batch, images_dir
from genlab.models.protocols import CanDecode, CanEncode
from genlab.utils.loggers import log_image


class LatentInterpolation(_EveryN):
    """Decoded interpolations between the codes of fixed validation images, one row per pair,
    the real images at both ends. `mode`: linear, spherical or both. Written as
    `images/interpolation_<mode>_eEEEE.png`, logged as `val/interpolation_<mode>`. Models
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
        x, y = fixed_batch(trainer, 2 * self.pairs)
        if len(x) < 2 or data_modality(trainer, x).kind != "image":
            return  # interpolation strips are drawn for images
        grids = encoded_interpolations(pl_module, x, y, self.modes, steps=self.steps)
        for mode, grid in grids.items():
            name = f"interpolation_{mode}_e{trainer.current_epoch:04d}.png"
            log_image(trainer, f"val/interpolation_{mode}", grid, path=images_dir(trainer) / name)
