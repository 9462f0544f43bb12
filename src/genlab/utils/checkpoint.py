"""Checkpoints: loaded safely (`weights_only`), checked against a model, and turned back into
the model that wrote them (`load_model`, used by every entry point that reads one); and the
device those entry points run on (`pick_device`)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from genlab.utils.errors import GenlabError
from genlab.utils.resolvers import run_dir_of

CONFIG_KEY = "genlab_config"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint with `weights_only=True`; a clear error if it is unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenlabError(
            f"ckpt_path={str(path)!r} does not exist. Pass the path of a .ckpt file, e.g. "
            "logs/train/runs/<run>/checkpoints/last.ckpt."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise GenlabError(
            f"ckpt_path={str(path)!r} could not be read as a checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). It may be truncated or not a "
            "genlab/Lightning checkpoint; use last.ckpt or a best-*.ckpt of a finished run."
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise GenlabError(
            f"ckpt_path={str(path)!r} holds no 'state_dict': not a Lightning checkpoint."
        )
    return ckpt


def check_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path
) -> None:
    """Raise a GenlabError naming the differences if `state_dict` does not fit `model`."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append(
            "shape mismatches: " + "; ".join(shapes[:5]) + (" ..." if len(shapes) > 5 else "")
        )
    if missing:
        parts.append(
            f"missing in checkpoint: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )
    if unexpected:
        parts.append(
            f"not in the model: {', '.join(unexpected[:5])}"
            + (" ..." if len(unexpected) > 5 else "")
        )
    raise GenlabError(
        f"checkpoint {str(path)!r} does not match the model built from the config ("
        + "; ".join(parts)
        + "). Use the same model/data options as the run that wrote it (its config.yaml), "
        "or start a new run without ckpt_path."
    )


def run_config(ckpt: dict[str, Any], ckpt_path: str | Path) -> DictConfig:
    """The training config of a checkpoint: stored inside it, else RUN/config.yaml."""
    if CONFIG_KEY in ckpt:
        return OmegaConf.create(ckpt[CONFIG_KEY])
    config_file = Path(run_dir_of(str(ckpt_path))) / "config.yaml"
    if config_file.is_file():
        return OmegaConf.load(config_file)  # type: ignore[return-value]
    raise GenlabError(
        f"checkpoint {str(ckpt_path)!r} holds no genlab config and there is no {config_file}: "
        "it was not written by genlab.train. Use a checkpoint from a genlab run directory."
    )


def load_model(ckpt_path: str | Path) -> tuple[L.LightningModule, DictConfig]:
    """Rebuild the model of a checkpoint with its weights, in eval mode, on the CPU; returns
    (model, training config)."""
    ckpt = load_checkpoint(ckpt_path)
    cfg = run_config(ckpt, ckpt_path)
    model: L.LightningModule = instantiate(cfg.model)
    check_state_dict(model, ckpt["state_dict"], ckpt_path)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, cfg


def pick_device(name: str) -> str:
    """`auto` (a GPU when there is one, else the CPU), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise GenlabError(f"device={name!r}: use auto, cpu or cuda.")
    return name


def data_config(run_cfg: DictConfig, data: Any = None, **overrides: Any) -> dict[str, Any]:
    """The config of the data to rebuild a run's data with, for `instantiate`: the run's own,
    or `data` (another data option, e.g. `data=fashion_mnist` given to an evaluation), resolved
    against the run's config, whose `paths` and `perf` switches the data configs refer to;
    `overrides` (image size, channels, ...) on top."""
    full = OmegaConf.create(OmegaConf.to_container(run_cfg, resolve=False))
    if data is not None:
        raw = OmegaConf.to_container(data, resolve=False) if OmegaConf.is_config(data) else data
        full.data = OmegaConf.create(raw)
    if overrides:
        full.data.merge_with(overrides)
    return OmegaConf.to_container(full.data, resolve=True)  # type: ignore[return-value]
