"""Metrics of predicted frames, per step of the horizon: MSE, PSNR, SSIM; the copy-last-frame
and mean-frame baselines; best-of-k and diversity for models that sample several futures.

Tensors are clips (B, T, C, H, W) in [0, 1]; several samples add a leading K. Conventions:

- MSE is per frame: the squared error SUMMED over the frame's pixels and channels, then
  averaged over clips (and over steps, for one number). This is how OpenSTL's tables report
  Moving MNIST (e.g. ConvLSTM ~ 29.8 at 64 x 64, 10 -> 10); divide by C * H * W for the
  per-pixel MSE.
- PSNR (dB) is computed per frame from that frame's per-pixel MSE (peak 1.0), then averaged
  over clips (a frame predicted exactly counts as `MAX_PSNR`, not infinity).
- SSIM is Wang et al.'s (2004) with an 11 x 11 Gaussian window (sigma 1.5), per frame, then
  averaged over clips.
- Sharpness is the mean absolute difference between neighbouring pixels (vertical plus
  horizontal: the total variation per pixel), reported as the ratio of the predictions' to
  the truth's on the same clips: 1 as sharp as the truth, below 1 blurrier (a blur spreads
  a digit's edges), above 1 noisier.

Every `per_step_*` function returns a (T,) tensor: one value per predicted step, the curve over
the horizon; `.mean()` of it is the average over steps.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

MAX_PSNR = 100.0  # dB; the PSNR of an exact frame (MSE below 1e-10)


def frame_mse(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Squared error summed over each frame's pixels: (..., T, C, H, W) -> (..., T)."""
    return (pred.float() - truth.float()).square().flatten(-3).sum(-1)


def per_step_mse(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """MSE per frame (summed over pixels) averaged over clips: (B, T, C, H, W) -> (T,)."""
    return frame_mse(pred, truth).mean(0)


def frame_psnr(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, peak 1) of each frame: (..., T, C, H, W) -> (..., T)."""
    per_pixel = frame_mse(pred, truth) / math.prod(truth.shape[-3:])
    psnr = 10.0 * torch.log10(1.0 / per_pixel.clamp(min=1e-10))
    return psnr.clamp(max=MAX_PSNR)


def per_step_psnr(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR per frame averaged over clips: (B, T, C, H, W) -> (T,)."""
    return frame_psnr(pred, truth).mean(0)


def frame_ssim(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """SSIM of each frame: (..., T, C, H, W) -> (..., T)."""
    lead = pred.shape[:-3]
    values = structural_similarity_index_measure(
        pred.float().reshape(-1, *pred.shape[-3:]).clamp(0, 1),
        truth.float().reshape(-1, *truth.shape[-3:]),
        data_range=1.0,
        reduction="none",
    )
    return values.reshape(lead)


def per_step_ssim(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """SSIM per frame averaged over clips: (B, T, C, H, W) -> (T,)."""
    return frame_ssim(pred, truth).mean(0)


def frame_sharpness(frames: torch.Tensor) -> torch.Tensor:
    """Mean |vertical| + mean |horizontal| neighbour difference of each frame:
    (..., T, C, H, W) -> (..., T); 0 for a constant frame, 2 for a 0/1 checkerboard."""
    x = frames.float()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(-3).mean(-1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(-3).mean(-1)
    return dy + dx


def per_step_sharpness(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The predictions' sharpness over the truth's, per step (each averaged over clips first):
    (B, T, C, H, W) -> (T,); 1 = as sharp as the truth, below 1 blurrier."""
    return frame_sharpness(pred).mean(0) / frame_sharpness(truth).mean(0).clamp(min=1e-12)


# --- baselines -------------------------------------------------------------------------------
def copy_last_frame(context: torch.Tensor, n_future: int) -> torch.Tensor:
    """The last context frame repeated: (B, T_c, C, H, W) -> (B, n_future, C, H, W)."""
    return context[:, -1:].expand(-1, n_future, -1, -1, -1)


def mean_frame(context: torch.Tensor, n_future: int) -> torch.Tensor:
    """The mean of the context frames repeated: (B, T_c, C, H, W) -> (B, n_future, C, H, W)."""
    return context.float().mean(1, keepdim=True).expand(-1, n_future, -1, -1, -1)


BASELINES = {"copy_last": copy_last_frame, "mean_frame": mean_frame}


# --- stochastic models -----------------------------------------------------------------------
def best_of_k(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """For each clip, the sample (of K) with the lowest MSE averaged over the horizon:
    samples (K, B, T, C, H, W), truth (B, T, C, H, W) -> the chosen samples (B, T, C, H, W).
    (Denton & Fergus 2018 report the best of 100 samples: a stochastic model is judged by
    whether one of its futures is the true one.)"""
    err = frame_mse(samples, truth.unsqueeze(0)).mean(-1)  # (k, b)
    best = err.argmin(0)  # (b,)
    return samples[best, torch.arange(samples.shape[1], device=samples.device)]


def per_step_diversity(samples: torch.Tensor) -> torch.Tensor:
    """MSE per frame (summed over pixels) between two different samples of one context,
    averaged over every pair and every clip: (K, B, T, C, H, W) -> (T,); 0 for a
    deterministic model, and for K = 1."""
    k = samples.shape[0]
    if k < 2:
        return samples.new_zeros(samples.shape[2])
    total = samples.new_zeros(samples.shape[2])
    for i in range(k):
        for j in range(i + 1, k):
            total += frame_mse(samples[i], samples[j]).mean(0)
    return total / (k * (k - 1) / 2)


def step_metrics(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """{'mse', 'psnr', 'ssim', 'sharpness'}: per-step curves (T,) of predictions against the
    truth."""
    return {
        "mse": per_step_mse(pred, truth),
        "psnr": per_step_psnr(pred, truth),
        "ssim": per_step_ssim(pred, truth),
        "sharpness": per_step_sharpness(pred, truth),
    }
