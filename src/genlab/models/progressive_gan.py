"""Progressive growing of GANs (Karras et al. 2018): genlab's GAN loop on a resolution schedule.

The iteration is the GAN's (manual optimization, `n_critic` D steps, one G step with D frozen,
EMA, schedulers, the non-finite stop, one iteration = one counted step); this module adds the
schedule around it. Before each iteration it sets G, D and the EMA copy of G to the stage of
the schedule and shows D the real batch at that stage's resolution:

    images shown  0 ........ S ...... S+F ...... 2S+F ...... 2S+2F ...
    stage         4x4 stable | 8x8 fade | 8x8 stable | 16x16 fade | ...   last level: stable

with S = `stabilise_images`, F = `fade_images`, alpha going linearly 0 -> 1 over a fade. Images
shown before iteration t are t x (batch size x devices), so the stage and alpha are a pure
function of the counted step: a resumed run (also inside a fade-in) continues the schedule
exactly, and nothing about it needs to be stored. Logged: `train/resolution`, `train/alpha`,
`train/images_shown`.

Real images: padded to the nets' power-of-two resolution when the data's size is not one
(28 -> 32 by repeating border pixels: 2 black pixels each side for MNIST), box-filtered down
to the stage's resolution and, during a fade, blended with the coarser level upsampled with the
same alpha as G's output (`nets.progressive.stage_reals`); on the device, per batch.

Optimizers: every level's parameters exist from the start and are in the two Adam optimizers,
so checkpoints of every stage have the same keys and resume needs no re-wiring. A level not
yet used gets no gradient (None), which Adam skips: its weights, moments and step counter stay
untouched until the level first runs, so its bias correction starts then. `reset_optimizers`
(default true, as the paper's code, `reset_opt_for_new_lod`) also clears both optimizers' state
whenever a phase changes (a fade-in starts or ends): moments gathered for the old network do
not steer the new one. Both choices are pure functions of the step, so resume stays exact.

Sampling: `decode` / `sample` use the stage the nets are at (the EMA G's), upsample it
(nearest) to the full resolution and crop the padding: every consumer sees data.image_size.
A checkpoint keeps `images_shown`; loading its weights puts the nets back at its stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genlab.models.gan import GAN
from genlab.models.protocols import Grows
from genlab.nets.progressive_nets import (
    Progress,
    ProgressiveDiscriminator,
    ProgressiveGenerator,
    crop_to,
    pad_to,
    stage_reals,
    upsample,
)
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

__all__ = ["Grows", "GrowthSchedule", "Progress", "ProgressiveGAN"]


@dataclass(frozen=True)
class GrowthSchedule:
    """The paper's schedule in images shown: 4x4 for `stabilise_images`, then per level a
    fade-in of `fade_images` and a stable phase of `stabilise_images`; the last level stays."""

    levels: int
    fade_images: int
    stabilise_images: int

    def at(self, images: int) -> Progress:
        """The stage after `images` real images have been shown."""
        if images < self.stabilise_images or self.levels == 1:
            return Progress(0, 1.0, 0)
        k, within = divmod(
            images - self.stabilise_images, self.fade_images + self.stabilise_images
        )
        level = k + 1
        if level >= self.levels:
            return Progress(self.levels - 1, 1.0, 2 * (self.levels - 1))
        if within < self.fade_images:
            return Progress(level, within / self.fade_images, 2 * level - 1)
        return Progress(level, 1.0, 2 * level)

    def fade_start(self, level: int) -> int:
        """Images shown when `level` (>= 1) starts fading in."""
        return self.stabilise_images + (level - 1) * (self.fade_images + self.stabilise_images)


class ProgressiveGAN(GAN):
    """The GAN loop on a growing G/D pair (`ProgressiveGenerator`, `ProgressiveDiscriminator`).

    Options beyond the GAN's: `fade_images`, `stabilise_images` (the schedule, module doc),
    `reset_optimizers`. The paper's recipe is `loss=wgan_gp`, `gp_weight=10`,
    `drift_weight=0.001`, `n_critic=1`, Adam(lr 1e-3, betas (0, 0.99)), `ema_decay=0.999`;
    `loss=bce` is the non-saturating alternative.
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        fade_images: int = 600_000,
        stabilise_images: int = 600_000,
        reset_optimizers: bool = True,
        **gan_options: Any,
    ) -> None:
        for name, net, cls in (
            ("generator", generator, ProgressiveGenerator),
            ("discriminator", discriminator, ProgressiveDiscriminator),
        ):
            if not isinstance(net, cls):
                raise GenlabError(
                    f"model.{name} is a {type(net).__name__}, but the progressive GAN grows its "
                    f"nets and needs a {cls.__name__}: use model=pggan (model/{name}=progressive)."
                )
        if (generator.image_size, generator.levels) != (
            discriminator.image_size,
            discriminator.levels,
        ):
            raise GenlabError(
                f"model.generator is built for image_size={generator.image_size} "
                f"({generator.levels} levels), model.discriminator for "
                f"{discriminator.image_size} ({discriminator.levels}); give both "
                "image_size=${data.image_size}."
            )
        if fade_images < 0 or stabilise_images < 1:
            raise GenlabError(
                f"model.fade_images={fade_images} / model.stabilise_images={stabilise_images}: "
                "a fade-in lasts >= 0 images and a stable phase >= 1 image (the paper: 600000 "
                "or 800000 each)."
            )
        super().__init__(generator=generator, discriminator=discriminator, **gan_options)
        self.schedule = GrowthSchedule(generator.levels, int(fade_images), int(stabilise_images))
        self.image_size, self.resolution = generator.image_size, generator.resolution
        self.reset_optimizers = reset_optimizers
        self.images_per_step: int | None = None  # batch size x devices, known at the first step
        # the images shown before the last iteration run: a checkpoint's stage
        self.register_buffer("images_shown", torch.zeros((), dtype=torch.long))
        self.register_load_state_dict_post_hook(_stage_from_loaded_state)
        self.progress = self.schedule.at(0)
        self._set_progress(self.progress, 0)

    # --- the schedule ---------------------------------------------------------------------
    def progress_at_step(self, step: int) -> Progress:
        """The stage of iteration `step` (0-based), once the batch size is known."""
        if self.images_per_step is None:
            raise RuntimeError("the images per step are known from the first training batch on")
        return self.schedule.at(step * self.images_per_step)

    def _set_progress(self, progress: Progress, images: int) -> None:
        for net in (self.generator, self.discriminator, self.generator_ema):
            if net is not None:
                net.set_progress(progress.level, progress.alpha)
        self.progress = progress
        self.images_shown.fill_(images)

    def reals(self, x: torch.Tensor, progress: Progress) -> torch.Tensor:
        """Real images (b, c, image_size, image_size) in [0, 1] -> as D sees them at `progress`
        (b, c, r, r): padded to the nets' resolution, box-filtered down, faded."""
        return stage_reals(pad_to(x, self.resolution), progress.resolution, progress.alpha)

    def _to_data_size(self, x: torch.Tensor) -> torch.Tensor:
        """G's output at a stage (n, c, r, r) -> (n, c, image_size, image_size): upsampled
        (nearest) to the full resolution, the padding cropped."""
        return crop_to(upsample(x, self.resolution // x.shape[-1]), self.image_size)

    # --- training -------------------------------------------------------------------------
    def on_train_start(self) -> None:
        super().on_train_start()
        dm = getattr(self.trainer, "datamodule", None)
        batch = getattr(dm, "batch_size", None)
        if not batch:
            return
        per_step = int(batch) * self.trainer.world_size
        self.images_per_step = per_step  # confirmed by the first batch
        if not self.trainer.is_global_zero:
            return
        steps = [
            -(-self.schedule.fade_start(k) // per_step) for k in range(1, self.schedule.levels)
        ]
        plan = ", ".join(
            f"{4 * 2**k}x{4 * 2**k} fades in from step {s}" for k, s in enumerate(steps, 1)
        )
        log.info("progressive growing, %d images per step: %s", per_step, plan or "4x4 only")
        total = self.trainer.estimated_stepping_batches
        final = self.schedule.at(max(int(min(total, 2**62)) - 1, 0) * per_step)  # last step
        if final.level < self.schedule.levels - 1 or final.alpha < 1.0:
            top = 4 * 2 ** (self.schedule.levels - 1)
            log.warning(
                "this run ends at stage %dx%d (alpha %.2f) after %s steps, before the full "
                "%dx%d: raise trainer.max_steps / max_epochs, or shorten model.fade_images and "
                "model.stabilise_images.",
                final.resolution,
                final.resolution,
                final.alpha,
                total,
                top,
                top,
            )

    def train_iteration(self, batch: Any) -> None:
        x, y = batch
        self.images_per_step = len(x) * self.trainer.world_size
        step = self.global_step
        now = self.progress_at_step(step)
        if (
            self.reset_optimizers
            and step > 0
            and now.phase != self.progress_at_step(step - 1).phase
        ):
            for opt in self.optimizers():  # type: ignore[union-attr]
                opt.optimizer.state.clear()
        self._set_progress(now, step * self.images_per_step)
        logs = self.logs_now("train")
        super().train_iteration((self.reals(x, now), y))
        if logs:
            # logged after the optimizer hooks ran: in the first batch Lightning drops what
            # training_step logged before a hook (its per-hook result reset)
            scalars = {
                "resolution": float(now.resolution),
                "alpha": now.alpha,
                "images_shown": float(step * self.images_per_step),
            }
            self.log_scalars("train", scalars, batch_size=len(x))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        super().validation_step((self.reals(x, self.progress), y), batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        super().test_step((self.reals(x, self.progress), y), batch_idx)


def _stage_from_loaded_state(module: nn.Module, incompatible_keys: Any) -> None:
    """After `load_state_dict`: put the nets at the stage of the loaded `images_shown`."""
    if isinstance(module, ProgressiveGAN):
        images = int(module.images_shown)
        module._set_progress(module.schedule.at(images), images)
