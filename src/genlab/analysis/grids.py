"""Image grids the callbacks, the evaluation tasks and the CLIs compose alike: inputs above
their reconstructions, and side-by-side tuples (input | output | target) of translations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.utils import make_grid

from genlab.data.paired import load_pairs, translation_pairing
from genlab.data.subsets import evenly_spaced
from genlab.models.protocols import CanTranslate


def reconstruction_grid(x: torch.Tensor, x_hat: torch.Tensor, n_per_row: int) -> torch.Tensor:
    """Interleave rows of inputs and reconstructions into one (c, H, W) grid."""
    rows = []
    for i in range(0, len(x), n_per_row):
        rows += [x[i : i + n_per_row], x_hat[i : i + n_per_row]]
    width = max(len(r) for r in rows)
    rows = [
        torch.cat([r, r.new_ones(width - len(r), *r.shape[1:])]) if len(r) < width else r
        for r in rows
    ]
    return make_grid(torch.cat(rows).float().clamp(0, 1), nrow=width, padding=2, pad_value=1.0)


def triplet_grid(columns: Sequence[torch.Tensor], n_per_row: int = 4) -> torch.Tensor:
    """Side-by-side tuples: `columns` are (n, C, H, W) images in [0, 1] of the same shape
    (e.g. input, output, target); example i is the tuple (columns[0][i], columns[1][i], ...),
    `n_per_row` tuples per grid row. Returns one (C, H', W') image."""
    k, n = len(columns), len(columns[0])
    tuples = torch.stack([c.float().clamp(0, 1).cpu() for c in columns], 1)  # (n, k, c, h, w)
    per_row = max(1, min(n_per_row, n))
    rows = -(-n // per_row)
    pad = rows * per_row - n
    if pad:  # a white tuple fills the last row
        tuples = torch.cat([tuples, tuples.new_ones(pad, *tuples.shape[1:])])
    return make_grid(tuples.flatten(0, 1), nrow=per_row * k, padding=2, pad_value=1.0)


@torch.no_grad()
def translation_triplets(
    model: CanTranslate, datamodule: object, split: str, n: int, *, baselines: bool = False
) -> tuple[list[torch.Tensor], list[str]]:
    """Columns for `triplet_grid` of `n` evenly spaced pairs of a split: the input as the
    data shows it, [each trivial baseline,] the model's output, the target; and their names."""
    data = datamodule.dataset(split)  # type: ignore[attr-defined]
    target, source = load_pairs(datamodule, split, evenly_spaced(len(data), n), model.device)  # type: ignore[attr-defined]
    pairing = translation_pairing(datamodule)
    shape = target.shape[1:]
    columns, names = [pairing.display(source, shape)], ["input"]
    if baselines:
        for name, image in pairing.baselines(source, shape).items():
            if name != "input":  # the first column already shows it
                columns.append(image)
                names.append(name)
    columns += [model.translate(source), target]
    return columns, [*names, "output", "target"]
