"""Image grids written to the run directory (`images/`) and sent to every logger."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid

from genlab.models.protocols import CanReconstruct, CanSample
from genlab.utils.loggers import log_image


def fixed_batch(trainer: L.Trainer, n: int, split: str = "val") -> torch.Tensor:
    """`n` images spread evenly over a split (the same images every time): (n, c, h, w).

    Evenly spaced rather than the first n, since some datasets are stored sorted by class.
    """
    data = trainer.datamodule.dataset(split)  # type: ignore[attr-defined]
    n = min(n, len(data))
    return torch.stack([data[i][0] for i in torch.linspace(0, len(data) - 1, n).long().tolist()])


def fixed_labels(trainer: L.Trainer, n: int, split: str = "val") -> torch.Tensor:
    """The labels of the images `fixed_batch` returns (same n, same split)."""
    data = trainer.datamodule.dataset(split)  # type: ignore[attr-defined]
    n = min(n, len(data))
    idx = torch.linspace(0, len(data) - 1, n).long().tolist()
    return torch.stack([torch.as_tensor(data[i][1]) for i in idx])


def images_dir(trainer: L.Trainer) -> Path:
    return Path(trainer.default_root_dir) / "images"


class _EveryN(L.Callback):
    """Runs `draw` at the end of every `every_n_epochs`-th validation epoch, on rank 0, and
    also after every `every_n_steps`-th training step when that is > 0 (file names then carry
    the step, `sSSSSSSS`, instead of the epoch; `every_n_epochs=0` turns the epoch grids off)."""

    def __init__(self, *, every_n_epochs: int = 1, every_n_steps: int = 0) -> None:
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.stamp = "e0000"  # names this drawing's files

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise NotImplementedError

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, stamp: str) -> None:
        self.stamp = stamp
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            self.draw(trainer, pl_module)
        pl_module.train(was_training)

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (
            trainer.sanity_checking
            or not self.every_n_epochs
            or trainer.current_epoch % self.every_n_epochs
        ):
            return
        self._draw(trainer, pl_module, f"e{trainer.current_epoch:04d}")

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._draw(trainer, pl_module, f"s{trainer.global_step:08d}")


class ReconstructionGrid(_EveryN):
    """Inputs next to their reconstructions for a fixed set of validation images.

    Rows alternate: `n_per_row` inputs, then their reconstructions. Written as
    `images/reconstructions_eEEEE.png` and logged under
    `val/reconstructions`.
    """

    def __init__(self, *, n: int = 32, n_per_row: int = 8, every_n_epochs: int = 1) -> None:
        super().__init__(every_n_epochs=every_n_epochs)
        self.n, self.n_per_row = n, n_per_row

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, CanReconstruct):  # e.g. GANs
            return
        x = fixed_batch(trainer, self.n).to(pl_module.device)
        if getattr(pl_module, "conditional", False):  # label-conditioned models (CVAE)
            y = fixed_labels(trainer, self.n).to(pl_module.device)
            x_hat = pl_module.reconstruct(x, y)  # type: ignore[operator]
        else:
            x_hat = pl_module.reconstruct(x)  # type: ignore[operator]
        grid = reconstruction_grid(x, x_hat, self.n_per_row)
        name = f"reconstructions_{self.stamp}.png"
        log_image(trainer, "val/reconstructions", grid, path=images_dir(trainer) / name)


def reconstruction_grid(x: torch.Tensor, x_hat: torch.Tensor, n_per_row: int) -> torch.Tensor:
    """Interleave rows of inputs and reconstructions into one (c, H, W) grid."""
    rows = []
    for i in range(0, len(x), n_per_row):
        rows += [x[i : i + n_per_row], x_hat[i : i + n_per_row]]
    width = max(len(r) for r in rows)
    rows = [
        torch.cat([r, r.new_ones(width - len(r), *r.shape[1:])]) if len(r) < width else r
        for r in rows
    ]
    return make_grid(torch.cat(rows).float().clamp(0, 1), nrow=width, padding=2, pad_value=1.0)


class SampleGrid(_EveryN):
    """Samples from a fixed noise batch (the same z every time), for models with `sample()`.

    Written as `images/samples_eEEEE.png` (or `samples_sSSSSSSS.png` with `every_n_steps`) and
    logged under `val/samples`.
    """

    def __init__(
        self,
        *,
        n: int = 64,
        n_per_row: int = 8,
        seed: int = 0,
        every_n_epochs: int = 1,
        every_n_steps: int = 0,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, every_n_steps=every_n_steps)
        self.n, self.n_per_row, self.seed = n, n_per_row, seed

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, CanSample):
            return
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        x = pl_module.sample(self.n, generator=gen)  # type: ignore[operator]
        grid = make_grid(x.float().clamp(0, 1), nrow=self.n_per_row, padding=2, pad_value=1.0)
        name = f"samples_{self.stamp}.png"
        log_image(trainer, "val/samples", grid, path=images_dir(trainer) / name)
