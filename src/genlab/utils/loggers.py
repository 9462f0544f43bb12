"""Logger construction (W&B that never fails for lack of an account) and image logging."""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import save_image

log = logging.getLogger(__name__)


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""


def wandb_credentials_available() -> bool:
    """True when an API key is in the environment or in ~/.netrc (where `wandb login` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(_wandb_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_reachable(timeout_s: float = 3.0) -> bool:
    """True when the W&B server accepts a TCP connection within `timeout_s`."""
    try:
        with socket.create_connection((_wandb_host(), 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_wandb_mode(mode: str) -> str:
    """`auto` becomes `online` with credentials and network, else `offline`."""
    mode = os.environ.get("WANDB_MODE", mode)
    if mode not in {"auto", "online", "offline", "disabled"}:
        from genlab.utils.errors import GenlabError

        raise GenlabError(
            f"logger.wandb.mode={mode!r} is not a W&B mode: use auto, online, offline or disabled."
        )
    if mode != "auto":
        return mode
    if wandb_credentials_available() and wandb_reachable():
        return "online"
    return "offline"


def wandb_logger(*, mode: str = "auto", save_dir: str, **kwargs: Any) -> WandbLogger:
    """A WandbLogger that runs offline when there is no account or no network.

    Offline runs are written under `save_dir/wandb/` and can be uploaded later with
    `wandb sync DIR`; the path is printed at the end of training.
    """
    mode = resolve_wandb_mode(mode)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    if mode == "offline":
        log.info("W&B: no credentials or no network; logging offline under %s/wandb", save_dir)
    # `mode` goes straight to wandb.init; Lightning's own `offline=True` would set WANDB_MODE
    # for the whole process, leaking into later runs in the same interpreter.
    logger = WandbLogger(save_dir=save_dir, mode=mode, **kwargs)
    logger.genlab_offline = mode == "offline"  # type: ignore[attr-defined]
    return logger


def wandb_offline_dirs(trainer: Trainer) -> list[str]:
    """The offline W&B run directories of this trainer's loggers (to print `wandb sync`)."""
    dirs = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and getattr(logger, "genlab_offline", False):
            run = logger.experiment
            if getattr(run, "dir", None):
                dirs.append(str(Path(run.dir).parent))
    return dirs


def log_image(trainer: Trainer, key: str, grid: torch.Tensor, *, path: Path | None = None) -> None:
    """Save an image grid (C, H, W) in [0, 1] as PNG at `path` and send it to every logger."""
    grid = grid.detach().float().clamp(0, 1).cpu()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
    step = trainer.global_step
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[grid], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, global_step=step)
