"""Generation metrics by name: each takes the real and fake features of ONE feature pass and
returns `{name: value}` (StyleGAN-style). Names get the extractor's suffix, so metrics in the
domain classifier's feature space read `fid_domain`, `precision_domain`, ... and can never be
mistaken for Inception FID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from genlab.metrics import distances
from genlab.utils.errors import GenlabError


@dataclass
class Features:
    """One feature pass over a set of images: features (N, d) and class logits (N, K) or None."""

    features: torch.Tensor
    logits: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.features)


MetricFn = Callable[..., dict[str, float]]
METRICS: dict[str, MetricFn] = {}
# options each metric accepts (the rest of a shared options dict is ignored by it)
OPTIONS: dict[str, tuple[str, ...]] = {}


def register(name: str, *options: str) -> Callable[[MetricFn], MetricFn]:
    def wrap(fn: MetricFn) -> MetricFn:
        METRICS[name], OPTIONS[name] = fn, options
        return fn

    return wrap


@register("fid")
def _fid(real: Features, fake: Features) -> dict[str, float]:
    return {"fid": distances.fid(real.features, fake.features)}


@register("kid", "kid_subset_size", "kid_subsets")
def _kid(
    real: Features, fake: Features, *, kid_subset_size: int = 1000, kid_subsets: int = 100
) -> dict[str, float]:
    mean, std, size = distances.kid(
        real.features, fake.features, subset_size=kid_subset_size, n_subsets=kid_subsets
    )
    return {"kid": mean, "kid_std": std, "kid_subset_size": float(size)}


@register("is", "is_splits")
def _is(real: Features, fake: Features, *, is_splits: int = 10) -> dict[str, float]:
    if fake.logits is None:
        raise GenlabError(
            "the Inception Score needs class logits, and this feature extractor gives none: "
            "use extractor=inception or extractor=domain (a genlab classifier), or drop `is`."
        )
    mean, std = distances.inception_score(fake.logits, splits=is_splits)
    return {"is": mean, "is_std": std}


@register("precision_recall", "nearest_k")
def _pr(real: Features, fake: Features, *, nearest_k: int = 3) -> dict[str, float]:
    precision, recall = distances.precision_recall(real.features, fake.features, k=nearest_k)
    return {"precision": precision, "recall": recall}


@register("density_coverage", "nearest_k")
def _dc(real: Features, fake: Features, *, nearest_k: int = 5) -> dict[str, float]:
    density, coverage = distances.density_coverage(real.features, fake.features, k=nearest_k)
    return {"density": density, "coverage": coverage}


def check_names(names: list[str]) -> None:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise GenlabError(
            f"unknown generation metric(s) {unknown}: choose from {sorted(METRICS)} "
            "(option `metrics`)."
        )


def compute(
    names: list[str], real: Features, fake: Features, *, suffix: str = "", **options: Any
) -> dict[str, float]:
    """Every metric of `names` on the same features, keys suffixed (`fid` + `_domain`)."""
    check_names(list(names))
    out: dict[str, float] = {}
    for name in names:
        kwargs = {k: v for k, v in options.items() if k in OPTIONS[name] and v is not None}
        for key, value in METRICS[name](real, fake, **kwargs).items():
            out[f"{key}{suffix}"] = value
    return out


def lower_is_better(key: str) -> bool:
    """Direction of a metric key (for monitors): distances down, scores and coverage up."""
    base = key.split("/")[-1]
    return base.startswith(("fid", "kid"))
