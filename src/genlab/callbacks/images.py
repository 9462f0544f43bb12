"""Image grids written to the run directory (`images/`) and sent to every logger."""

from __future__ import annotations

import logging
import weakref
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from genlab.analysis.grids import reconstruction_grid
from genlab.data.modality import Modality, image
from genlab.data.subsets import spread_batch
from genlab.models.protocols import CanGenerate, CanReconstruct, CanSample, CanTranslate
from genlab.utils.loggers import log_image
from genlab.writers import log_media, writer_for

log = logging.getLogger(__name__)


SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}
_FELL_BACK: weakref.WeakSet = weakref.WeakSet()  # datamodules whose grids were said to fall back


def examples_split(trainer: L.Trainer, split: str = "val") -> str:
    """The split the grids draw their fixed examples from: `split`, or the training split when
    `split` is empty (`data.val_fraction=0` with `trainer.limit_val_batches=0`), said in one
    line per run."""
    dm = trainer.datamodule  # type: ignore[attr-defined]
    if split == "train" or len(dm.dataset(split)) > 0:
        return split
    if dm not in _FELL_BACK:
        _FELL_BACK.add(dm)
        log.info("the %s split is empty: the grids show fixed training examples instead", split)
    return "train"


def fixed_batch(
    trainer: L.Trainer, n: int, split: str = "val"
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` images spread evenly over a split (the same images every time; the training split's
    when that split is empty: `examples_split`) and their labels: (n, c, h, w), (n,) or (n, k).
    Evenly spaced rather than the first n, since some datasets are stored sorted by class."""
    split = examples_split(trainer, split)
    return spread_batch(trainer.datamodule.dataset(split), n)  # type: ignore[attr-defined]


def images_dir(trainer: L.Trainer) -> Path:
    return Path(trainer.default_root_dir) / "images"


class _EveryN(L.Callback):
    """Runs `draw` at the end of every `every_n_epochs`-th validation epoch, on rank 0, and
    also after every `every_n_steps`-th training step when that is > 0 (file names then carry
    the step, `sSSSSSSS`, instead of the epoch; `every_n_epochs=0` turns the epoch grids off).
    Whatever the schedule, training ends with a drawing of the final state (named by its
    step) unless one was just made at that step, so every run leaves its grids."""

    def __init__(self, *, every_n_epochs: int = 1, every_n_steps: int = 0) -> None:
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.stamp = "e0000"  # names this drawing's files
        self.drawn_at_step: int | None = None
        self.batch_epoch: int | None = None  # the epoch of the last training batch

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise NotImplementedError

    def when(self, trainer: L.Trainer) -> str:
        """'epoch E, step S' of the state drawn, for captions: E is the epoch of the last
        training batch, so a drawing at the end of training names the same epoch as one made
        at that step's validation (Lightning has counted the next epoch by then)."""
        epoch = trainer.current_epoch if self.batch_epoch is None else self.batch_epoch
        return f"epoch {epoch}, step {trainer.global_step}"

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.drawn_at_step != trainer.global_step:
            self._draw(trainer, pl_module, f"s{trainer.global_step:08d}")

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, stamp: str) -> None:
        self.stamp = stamp
        self.drawn_at_step = trainer.global_step
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
        self.batch_epoch = trainer.current_epoch
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
        split = examples_split(trainer)
        x, y = fixed_batch(trainer, self.n, split)
        x = x.to(pl_module.device)
        x_hat = pl_module.reconstruct(x, y.to(pl_module.device))
        caption = (
            f"odd rows: {len(x)} fixed {SPLIT_WORDS[split]} samples; even rows: their "
            f"reconstructions ({self.when(trainer)})"
        )
        modality = data_modality(trainer, x)
        stem = images_dir(trainer) / f"reconstructions_{self.stamp}"
        if modality.kind == "image":
            grid = reconstruction_grid(x, x_hat, self.n_per_row)
            log_image(
                trainer,
                "val/reconstructions",
                grid,
                path=stem.with_suffix(".png"),
                caption=caption,
            )
            return
        # other modalities: rows of inputs and of reconstructions in turn, by their writer
        rows = []
        for i in range(0, len(x), self.n_per_row):
            rows += [x[i : i + self.n_per_row], x_hat[i : i + self.n_per_row]]
        log_media(
            trainer,
            "val/reconstructions",
            torch.cat(rows).float(),
            modality=modality,
            stem=stem,
            n_per_row=self.n_per_row,
            caption=caption,
        )


def data_modality(trainer: L.Trainer, x: torch.Tensor) -> Modality:
    """The modality of the run's samples: the datamodule's, else images of x's shape."""
    modality = getattr(trainer.datamodule, "modality", None)  # type: ignore[attr-defined]
    if isinstance(modality, Modality):
        return modality
    return image(*x.shape[1:])


class SampleGrid(_EveryN):
    """Samples from a fixed noise batch (the same z every time), for models with `sample()`;
    conditioned on the data's grid conditions where the data gives them (captions, context
    clips: `grid_conditions`), each shown under its sample. Written with the modality's writer
    as `images/samples_eEEEE.png` (or `samples_sSSSSSSS.png` with `every_n_steps`; clips also
    as .gif, sounds as .wav, ...) and logged under `val/samples`.
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
        dm = trainer.datamodule  # type: ignore[attr-defined]
        y = dm.grid_conditions(self.n) if hasattr(dm, "grid_conditions") else None
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        if y is None:
            x = pl_module.sample(self.n, generator=gen)  # type: ignore[operator]
        else:
            y = y.to(pl_module.device)
            x = pl_module.sample(len(y), generator=gen, y=y)  # type: ignore[operator]
        condition = getattr(dm, "condition", None)
        captions = condition.describe(y.cpu()) if y is not None and condition else None
        caption = (
            f"{len(x)} samples from a fixed noise batch, seed {self.seed} ({self.when(trainer)})"
        )
        log_media(
            trainer,
            "val/samples",
            x.float(),
            modality=data_modality(trainer, x),
            stem=images_dir(trainer) / f"samples_{self.stamp}",
            n_per_row=self.n_per_row,
            captions=captions,
            caption=caption,
        )


class ConditionalGrid(_EveryN):
    """For models that generate from the data's conditions (CanGenerate: a clip's future from
    its context, an image from a caption or a sketch): for fixed validation examples, the
    condition, the model's output(s) and the truth, written by the modality's writer as
    `images/generated_<stamp>.png` (+ the modality's files) and logged as `val/generated`.
    Models that translate images have their own grid (TranslationGrid)."""

    def __init__(
        self,
        *,
        n: int = 8,
        samples: int = 1,
        seed: int = 0,
        split: str = "val",
        every_n_epochs: int = 1,
        every_n_steps: int = 0,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, every_n_steps=every_n_steps)
        self.n, self.samples, self.seed, self.split = n, samples, seed, split

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, CanGenerate) or isinstance(pl_module, CanTranslate):
            return
        dm = trainer.datamodule  # type: ignore[attr-defined]
        split = examples_split(trainer, self.split)
        truth, y = fixed_batch(trainer, self.n, split)
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        out = pl_module.generate(y.to(pl_module.device), generator=gen, samples=self.samples)
        outs = out.float().cpu() if self.samples > 1 else out.float().cpu()[None]
        modality = data_modality(trainer, truth)
        condition = getattr(dm, "condition", None)
        captions = condition.describe(y) if condition is not None else None
        stem = images_dir(trainer) / f"generated_{self.stamp}"
        writer = writer_for(modality)
        if condition is not None and condition.kind == "video" and hasattr(writer, "strips"):
            # clips: per clip its context, each predicted future and the truth as rows, and a
            # GIF of the truth beside the prediction(s)
            context, predictions = y.float(), outs if self.samples > 1 else outs[0]
            writer.save_prediction(
                context, predictions, truth.float(), stem, fps=modality.rate or 4
            )
            caption = (
                f"per clip: the {context.shape[1]} context frames, {len(outs)} predicted "
                f"future(s), the true future ({split} clips, {self.when(trainer)})"
            )
            log_image(
                trainer,
                "val/generated",
                writer.strips(context, predictions, truth.float()),
                caption=caption,
            )
            return
        # rows: each draw, then the truth; the conditions go in the captions
        batch = torch.cat([*outs, truth.float()])
        log_media(
            trainer,
            "val/generated",
            batch,
            modality=modality,
            stem=stem,
            n_per_row=len(truth),
            captions=(captions or [""] * len(truth)) * (len(outs) + 1),
            caption=(
                f"{len(outs)} generated row(s) then the truth, for {len(truth)} fixed "
                f"{split} conditions ({self.when(trainer)})"
            ),
        )
