"""Run-directory bookkeeping shared by the entry points: instantiation, config files, summary."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from genlab.utils.checkpoint import CONFIG_KEY

log = logging.getLogger(__name__)


def launch_rank() -> int:
    """This process's global rank from the launcher's environment (0 when not distributed).

    Read before the Trainer exists, so rank 0 alone can prepare data and write files.
    """
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a config group such as `callbacks` or `logger`."""
    if not group:
        return []
    return [
        instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c
    ]


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The config as nested plain dicts with every interpolation resolved."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    """Write the composed, resolved config as `run_dir/config.yaml`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(to_plain(cfg)), run_dir / "config.yaml")


def print_config(cfg: DictConfig, run_dir: Path | None = None) -> None:
    """Print the config as a rich tree (and save the printout as `config_tree.log`)."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="bold")
    for key, value in cfg.items():
        branch = tree.add(str(key), style="bold")
        text = (
            OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        )
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if run_dir is not None:
        with open(run_dir / "config_tree.log", "w") as f:
            rich.print(tree, file=f)


class StoreConfig(L.Callback):
    """Puts the resolved run config into every checkpoint, so a checkpoint alone rebuilds its
    model and data (`python -m genlab.eval ckpt_path=...`). Plain dicts keep the checkpoint
    loadable with `weights_only=True`."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Tensors and numbers -> floats (NaN kept as None for JSON)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (int, float)):
            out[k] = None if math.isnan(float(v)) else float(v)
    return out


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file, then rename): a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
