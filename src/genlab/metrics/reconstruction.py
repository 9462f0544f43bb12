"""Reconstruction metrics of a model over a dataset: MSE, PSNR and SSIM on [0, 1] images."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Subset
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure


@torch.no_grad()
def reconstruction_metrics(
    model: Any, data: Any, *, n: int = 500, batch_size: int = 250
) -> dict[str, float]:
    """Per-pixel MSE, PSNR (dB) and SSIM of `model.reconstruct` over `n` images spread evenly
    over `data` (labels passed to conditional models)."""
    if n < len(data):
        data = Subset(data, torch.linspace(0, len(data) - 1, n).long().tolist())
    psnr = PeakSignalNoiseRatio(data_range=1.0).to(model.device)
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(model.device)
    sq_err, count = 0.0, 0
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        x = x.to(model.device)
        if getattr(model, "conditional", False):
            x_hat = model.reconstruct(x, torch.as_tensor(y).to(model.device))
        else:
            x_hat = model.reconstruct(x)
        x_hat = x_hat.float().clamp(0, 1)
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
