"""Triplet grids of image-to-image translation: input | output | target."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torchvision.utils import make_grid

from genlab.callbacks.images import _EveryN, images_dir
from genlab.data.paired import load_pairs, translation_pairing
from genlab.data.subsets import evenly_spaced
from genlab.models.protocols import CanTranslate
from genlab.utils.loggers import log_image


def triplet_grid(columns: Sequence[torch.Tensor], n_per_row: int = 4) -> torch.Tensor:
    """Side-by-side tuples: `columns` are (n, C, H, W) images in [0, 1] of the same shape
    (e.g. input, output, target); example i is the tuple (columns[0][i], columns[1][i], ...),
    `n_per_row` tuples per grid row. Returns one (C, H', W') image."""
    k, n = len(columns), len(columns[0])
    tuples = torch.stack([c.float().clamp(0, 1).cpu() for c in columns], 1)  # (n, k, c, h, w)
    per_row = max(1, min(n_per_row, n))
    rows = -(-n // per_row)
    pad = rows * per_row - n
    if pad:  # a white tuple fills the last row
        tuples = torch.cat([tuples, tuples.new_ones(pad, *tuples.shape[1:])])
    return make_grid(tuples.flatten(0, 1), nrow=per_row * k, padding=2, pad_value=1.0)


@torch.no_grad()
def translation_triplets(
    model: CanTranslate, datamodule: object, split: str, n: int, *, baselines: bool = False
) -> tuple[list[torch.Tensor], list[str]]:
    """Columns for `triplet_grid` of `n` evenly spaced pairs of a split: the input as the
    data shows it, [each trivial baseline,] the model's output, the target; and their names."""
    data = datamodule.dataset(split)  # type: ignore[attr-defined]
    target, source = load_pairs(datamodule, split, evenly_spaced(len(data), n), model.device)  # type: ignore[attr-defined]
    pairing = translation_pairing(datamodule)
    shape = target.shape[1:]
    columns, names = [pairing.display(source, shape)], ["input"]
    if baselines:
        for name, image in pairing.baselines(source, shape).items():
            if name != "input":  # the first column already shows it
                columns.append(image)
                names.append(name)
    columns += [model.translate(source), target]
    return columns, [*names, "output", "target"]


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
        columns, _ = translation_triplets(pl_module, trainer.datamodule, self.split, self.n)  # type: ignore[attr-defined]
        grid = triplet_grid(columns, self.n_per_row)
        name = f"translations_{self.stamp}.png"
        log_image(
            trainer,
            "val/translations",
            grid,
            path=images_dir(trainer) / name,
            caption=f"input | output | target, {self.split} pairs ({self.when(trainer)})",
        )
