"""Latent-space manipulation for any model with a latent space: interpolation strips (linear
and spherical) and attribute vectors (DCGAN-style arithmetic, averaged over exemplars).

Library: the functions take codes and a `decode(z, y=None)` model, so they work for encoders
(VAE, AE: codes from `encode_latent`) and for GANs (codes = prior draws z).
CLI: `python -m genlab.latent ckpt_path=PATH op=interpolate|attribute ...` (conf/latent.yaml),
writing PNG grids to RUN/latent/<time>/.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.utils import make_grid, save_image

import genlab.utils.resolvers  # noqa: F401
from genlab.models.protocols import CanEncode
from genlab.utils.errors import GenlabError, exit_on_user_error
from genlab.utils.run import write_json

log = logging.getLogger("genlab.latent")
MODES = ("linear", "spherical")


# --- interpolation ---------------------------------------------------------------------------
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
    if mode not in MODES:
        raise GenlabError(f"mode={mode!r} is not an interpolation: use one of {MODES} (or both).")
    return lerp(z0, z1, steps) if mode == "linear" else slerp(z0, z1, steps)


def _decode(model: Any, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return model.decode(z, y) if y is not None else model.decode(z)


@torch.no_grad()
def interpolation_strips(
    model: Any,
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
        images = _decode(model, zs, yi).float().clamp(0, 1)
        if ends is not None:
            images = torch.cat(
                [ends[0][i : i + 1].to(images), images, ends[1][i : i + 1].to(images)]
            )
        rows.append(images)
    width = len(rows[0])
    return make_grid(torch.cat(rows).cpu(), nrow=width, padding=2, pad_value=1.0)


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


# --- data helpers ----------------------------------------------------------------------------
def encode_dataset(
    model: Any, data: Dataset, *, max_images: int | None, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, labels and codes of (an evenly spread subset of) a dataset."""
    if not isinstance(model, CanEncode):
        raise GenlabError(
            f"{type(model).__name__} has no encoder (encode_latent): codes of real images "
            "cannot be computed. For GANs, interpolate between prior draws (source=prior)."
        )
    if max_images is not None and max_images < len(data):  # type: ignore[arg-type]
        data = Subset(data, torch.linspace(0, len(data) - 1, max_images).long().tolist())  # type: ignore[arg-type]
    xs, ys, zs = [], [], []
    with torch.no_grad():
        for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
            yy = y.to(model.device) if getattr(model, "conditional", False) else None
            zs.append(model.encode_latent(x.to(model.device), yy).cpu())
            xs.append(x)
            ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys), torch.cat(zs)


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


# --- CLI ------------------------------------------------------------------------------------
def _modes(mode: str) -> list[str]:
    return list(MODES) if mode == "both" else [mode]


def run_interpolate(model: Any, datamodule: Any, cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    source = cfg.source
    if source == "auto":
        source = "data" if isinstance(model, CanEncode) else "prior"
    gen = torch.Generator(device=model.device).manual_seed(cfg.seed)
    y = ends = None
    if source == "data":
        data = datamodule.dataset(cfg.split)
        x, labels, codes = encode_dataset(model, data, max_images=2 * cfg.pairs)
        half = len(codes) // 2
        if half < 1:
            raise GenlabError(
                f"split {cfg.split!r} has fewer than 2 images to interpolate between."
            )
        z0, z1 = codes[:half].to(model.device), codes[half : 2 * half].to(model.device)
        ends = (x[:half], x[half : 2 * half])
        if getattr(model, "conditional", False):
            y = labels[:half].to(model.device)
    elif source == "prior":
        z0 = model.sample_latent(cfg.pairs, generator=gen)
        z1 = model.sample_latent(cfg.pairs, generator=gen)
    else:
        raise GenlabError(f"source={source!r}: use auto, data or prior.")
    files = {}
    for mode in _modes(cfg.mode):
        grid = interpolation_strips(model, z0, z1, steps=cfg.steps, mode=mode, y=y, ends=ends)
        path = out_dir / f"interpolate_{mode}.png"
        save_image(grid, path)
        files[mode] = str(path)
    return {
        "op": "interpolate",
        "source": source,
        "pairs": len(z0),
        "steps": cfg.steps,
        "files": files,
    }


def run_attribute(model: Any, datamodule: Any, cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    if cfg.attribute is None:
        raise GenlabError(
            "op=attribute needs attribute=NAME (CelebA, e.g. Smiling) or a class index."
        )
    x, labels, codes = encode_dataset(
        model, datamodule.dataset(cfg.split), max_images=cfg.max_images
    )
    name, has = attribute_mask(labels, cfg.attribute, getattr(datamodule, "attr_names", None))
    without = ~has
    if cfg.source_class is not None:  # class labels: from one class towards another
        if labels.ndim != 1:
            raise GenlabError(
                "source_class applies to class labels; leave it null for attributes."
            )
        without = labels == int(cfg.source_class)
        name = f"{name}_from_class{int(cfg.source_class)}"
    keep = has | without
    vector = attribute_vector(codes[keep], has[keep], cfg.n_exemplars)
    inputs = torch.nonzero(without).flatten()
    inputs = inputs[torch.linspace(0, len(inputs) - 1, min(cfg.n_inputs, len(inputs))).long()]
    edited = apply_attribute(codes[inputs], vector, cfg.scales).to(model.device)  # (n, s, d)
    n, s, d = edited.shape
    y = (
        labels[inputs].repeat_interleave(s, 0).to(model.device)
        if getattr(model, "conditional", False)
        else None
    )
    with torch.no_grad():
        images = _decode(model, edited.reshape(n * s, d), y).float().clamp(0, 1).cpu()
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
        "n_exemplars": cfg.n_exemplars,
        "scales": list(cfg.scales),
        "vector_norm": float(vector.norm()),
        "file": str(path),
    }


@hydra.main(version_base="1.3", config_path="conf", config_name="latent")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from genlab.eval import load_model
    from genlab.sample import pick_device

    torch.manual_seed(cfg.seed)
    model, run_cfg = load_model(cfg.ckpt_path)
    model = model.to(pick_device(cfg.device))
    datamodule = instantiate(cfg.data if cfg.get("data") else run_cfg.data)
    if cfg.op in ("attribute",) or cfg.source in ("auto", "data"):
        datamodule.prepare_data()
        datamodule.setup("test")
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.op == "interpolate":
        result = run_interpolate(model, datamodule, cfg, out_dir)
    elif cfg.op == "attribute":
        result = run_attribute(model, datamodule, cfg, out_dir)
    else:
        raise GenlabError(f"op={cfg.op!r}: use interpolate or attribute.")
    write_json(out_dir / "latent.json", result)
    log.info("latent %s written to %s", cfg.op, out_dir)


if __name__ == "__main__":
    main()
