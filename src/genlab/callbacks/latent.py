"""Interpolation strips logged during training, for models with an encoder and a decoder."""

from __future__ import annotations

import lightning as L

from genlab.callbacks.images import _EveryN, fixed_batch, fixed_labels, images_dir
from genlab.latent import MODES, interpolation_strips
from genlab.models.protocols import CanEncode
from genlab.utils.errors import GenlabError
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
        if mode not in (*MODES, "both"):
            raise GenlabError(
                f"callbacks.latent_interpolation.mode={mode!r}: use linear, spherical or both."
            )
        self.pairs, self.steps = pairs, steps
        self.modes = list(MODES) if mode == "both" else [mode]

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, CanEncode) or not hasattr(pl_module, "decode"):
            return
        x = fixed_batch(trainer, 2 * self.pairs).to(pl_module.device)
        half = len(x) // 2
        if half < 1:
            return
        y = None
        if getattr(pl_module, "conditional", False):
            y = fixed_labels(trainer, 2 * self.pairs).to(pl_module.device)
        z = pl_module.encode_latent(x, y)
        for mode in self.modes:
            grid = interpolation_strips(
                pl_module,
                z[:half],
                z[half : 2 * half],
                steps=self.steps,
                mode=mode,
                y=y[:half] if y is not None else None,
                ends=(x[:half], x[half : 2 * half]),
            )
            name = f"interpolation_{mode}_e{trainer.current_epoch:04d}.png"
            log_image(trainer, f"val/interpolation_{mode}", grid, path=images_dir(trainer) / name)
