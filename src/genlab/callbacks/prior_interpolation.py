"""Callbacks for adversarial training."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import torch

from genlab.analysis.latent_space import modes_of, prior_interpolations
from genlab.callbacks.images import _EveryN, images_dir
from genlab.callbacks.latent_interpolation import PATHS
from genlab.models.protocols import CanEncode, HasPrior
from genlab.utils.loggers import log_image


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's parameters (names, shapes and exact bytes), buffers excluded."""
    h = hashlib.sha256()
    for name, p in module.named_parameters():
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class WeightsDigest(L.Callback):
    """At the end of training every rank writes `weights_rank<R>.json` to the run directory:
    the global step and a digest of each top-level net (generator, discriminator, ...).

    Under data-parallel training the files of all ranks must be equal; a difference means the
    replicas drifted apart (unsynchronised gradients or updates).
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        digests = {
            name: parameter_digest(child)
            for name, child in pl_module.named_children()
            if any(True for _ in child.parameters())
        }
        out = Path(trainer.default_root_dir) / f"weights_rank{trainer.global_rank}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"global_step": trainer.global_step, "digests": digests}))


class PriorInterpolation(_EveryN):
    """Interpolation strips between fixed pairs of prior draws z, for models that sample but
    have no encoder (GANs): one row per pair, `steps` decoded points, spherical (slerp, the
    DCGAN paper's latent walks) and/or linear. Written as
    `images/prior_interpolation_<mode>_<stamp>.png` and logged as
    `val/prior_interpolation_<mode>` with a caption saying what the rows are, every
    `every_n_epochs` epochs and/or `every_n_steps` steps. Models with an encoder are left to
    `LatentInterpolation`.
    """

    def __init__(
        self,
        *,
        pairs: int = 6,
        steps: int = 10,
        mode: str = "spherical",
        seed: int = 1,
        every_n_epochs: int = 1,
        every_n_steps: int = 0,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, every_n_steps=every_n_steps)
        self.pairs, self.steps, self.seed = pairs, steps, seed
        self.modes = modes_of(mode, "callbacks.prior_interpolation.mode")

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, HasPrior) or isinstance(pl_module, CanEncode):
            return
        modality = getattr(trainer.datamodule, "modality", None)  # type: ignore[attr-defined]
        if modality is not None and modality.kind != "image":
            return  # interpolation strips are drawn for images
        gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        grids = prior_interpolations(
            pl_module, self.pairs, self.modes, steps=self.steps, generator=gen
        )
        labels = pl_module.default_labels(self.pairs) is not None
        for mode, grid in grids.items():
            caption = (
                f"{PATHS[mode]} interpolation, one row per pair of fixed prior draws (seed "
                f"{self.seed}, {self.pairs} rows): {self.steps} decodings from the first draw "
                "to the second"
                + (", each row with one of the model's default labels" if labels else "")
                + f" ({self.when(trainer)})"
            )
            name = f"prior_interpolation_{mode}_{self.stamp}.png"
            log_image(
                trainer,
                f"val/prior_interpolation_{mode}",
                grid,
                path=images_dir(trainer) / name,
                caption=caption,
            )
