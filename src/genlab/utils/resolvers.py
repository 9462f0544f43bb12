"""OmegaConf resolvers used by the config tree (`${genlab.*:...}`)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def run_dir_of(ckpt_path: str) -> str:
    """The training run directory that holds a checkpoint (`RUN/checkpoints/x.ckpt` -> `RUN`)."""
    path = Path(ckpt_path).expanduser().resolve()
    parent = path.parent
    return str(parent.parent if parent.name == "checkpoints" else parent)


def register() -> None:
    """Register genlab's resolvers once (safe to call again)."""
    if not OmegaConf.has_resolver("genlab.pid"):
        # The process id makes run directories unique for runs started in the same second.
        OmegaConf.register_new_resolver("genlab.pid", lambda: str(os.getpid()))
    if not OmegaConf.has_resolver("genlab.run_dir"):
        OmegaConf.register_new_resolver("genlab.run_dir", run_dir_of)
    if not OmegaConf.has_resolver("genlab.mul"):
        OmegaConf.register_new_resolver("genlab.mul", lambda a, b: a * b)


register()
