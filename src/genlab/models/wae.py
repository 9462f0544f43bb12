"""The Wasserstein autoencoder with the MMD penalty (WAE-MMD, Tolstikhin et al. 2017).

The VAE's sibling (genlab.models.generative_ae): the same nets, conditioning, decoding and
sampling, another loop. The encoder is deterministic (one code per image, no posterior, no
KL), and the regularizer is a batch-level statistic, the MMD between the batch of codes and as
many prior draws, not a per-image term. A WAE defines no likelihood p(x): it does not satisfy
HasLikelihood, so the density and ood tasks refuse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from genlab.losses.mmd import KERNELS, mmd
from genlab.losses.reconstruction import KINDS, reconstruction_loss
from genlab.models.generative_ae import GenerativeAutoEncoder
from genlab.utils.errors import GenlabError


class WAE(GenerativeAutoEncoder):
    """x -> encoder -> z -> decoder; loss = mean_b c(x, x_hat) + mmd_weight * MMD(z, z_prior).

    `reconstruction`: the cost c, `mse` (squared error of sigmoid(logits), summed over pixels)
    or `bce`; `kernel`: `imq` or `rbf`, summed over `kernel_scales` (bandwidth 2 * d * scale).
    Images are sigmoid(logits). A WAE defines no likelihood, so the density tasks do not apply;
    it is judged by `val/loss`.
    """

    codes_per_latent = 1

    def __init__(
        self,
        *,
        reconstruction: str = "mse",
        kernel: str = "imq",
        kernel_scales: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
        mmd_weight: float = 10.0,
        monitor: str = "val/loss",
        **shared: Any,
    ) -> None:
        """`shared`: the nets, optimizer and conditioning options of GenerativeAutoEncoder
        (encoder, decoder, optimizer, scheduler, latent_dim, conditional, num_classes,
        monitor_mode)."""
        super().__init__(monitor=monitor, **shared)
        if reconstruction not in KINDS:
            raise GenlabError(f"model.reconstruction={reconstruction!r}: use one of {KINDS}.")
        if kernel not in KERNELS:
            raise GenlabError(f"model.kernel={kernel!r}: use one of {KERNELS}.")
        self.reconstruction, self.kernel = reconstruction, kernel
        self.kernel_scales, self.mmd_weight = tuple(float(s) for s in kernel_scales), mmd_weight

    def encode_latent(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The code itself: (B, latent_dim)."""
        return self.encoder_output(x, y)

    def step(self, batch: tuple[torch.Tensor, Any], stage: str) -> torch.Tensor:
        x, y = batch  # y is ignored unless conditional
        z = self.encode_latent(x, y)  # (b, d)
        recon = reconstruction_loss(self.decoder_logits(z, y), x, self.reconstruction).mean()
        z_prior = torch.randn_like(z)
        penalty = mmd(z, z_prior, self.kernel, self.kernel_scales)
        loss = recon + self.mmd_weight * penalty
        if self.logs_now(stage):
            scalars = {"loss": loss, "recon": recon, "mmd": penalty}
            self.log_scalars(stage, scalars, batch_size=len(x), prog_bar=("loss",))
        return loss
