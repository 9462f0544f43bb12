"""Input corruptions for denoising autoencoders (Vincent et al. 2008/2010).

Each corruption maps clean images x (B, C, H, W) in [0, 1] to a corrupted copy; the
autoencoder reads the corrupted copy and is scored against the clean one. They hold no
parameters (they add nothing to a checkpoint) and take an optional `torch.Generator` so an
evaluation can draw the same noise every time. Combine several with `Corruptions` (applied
in order), which is what a `model.corruption` mapping in the config becomes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from genlab.utils.errors import GenlabError


def _uniform(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise GenlabError(f"model.corruption.{name}: the fraction must be in [0, 1], got {value}.")


class Corruption(nn.Module):
    """Base class: `forward(x, generator=None)` returns a corrupted copy of x."""

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


class GaussianNoise(Corruption):
    """Additive isotropic Gaussian noise N(0, sigma^2), clipped back to [0, 1] when `clip`."""

    def __init__(self, sigma: float = 0.3, *, clip: bool = True) -> None:
        super().__init__()
        if sigma < 0:
            raise GenlabError(f"model.corruption.gaussian.sigma must be >= 0, got {sigma}.")
        self.sigma, self.clip = float(sigma), clip

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        out = x + self.sigma * noise
        return out.clamp(0.0, 1.0) if self.clip else out

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, clip={self.clip}"


class Masking(Corruption):
    """Masking noise: each pixel is set to 0 with probability `fraction` (all channels)."""

    def __init__(self, fraction: float = 0.25) -> None:
        super().__init__()
        _check_fraction("masking.fraction", fraction)
        self.fraction = float(fraction)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        keep = _uniform(x.new_empty(b, 1, h, w), generator) >= self.fraction  # (b, 1, h, w)
        return x * keep

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}"


class SaltAndPepper(Corruption):
    """Salt-and-pepper noise: a `fraction` of the pixels is set to `low` or `high` (each with
    probability one half), all channels alike."""

    def __init__(self, fraction: float = 0.2, *, low: float = 0.0, high: float = 1.0) -> None:
        super().__init__()
        _check_fraction("salt_pepper.fraction", fraction)
        self.fraction, self.low, self.high = float(fraction), float(low), float(high)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        u = _uniform(x.new_empty(b, 1, h, w), generator)  # (b, 1, h, w)
        hit = u < self.fraction
        # within the hit pixels u is uniform on [0, fraction): its lower half becomes `low`
        value = torch.where(u < self.fraction / 2, self.low, self.high).to(x.dtype)
        return torch.where(hit, value, x)

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}, low={self.low}, high={self.high}"


class DropoutNoise(Corruption):
    """Dropout-style input noise: every value (each channel apart) is zeroed with probability
    `p` and the survivors are scaled by 1/(1-p) (inverted dropout), so the input's expectation
    is the clean image. Unlike `Masking`, values can exceed 1."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        _check_fraction("dropout.p", p)
        if p >= 1.0:
            raise GenlabError("model.corruption.dropout.p must be below 1 (it divides by 1 - p).")
        self.p = float(p)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        keep = _uniform(x, generator) >= self.p
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


CorruptionSpec = Callable[..., torch.Tensor] | Iterable[Any] | Mapping[str, Any] | None


class Corruptions(Corruption):
    """Several corruptions applied one after another (e.g. masking, then Gaussian noise)."""

    def __init__(self, corruptions: Iterable[nn.Module]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(corruptions)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for step in self.steps:
            x = step(x, generator=generator)
        return x

    def __len__(self) -> int:
        return len(self.steps)


def as_corruption(spec: CorruptionSpec) -> Corruptions | None:
    """Normalise a config value to one `Corruptions` (or None for no corruption).

    `spec` may be one corruption, a list of them, or a mapping name -> corruption (the form
    the `model/corruption` config group produces; entries set to null are skipped).
    """
    if spec is None:
        return None
    if isinstance(spec, Corruptions):
        return spec
    if isinstance(spec, nn.Module):
        items: list[Any] = [spec]
    elif isinstance(spec, Mapping):
        items = [c for c in spec.values() if c is not None]
    else:
        items = [c for c in spec if c is not None]
    for item in items:
        if not isinstance(item, nn.Module):
            raise GenlabError(
                f"model.corruption holds {item!r}, which is not a corruption: use entries of the "
                "model/corruption config group (gaussian, masking, salt_pepper, dropout), e.g. "
                "model/corruption=[masking,gaussian]."
            )
    return Corruptions(items) if items else None


KINDS: dict[str, type[Corruption]] = {
    "gaussian": GaussianNoise,
    "masking": Masking,
    "salt_pepper": SaltAndPepper,
    "dropout": DropoutNoise,
}


def corruption_at(kind: str, level: float) -> Corruption:
    """The corruption `kind` at strength `level` (sigma for gaussian, the fraction/probability
    for the others): what the denoising evaluation sweeps."""
    if kind not in KINDS:
        raise GenlabError(f"noise kind {kind!r} is not known: use one of {sorted(KINDS)}.")
    return KINDS[kind](level)
