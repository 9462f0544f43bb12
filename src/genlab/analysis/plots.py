"""Figures of codes: a 2-D projection (PCA) and scatter plots coloured by label. matplotlib is
imported when a figure is drawn, with the file-only Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pca_2d(codes: Any, fit_on: Any = None) -> tuple[np.ndarray, list[float]]:
    """Codes (N, d) -> 2-D points (N, 2), and the fraction of variance along each axis.

    Codes of at most 2 dimensions are shown as they are (zero-padded); larger codes are
    projected on the first two principal components of `fit_on` (default: the codes
    themselves), each component's sign fixed so that the same data gives the same picture.
    """
    codes = np.asarray(codes, dtype=np.float64)
    fit = codes if fit_on is None else np.asarray(fit_on, dtype=np.float64)
    d = codes.shape[1]
    if d <= 2:
        var = fit.var(0)
        fractions = var / max(float(var.sum()), 1e-30)
        return np.pad(codes, ((0, 0), (0, 2 - d))), [*map(float, fractions), 0.0][:2]
    mean = fit.mean(0)
    _, s, vt = np.linalg.svd(fit - mean, full_matrices=False)
    axes = vt[:2]  # (2, d)
    axes = axes * np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])[:, None]
    fractions = s**2 / max(float((s**2).sum()), 1e-30)
    return (codes - mean) @ axes.T, [float(f) for f in fractions[:2]]


def scatter_plot(panels: dict[str, np.ndarray], labels: Any, path: str | Path) -> None:
    """One scatter panel per entry of `panels` (title -> points (N, 2)), points coloured by
    class label (N,) with a legend up to 20 classes; grey when `labels` is None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    labels = None if labels is None else np.asarray(labels)
    classes = np.unique(labels) if labels is not None else np.array([])
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, (title, points) in zip(axes[0], panels.items(), strict=True):
        points = np.asarray(points)
        if labels is None:
            ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.7, color="grey")
        for i, c in enumerate(classes):
            sel = labels == c
            ax.scatter(
                points[sel, 0],
                points[sel, 1],
                s=4,
                alpha=0.7,
                color=cmap(i % cmap.N),
                label=str(c),
            )
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if 0 < len(classes) <= 20:
        axes[0][-1].legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
