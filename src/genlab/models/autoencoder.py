"""The deterministic autoencoder: deep/stacked (MLP, conv, recurrent nets by config)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from genlab.data.corruptions import CorruptionSpec, as_corruption
from genlab.losses.reconstruction import KINDS, reconstruction_loss
from genlab.losses.sparsity import Sparsity, code_stats
from genlab.models.genlab_module import OptimizerFactory, SchedulerFactory, StepModule
from genlab.utils.errors import GenlabError


def image_metrics() -> nn.ModuleDict:
    """PSNR and SSIM over [0, 1] images, accumulated over a whole epoch."""
    return nn.ModuleDict(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        }
    )


class AutoEncoder(StepModule):
    """x -> encoder -> code -> decoder -> logits; reconstruction = sigmoid(logits).

    The loss is the reconstruction loss summed over pixels, averaged over the batch
    (`train/loss`, `val/loss`, `test/loss`, per image). PSNR and SSIM are logged for val and
    test. `monitor` names the metric this model is judged by (checkpointing and early
    stopping watch it; lower is better unless `monitor_mode=max`).

    Sparse and denoising autoencoders are this module with two optional extras:
    `corruption` (genlab.data.corruptions; a mapping/list of corruptions from the
    `model/corruption` group) corrupts the input only, in every stage, and the loss compares
    with the clean input, so a denoising model's val/test metrics are denoising metrics;
    `reconstruct(x)` itself never corrupts. `sparsity` (genlab.losses.sparsity) transforms
    the code wherever the model encodes (top-k) and/or adds a penalty on it to the loss;
    then `{stage}/recon_loss`, `{stage}/sparsity_penalty` and code statistics
    (`{stage}/code_mean_activation`, `code_active_fraction`, `code_dead_unit_fraction`,
    `code_unit_active_fraction_max`) are logged too.
    """

    def __init__(
        self,
        *,
        encoder: nn.Module,
        decoder: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        reconstruction: str = "mse",
        latent_dim: int | None = None,
        corruption: CorruptionSpec = None,
        sparsity: Sparsity | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        if reconstruction not in KINDS:
            raise GenlabError(f"model.reconstruction={reconstruction!r}: use one of {KINDS}.")
        self.encoder, self.decoder = encoder, decoder
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.reconstruction = reconstruction
        self.latent_dim = (
            latent_dim if latent_dim is not None else getattr(encoder, "out_dim", None)
        )
        self.monitor, self.monitor_mode = monitor, monitor_mode
        self.corruption = as_corruption(corruption)
        self.sparsity = sparsity
        self.metrics = nn.ModuleDict({"val": image_metrics(), "test": image_metrics()})

    # --- the model ------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)  # (b, latent_dim)
        return code if self.sparsity is None else self.sparsity.transform(code)

    # --- capabilities (genlab.models.protocols): unconditional, `y` is ignored -----------
    def encode_latent(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(x)

    def decode(self, code: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Code -> image in [0, 1]."""
        return torch.sigmoid(self.decoder(code))

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    # --- training -------------------------------------------------------------------------
    def step(self, batch: tuple[torch.Tensor, Any], stage: str) -> torch.Tensor:
        x, _ = batch  # (b, c, h, w) in [0, 1]
        x_in = x if self.corruption is None else self.corruption(x)  # corrupt the input only
        code = self.encode(x_in)
        logits = self.decoder(code)
        recon = reconstruction_loss(logits, x, self.reconstruction).mean()  # the clean target
        penalty = None if self.sparsity is None else self.sparsity.penalty(code)
        loss = recon if penalty is None else recon + penalty
        if self.logs_now(stage):
            scalars: dict[str, torch.Tensor] = {"loss": loss}
            if self.sparsity is not None:
                scalars.update(recon_loss=recon, sparsity_penalty=penalty)
                stats = code_stats(code, self.sparsity.active_threshold)
                scalars.update({f"code_{name}": value for name, value in stats.items()})
            self.log_scalars(stage, scalars, batch_size=len(x), prog_bar=("loss",))
        if stage in self.metrics:
            x_hat = torch.sigmoid(logits)
            for name, metric in self.metrics[stage].items():
                metric.update(x_hat, x)
                self.log(f"{stage}/{name}", metric, batch_size=len(x))
        return loss
