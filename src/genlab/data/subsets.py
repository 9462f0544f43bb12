"""Evenly spread subsets of a dataset: the same images every time, and every part of the
dataset represented (some datasets are stored sorted by class, so the first n would not be)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset


def evenly_spaced(n_available: int, n: int | None) -> list[int]:
    """`min(n, n_available)` indices spread evenly over `range(n_available)`, first and last
    included (all of them when `n` is None)."""
    if n is None or n >= n_available:
        return list(range(n_available))
    return torch.linspace(0, n_available - 1, n).long().tolist()


def spread_subset(data: Dataset, n: int | None) -> Dataset:
    """`data` itself, or the Subset of `n` evenly spaced items when it has more."""
    size = len(data)  # type: ignore[arg-type]
    if n is None or n >= size:
        return data
    return Subset(data, evenly_spaced(size, n))


def spread_batch(data: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` evenly spaced images and their labels, stacked: (n, c, h, w) and (n,) or (n, k)."""
    items = [data[i] for i in evenly_spaced(len(data), n)]
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])
