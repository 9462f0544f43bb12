"""Triplet grids of image-to-image translation: input | output | target."""

from __future__ import annotations

import lightning as L

from genlab.analysis.grids import translation_triplets, triplet_grid
from genlab.callbacks.images import _EveryN, examples_split, images_dir
from genlab.models.protocols import CanTranslate
from genlab.utils.loggers import log_image


class TranslationGrid(_EveryN):
    """Input | output | target for a fixed set of validation pairs, for models that translate
    images (CanTranslate; others are skipped). Written as `images/translations_<stamp>.png`
    and logged as `val/translations`."""

    def __init__(
        self,
        *,
        n: int = 16,
        n_per_row: int = 4,
        split: str = "val",
        every_n_epochs: int = 1,
        every_n_steps: int = 0,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, every_n_steps=every_n_steps)
        self.n, self.n_per_row, self.split = n, n_per_row, split

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, CanTranslate):
            return
        split = examples_split(trainer, self.split)
        columns, _ = translation_triplets(pl_module, trainer.datamodule, split, self.n)  # type: ignore[attr-defined]
        grid = triplet_grid(columns, self.n_per_row)
        name = f"translations_{self.stamp}.png"
        log_image(
            trainer,
            "val/translations",
            grid,
            path=images_dir(trainer) / name,
            caption=f"input | output | target, {split} pairs ({self.when(trainer)})",
        )
