"""Run-directory bookkeeping shared by the entry points: instantiation, config files, summary."""

from __future__ import annotations

import json
import logging
import math
import os
import time
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


# --- summary.json -------------------------------------------------------------------------------
STATUSES = ("running", "completed", "failed", "diverged", "interrupted", "pruned")
HEARTBEAT_S = 30.0


def _host() -> str:
    import socket

    return socket.gethostname()


class RunRecord:
    """`RUN/summary.json`, the run's own account of itself, written atomically at every change.

    Its `status` is one of STATUSES. A live run refreshes `heartbeat` (every HEARTBEAT_S
    seconds of training at most) with its `global_step`, so a reader can tell a run that is
    still going from one that was killed without a word (`effective_status`). A resumed run
    keeps the earlier attempts under `attempts`. Only rank 0 writes (`enabled`).
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.path = run_dir / "summary.json"
        self.enabled = enabled
        self.data: dict[str, Any] = {}
        self._last_beat = 0.0

    def start(self, **fields: Any) -> None:
        """Begin an attempt: status running; earlier attempts of this directory are kept."""
        previous = read_summary(self.path.parent)
        attempts = list(previous.pop("attempts", []))
        if previous:
            attempts.append(
                {
                    k: previous.get(k)
                    for k in ("status", "error", "started", "ended", "global_step", "last_ckpt")
                    if previous.get(k) is not None
                }
            )
        now = time.time()
        self.data = {
            "status": "running",
            "run_dir": str(self.path.parent),
            "started": now,
            "heartbeat": now,
            "pid": os.getpid(),
            "host": _host(),
            **({"attempts": attempts} if attempts else {}),
            **{k: v for k, v in previous.items() if k == "wandb_id"},
            **fields,
        }
        self.write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.write()

    def heartbeat(self, **fields: Any) -> None:
        """Refresh the heartbeat (throttled to one write every HEARTBEAT_S seconds)."""
        now = time.time()
        if now - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = now
        self.update(heartbeat=now, **fields)

    def finish(self, status: str, **fields: Any) -> None:
        assert status in STATUSES, status
        if not self.data:
            self.data = {"run_dir": str(self.path.parent), "pid": os.getpid(), "host": _host()}
        self.data.pop("heartbeat", None)
        self.update(status=status, ended=time.time(), **fields)

    def write(self) -> None:
        if self.enabled and self.path.parent.is_dir():
            write_json(self.path, self.data)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run directory's summary.json as a dict ({} when there is none or it is unreadable)."""
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def effective_status(summary: dict[str, Any], *, stale_after_s: float = 20 * HEARTBEAT_S) -> str:
    """The status a run really has: a "running" run whose process is gone (same host) or whose
    heartbeat is older than `stale_after_s` was killed without a word: "interrupted"."""
    status = summary.get("status", "missing")
    if status != "running":
        return status
    if summary.get("host") == _host() and summary.get("pid"):
        try:
            os.kill(int(summary["pid"]), 0)
        except ProcessLookupError:
            return "interrupted"
        except (PermissionError, OSError, ValueError):
            pass
    beat = summary.get("heartbeat") or summary.get("started")
    if beat is not None and time.time() - float(beat) > stale_after_s:
        return "interrupted"
    return "running"
