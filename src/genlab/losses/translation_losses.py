"""Losses of image-to-image translation, per image (B,), optionally restricted to a region
(the hole of an inpainting mask).

- `pixel_loss`: mean absolute (`l1`, pix2pix) or squared (`mse`, SRGAN's pixel loss and the
  context encoder's) error over an image's values, or over its hole's values only;
- `feature_loss`: mean squared distance of two images' features from a fixed network
  (SRGAN's content loss, here with whatever feature net the user supplies);
- `psnr_db`: peak signal-to-noise ratio of each image, in dB (data range 1 by default).
"""

from __future__ import annotations

import torch

from genlab.utils.errors import GenlabError

PIXEL_LOSSES = ("l1", "mse")


def region_mean(values: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of each image's values (B, C, H, W) -> (B,); with `region` (B, 1, H, W) in {0, 1},
    the mean over the region's values only (0 for an empty region)."""
    if region is None:
        return values.flatten(1).mean(1)
    weight = region.to(values.dtype).expand_as(values)
    return (values * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1.0)


def pixel_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    kind: str = "l1",
    region: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-image `l1` or `mse` between output and target (B, C, H, W): (B,)."""
    diff = output.float() - target.float()
    if kind == "l1":
        return region_mean(diff.abs(), region)
    if kind == "mse":
        return region_mean(diff.pow(2), region)
    raise GenlabError(f"model.recon_loss={kind!r} is not a pixel loss: use one of {PIXEL_LOSSES}.")


def feature_loss(features_out: torch.Tensor, features_target: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of two images' features (B, ...) -> (B,)."""
    return (features_out.float() - features_target.float()).pow(2).flatten(1).mean(1)


def psnr_db(
    output: torch.Tensor,
    target: torch.Tensor,
    region: torch.Tensor | None = None,
    *,
    data_range: float = 1.0,
    max_db: float = 100.0,
) -> torch.Tensor:
    """Per-image PSNR (B,) in dB: 10 log10(range^2 / MSE), the MSE over the image (or its
    region); capped at `max_db` for a perfect image."""
    mse = pixel_loss(output, target, "mse", region)
    floor = data_range**2 * 10 ** (-max_db / 10)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(floor))
