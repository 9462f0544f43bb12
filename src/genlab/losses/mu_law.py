"""μ-law companding (ITU-T G.711, as WaveNet uses it): waveforms in [-1, 1] <-> 256 classes.

F(x) = sign(x) ln(1 + μ|x|) / ln(1 + μ), μ = 255, spreads the quantisation levels so that
quiet samples (most of speech) get fine steps and loud ones coarse steps. Class q in
[0, 255] stands for the companded value 2q/μ - 1, so the classes are 256 equally spaced points
of [-1, 1] in the companded domain and a sample's class is the nearest one (rounding, not
flooring: the error is at most half a step there). Decoding inverts F exactly at the class
centres: x = sign(y) ((1 + μ)^|y| - 1) / μ.
"""

from __future__ import annotations

import math

import torch

MU = 255
CLASSES = MU + 1


def mu_law_compand(x: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """F(x) for x in [-1, 1] (clamped): a float tensor of the same shape in [-1, 1]."""
    x = x.float().clamp(-1.0, 1.0)
    return torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)


def mu_law_expand(y: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """The inverse of `mu_law_compand`: companded values in [-1, 1] -> waveform values."""
    y = y.float().clamp(-1.0, 1.0)
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


def mu_law_encode(x: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Waveform values in [-1, 1] -> int64 classes in [0, mu] (nearest companded level)."""
    y = mu_law_compand(x, mu)
    return torch.round((y + 1) * (mu / 2)).clamp_(0, mu).long()


def mu_law_decode(q: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Classes in [0, mu] -> waveform values in [-1, 1] (float32), the class centres."""
    return mu_law_expand(q.float() * (2.0 / mu) - 1.0, mu)


def quantisation_error_bound(x: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """The largest |x - decode(encode(x))| that nearest-level quantisation allows at x: the
    level lies within half a step (1/μ) of F(x) in the companded domain, on one side or the
    other, so the error is at most F⁻¹ moved by 1/μ from |F(x)| outwards or inwards (F⁻¹ is
    odd and monotone; the top level 1 is never passed)."""
    y = mu_law_compand(x, mu).abs()
    at = mu_law_expand(y, mu)
    outer = mu_law_expand((y + 1.0 / mu).clamp(max=1.0), mu) - at
    inner = at - mu_law_expand(y - 1.0 / mu, mu)
    return torch.maximum(outer, inner)
