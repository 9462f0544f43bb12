"""Per-stage snapshots of a progressive GAN run: a sample grid and a checkpoint per stage."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torchvision.utils import make_grid

from genlab.callbacks.images import images_dir
from genlab.models.protocols import CanSample, Grows
from genlab.nets.progressive_nets import Progress
from genlab.utils.loggers import log_image


def stage_name(progress: Progress) -> str:
    """`stage_08x08`, or `stage_08x08_alpha0.40` inside a fade-in."""
    r = progress.resolution
    name = f"stage_{r:02d}x{r:02d}"
    return name if progress.alpha >= 1.0 else f"{name}_alpha{progress.alpha:.2f}"


class StageSnapshots(L.Callback):
    """At the end of each stage of a growing model (the last iteration before the next
    resolution fades in) and at the end of training: samples from fixed noise, upsampled
    (nearest) to the data's size so the stages compare side by side, written as
    `images/stage_08x08.png` and logged as `val/stage_08x08` to every logger; and, with
    `save_checkpoint`, the checkpoint `checkpoints/stage_08x08.ckpt` (sample and evaluate any
    stage with genlab.sample / genlab.eval). Does nothing for models without a schedule.
    """

    def __init__(
        self, *, n: int = 64, n_per_row: int = 8, seed: int = 0, save_checkpoint: bool = True
    ) -> None:
        self.n, self.n_per_row, self.seed = n, n_per_row, seed
        self.save_checkpoint = save_checkpoint
        self._last_drawn = -1  # the global step of the last snapshot
        self._trained = False  # whether this fit ran an iteration (a finished run resumed: no)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        if not isinstance(pl_module, Grows):
            return
        self._trained = True
        t = trainer.global_step  # iterations done; the last one ran at the stage of t - 1
        done, upcoming = pl_module.progress_at_step(t - 1), pl_module.progress_at_step(t)
        if upcoming.level > done.level:
            self._snapshot(trainer, pl_module, done, checkpoint=self.save_checkpoint)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if isinstance(pl_module, Grows) and self._trained:
            done = pl_module.progress_at_step(trainer.global_step - 1)
            self._snapshot(trainer, pl_module, done, checkpoint=False)

    def _snapshot(
        self, trainer: L.Trainer, pl_module: L.LightningModule, done: Progress, *, checkpoint: bool
    ) -> None:
        if self._last_drawn == trainer.global_step:
            return
        self._last_drawn = trainer.global_step
        name = stage_name(done)
        if checkpoint and trainer.checkpoint_callback is not None:
            # every rank calls it (it ends in a barrier); rank 0 writes
            dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
            if dirpath:
                trainer.save_checkpoint(Path(dirpath) / f"{name}.ckpt", weights_only=False)
        if trainer.is_global_zero and isinstance(pl_module, CanSample):
            was_training = pl_module.training
            pl_module.eval()
            with torch.no_grad():
                gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
                x = pl_module.sample(self.n, generator=gen)  # (n, c, H, W) at the data's size
            pl_module.train(was_training)
            grid = make_grid(x.float().clamp(0, 1), nrow=self.n_per_row, padding=2, pad_value=1.0)
            log_image(trainer, f"val/{name}", grid, path=images_dir(trainer) / f"{name}.png")
