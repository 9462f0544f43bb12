"""Latent-space operations for any model with a latent space: paths between codes (linear and
spherical), interpolation grids, attribute vectors (DCGAN-style arithmetic, averaged over
exemplars) and the codes of a dataset.

Codes come from `encode_latent` (CanEncode: autoencoders, VAEs) or from the prior
(`sample_latent`, HasPrior: VAEs, GANs); images from `decode` (CanDecode). Labels are always
passed along; unconditional models ignore them (genlab.models.protocols).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import make_grid, save_image

from genlab.data.subsets import evenly_spaced, spread_batch, spread_subset
from genlab.models.protocols import CanDecode, CanEncode, HasPrior
from genlab.utils.errors import GenlabError

MODES = ("linear", "spherical")
SOURCES = ("auto", "data", "prior")


def modes_of(mode: str, option: str = "mode") -> list[str]:
    """`linear`, `spherical` or `both` -> the list of modes; a GenlabError naming `option`."""
    if mode == "both":
        return list(MODES)
    if mode not in MODES:
        raise GenlabError(f"{option}={mode!r}: use linear, spherical or both.")
    return [mode]


# --- paths -----------------------------------------------------------------------------------
def lerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Straight line from z0 to z1 (d,) in `steps` points, endpoints included: (steps, d)."""
    t = torch.linspace(0, 1, steps, device=z0.device, dtype=z0.dtype)[:, None]
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, steps: int, eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation (White 2016): along the great circle between the directions of
    z0 and z1, norms interpolated linearly, so points stay in the typical set of a Gaussian
    prior. Falls back to lerp for (anti)parallel codes. (steps, d)."""
    t = torch.linspace(0, 1, steps, device=z0.device, dtype=z0.dtype)[:, None]
    n0, n1 = z0.norm(), z1.norm()
    u0, u1 = z0 / n0.clamp_min(eps), z1 / n1.clamp_min(eps)
    omega = torch.arccos((u0 * u1).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-4 or (torch.pi - omega).abs() < 1e-4 or n0 < eps or n1 < eps:
        return lerp(z0, z1, steps)
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int, mode: str) -> torch.Tensor:
    """`lerp` or `slerp` by name."""
    if mode not in MODES:
        raise GenlabError(f"mode={mode!r} is not an interpolation: use one of {MODES} (or both).")
    return lerp(z0, z1, steps) if mode == "linear" else slerp(z0, z1, steps)


# --- interpolation grids ---------------------------------------------------------------------
@torch.no_grad()
def interpolation_strips(
    model: CanDecode,
    z0: torch.Tensor,
    z1: torch.Tensor,
    *,
    steps: int = 10,
    mode: str = "linear",
    y: torch.Tensor | None = None,
    ends: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One row per pair (z0[i] -> z1[i]) of `steps` decoded points: a (c, H, W) grid.

    `y` are labels held fixed along each row (conditional models); `ends` the real images
    (x0, x1) shown at both ends of each row.
    """
    rows = []
    for i in range(len(z0)):
        zs = interpolate(z0[i], z1[i], steps, mode)  # (steps, d)
        yi = y[i : i + 1].expand(steps, *y.shape[1:]) if y is not None else None
        images = model.decode(zs, yi).float().clamp(0, 1)
        if ends is not None:
            images = torch.cat(
                [ends[0][i : i + 1].to(images), images, ends[1][i : i + 1].to(images)]
            )
        rows.append(images)
    width = len(rows[0])
    return make_grid(torch.cat(rows).cpu(), nrow=width, padding=2, pad_value=1.0)


@torch.no_grad()
def encoded_interpolations(
    model: Any,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    modes: Sequence[str],
    *,
    steps: int,
) -> dict[str, torch.Tensor]:
    """A grid per mode between the codes of the first and the second half of `images`
    (B, C, H, W), one row per pair, the real images at both ends; each row decodes with the
    label of its first image."""
    half = len(images) // 2
    if half < 1:
        raise GenlabError("interpolating between images needs at least 2 images of the data.")
    x = images[: 2 * half].to(model.device)
    y = labels[: 2 * half].to(model.device) if labels is not None else None
    z = model.encode_latent(x, y)  # (2 * half, d)
    return {
        mode: interpolation_strips(
            model,
            z[:half],
            z[half:],
            steps=steps,
            mode=mode,
            y=y[:half] if y is not None else None,
            ends=(x[:half], x[half:]),
        )
        for mode in modes
    }


@torch.no_grad()
def prior_interpolations(
    model: Any, pairs: int, modes: Sequence[str], *, steps: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A grid per mode between `pairs` pairs of prior draws, one row per pair; a conditional
    model decodes each row with one of its `default_labels`."""
    z0 = model.sample_latent(pairs, generator=generator)
    z1 = model.sample_latent(pairs, generator=generator)
    y = model.default_labels(pairs)
    return {
        mode: interpolation_strips(model, z0, z1, steps=steps, mode=mode, y=y) for mode in modes
    }


def interpolation_source(model: Any, source: str = "auto") -> str:
    """`data` (between encoded images) or `prior` (between prior draws) for `model`; `auto`
    picks data when the model can encode and decode, else the prior."""
    if source not in SOURCES:
        raise GenlabError(f"source={source!r}: use auto, data or prior.")
    can_data = isinstance(model, CanEncode) and isinstance(model, CanDecode)
    if source == "auto":
        source = "data" if can_data else "prior"
    if source == "data" and not can_data:
        raise GenlabError(
            f"{type(model).__name__} has no encoder (encode_latent): codes of real images "
            "cannot be computed. For GANs, interpolate between prior draws (source=prior)."
        )
    if source == "prior" and not isinstance(model, HasPrior):
        raise GenlabError(
            f"{type(model).__name__} has no prior to draw codes from (sample_latent): "
            "interpolate between encoded images (source=data)."
        )
    return source


def interpolations(
    model: Any,
    modes: Sequence[str],
    *,
    source: str,
    data: Any = None,
    pairs: int,
    steps: int,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Interpolation grids per mode from `source` (see `interpolation_source`): between the
    codes of 2 * pairs images spread evenly over `data`, or between seeded prior draws."""
    if interpolation_source(model, source) == "data":
        images, labels = spread_batch(data, 2 * pairs)
        return encoded_interpolations(model, images, labels, modes, steps=steps)
    gen = torch.Generator(device=model.device).manual_seed(seed)
    return prior_interpolations(model, pairs, modes, steps=steps, generator=gen)


def write_interpolations(
    model: Any,
    out_dir: Path,
    *,
    data: Any = None,
    source: str = "auto",
    mode: str = "both",
    pairs: int = 8,
    steps: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Write interpolate_<mode>.png to `out_dir` for each mode; return a summary."""
    source = interpolation_source(model, source)
    grids = interpolations(
        model, modes_of(mode), source=source, data=data, pairs=pairs, steps=steps, seed=seed
    )
    files = {}
    for name, grid in grids.items():
        path = out_dir / f"interpolate_{name}.png"
        save_image(grid, path)
        files[name] = str(path)
    return {
        "op": "interpolate",
        "source": source,
        "pairs": min(pairs, len(data) // 2) if source == "data" else pairs,
        "steps": steps,
        "files": files,
    }


# --- codes of a dataset ----------------------------------------------------------------------
@torch.no_grad()
def encode_dataset(
    model: Any, data: Dataset, *, max_images: int | None, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, labels and codes of (an evenly spread subset of) a dataset."""
    if not isinstance(model, CanEncode):
        raise GenlabError(
            f"{type(model).__name__} has no encoder (encode_latent): codes of real images "
            "cannot be computed. For GANs, interpolate between prior draws (source=prior)."
        )
    xs, ys, zs = [], [], []
    for x, y in DataLoader(spread_subset(data, max_images), batch_size=batch_size):
        y = torch.as_tensor(y)
        zs.append(model.encode_latent(x.to(model.device), y.to(model.device)).cpu())
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys), torch.cat(zs)


# --- attribute vectors -----------------------------------------------------------------------
def attribute_vector(
    codes: torch.Tensor, has: torch.Tensor, n_exemplars: int | None = None
) -> torch.Tensor:
    """mean(codes with the attribute) - mean(codes without): (N, d), bool (N,) -> (d,).

    `n_exemplars` caps how many codes of each group are averaged (the DCGAN paper used 3).
    """
    has = has.bool()
    with_, without = codes[has], codes[~has]
    if len(with_) == 0 or len(without) == 0:
        raise GenlabError(
            f"attribute vector: {len(with_)} images have the attribute and {len(without)} do not; "
            "both groups need at least one image (raise max_images or pick another attribute)."
        )
    if n_exemplars is not None:
        with_, without = with_[:n_exemplars], without[:n_exemplars]
    return with_.mean(0) - without.mean(0)


def apply_attribute(
    codes: torch.Tensor, vector: torch.Tensor, scales: Sequence[float]
) -> torch.Tensor:
    """codes (N, d) + s * vector for each s in `scales`: (N, len(scales), d)."""
    s = torch.as_tensor(list(scales), dtype=codes.dtype, device=codes.device)
    return codes[:, None, :] + s[None, :, None] * vector


def attribute_mask(
    labels: torch.Tensor, attribute: str | int, names: Sequence[str] | None
) -> tuple[str, torch.Tensor]:
    """Which images have `attribute`: a class index (labels (N,)) or an attribute name/index of
    attribute vectors (labels (N, k), e.g. CelebA's 40). Returns (name, bool mask (N,))."""
    if labels.ndim == 1:
        try:
            c = int(attribute)
        except (TypeError, ValueError):
            raise GenlabError(
                f"attribute={attribute!r}: this data has class labels, so the attribute is a "
                "class index (e.g. attribute=7)."
            ) from None
        return f"class{c}", labels == c
    names = list(names or [])
    if isinstance(attribute, str) and attribute in names:
        idx = names.index(attribute)
    else:
        try:
            idx = int(attribute)
        except (TypeError, ValueError):
            shown = ", ".join(names) if names else f"0..{labels.shape[1] - 1}"
            raise GenlabError(
                f"attribute={attribute!r} is not an attribute of this data: use one of {shown}."
            ) from None
    return (names[idx] if idx < len(names) else f"attr{idx}"), labels[:, idx] > 0.5


@torch.no_grad()
def write_attribute_edit(
    model: Any,
    data: Any,
    out_dir: Path,
    *,
    attribute: str | int | None,
    names: Sequence[str] | None = None,
    source_class: int | None = None,
    n_exemplars: int | None = 100,
    n_inputs: int = 8,
    scales: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0),
    max_images: int | None = 2000,
) -> dict[str, Any]:
    """Attribute arithmetic: vector = mean code with `attribute` - mean code without (or of
    `source_class`), added at each of `scales` to the codes of `n_inputs` images without it.

    Writes attribute_<name>.png (a row per input: the input, then its edits) and
    attribute_<name>.pt (the vector) to `out_dir`; returns a summary.
    """
    if attribute is None:
        raise GenlabError(
            "op=attribute needs attribute=NAME (CelebA, e.g. Smiling) or a class index."
        )
    x, labels, codes = encode_dataset(model, data, max_images=max_images)
    name, has = attribute_mask(labels, attribute, names)
    without = ~has
    if source_class is not None:  # class labels: from one class towards another
        if labels.ndim != 1:
            raise GenlabError(
                "source_class applies to class labels; leave it null for attributes."
            )
        without = labels == int(source_class)
        name = f"{name}_from_class{int(source_class)}"
    keep = has | without
    vector = attribute_vector(codes[keep], has[keep], n_exemplars)
    inputs = torch.nonzero(without).flatten()
    inputs = inputs[evenly_spaced(len(inputs), n_inputs)]
    edited = apply_attribute(codes[inputs], vector, scales).to(model.device)  # (n, s, d)
    n, s, d = edited.shape
    y = labels[inputs].repeat_interleave(s, 0).to(model.device)
    images = model.decode(edited.reshape(n * s, d), y).float().clamp(0, 1).cpu()
    rows = torch.cat([x[inputs][:, None].to(images), images.view(n, s, *images.shape[1:])], 1)
    grid = make_grid(rows.flatten(0, 1), nrow=s + 1, padding=2, pad_value=1.0)
    path = out_dir / f"attribute_{name}.png"
    save_image(grid, path)
    torch.save(vector, out_dir / f"attribute_{name}.pt")
    return {
        "op": "attribute",
        "attribute": name,
        "n_with": int(has.sum()),
        "n_without": int(without.sum()),
        "n_exemplars": n_exemplars,
        "scales": list(scales),
        "vector_norm": float(vector.norm()),
        "file": str(path),
    }
