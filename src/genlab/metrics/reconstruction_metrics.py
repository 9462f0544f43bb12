"""Reconstruction metrics of a model over a dataset: MSE, PSNR and SSIM on [0, 1] images."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from genlab.data.subsets import spread_subset


@torch.no_grad()
def reconstruction_metrics(
    model: Any, data: Any, *, n: int = 500, batch_size: int = 250
) -> dict[str, float]:
    """Per-pixel MSE, PSNR (dB) and SSIM of `model.reconstruct` over `n` images spread evenly
    over `data` (their labels passed along, for conditional models)."""
    data = spread_subset(data, n)
    psnr = PeakSignalNoiseRatio(data_range=1.0).to(model.device)
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(model.device)
    sq_err, count = 0.0, 0
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        x = x.to(model.device)
        x_hat = model.reconstruct(x, torch.as_tensor(y).to(model.device)).float().clamp(0, 1)
        sq_err += float((x_hat - x).square().sum())
        count += x.numel()
        psnr.update(x_hat, x)
        ssim.update(x_hat, x)
    return {
        "mse_per_pixel": sq_err / max(count, 1),
        "psnr_db": float(psnr.compute()),
        "ssim": float(ssim.compute()),
        "n_images": float(len(data)),
    }
