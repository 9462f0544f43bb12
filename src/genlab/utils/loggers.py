"""Logger construction (W&B that never fails for lack of an account) and image logging."""

from __future__ import annotations

import csv
import logging
import netrc
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
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
    logger = StepWandbLogger(save_dir=save_dir, mode=mode, **kwargs)
    logger.genlab_offline = mode == "offline"  # type: ignore[attr-defined]
    return logger


class StepWandbLogger(WandbLogger):
    """A WandbLogger whose rows carry the trainer's step as W&B's own step (`_step`).

    Lightning's logs the trainer's step only as the `trainer/global_step` column and leaves
    `_step` to W&B's counter, which restarts at 0 in every offline segment: a resumed run's
    rows would then come before the earlier rows, and W&B's server drops rows whose step goes
    back. With `_step` = the trainer's step, a resumed run (same W&B id) continues from the
    checkpoint's step. Steps never go back within a process (a row logged at an earlier step
    than the last joins the last row).
    """

    _last_step = -1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Lightning 2.6 passes anonymous=None to wandb.init when it is not asked for, and W&B
        # 0.31 warns on every run that the setting has no effect; unset, W&B says nothing.
        # (Lightning's init arguments are private; tests/test_console.py sees the line return.)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    def continue_after(self, step: int) -> None:
        """A resumed run: the W&B run logged up to `step` (the checkpoint's step, where the
        earlier segment also wrote its last rows), so this segment's rows start after it."""
        self._last_step = max(self._last_step, step + 1)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if step is None or self._prefix or self._wandb_init.get("sync_tensorboard"):
            super().log_metrics(metrics, step)
            return
        step = max(int(step), self._last_step)
        self._last_step = step
        self.experiment.log(dict(metrics, **{"trainer/global_step": step}), step=step)


def wandb_offline_dirs(trainer: Trainer) -> list[str]:
    """The offline W&B run directories of this trainer's loggers (to print `wandb sync`)."""
    dirs = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and getattr(logger, "genlab_offline", False):
            run = logger.experiment
            if getattr(run, "dir", None):
                dirs.append(str(Path(run.dir).parent))
    return dirs


def to_uint8(grid: torch.Tensor) -> torch.Tensor:
    """A (C, H, W) float image in [0, 1] -> (H, W, C) uint8 0-255, rounded exactly as
    torchvision's save_image rounds, so every logger shows the pixels of the local PNG."""
    return (
        grid.detach()
        .float()
        .clamp(0, 1)
        .mul(255)
        .add_(0.5)
        .clamp_(0, 255)
        .to(torch.uint8)
        .permute(1, 2, 0)
        .cpu()
    )


def log_image(
    trainer: Trainer,
    key: str,
    grid: torch.Tensor,
    *,
    path: Path | None = None,
    caption: str | None = None,
) -> None:
    """Save an image grid (C, H, W) in [0, 1] as PNG at `path` and send the same pixels to
    every logger, with `caption` (default: the key, epoch and step)."""
    grid = grid.detach().float().clamp(0, 1).cpu()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
    step = trainer.global_step
    caption = caption or f"{key} (epoch {trainer.current_epoch}, step {step})"
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            # uint8: wandb >= 0.31 casts float arrays to uint8 without scaling (black images)
            pixels = to_uint8(grid).numpy()
            logger.log_image(key=key, images=[pixels], step=step, caption=[caption])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, to_uint8(grid), global_step=step, dataformats="HWC")
            logger.experiment.add_text(f"{key}/caption", caption, global_step=step)


class CSVLogger(Logger):
    """Every logged metric as a row of `save_dir/name/metrics.csv` (columns `step`, `epoch`
    and one per metric, sorted; the format of Lightning's CSVLogger), the run's
    hyperparameters as `hparams.yaml` next to it.

    Rows are kept in memory and written every `flush_every_n_rows` rows or `flush_every_s`
    seconds (whichever comes first; null: no time limit), when a checkpoint is taken
    (`checkpoint_mark`, called by LastCheckpoint, and once more after the rows that step
    logs), and when the run ends, fails or is interrupted (`finalize`). Lightning calls
    `save()` after every row it logs; that writes only what is due, so the interval holds.

    Unlike Lightning's, it never deletes an existing metrics.csv: a resumed run appends its
    rows to the history of the part before (new metric names widen the header), after
    dropping the rows that were written after its checkpoint was taken (`continue_from`).
    """

    def __init__(
        self,
        save_dir: str,
        name: str = "csv",
        version: str = "",
        flush_every_n_rows: int = 100,
        flush_every_s: float | None = 60.0,
    ) -> None:
        super().__init__()
        self._save_dir, self._name, self._version = str(save_dir), name, str(version)
        self.flush_every_n_rows = max(int(flush_every_n_rows), 1)
        self.flush_every_s = flush_every_s
        self.rows: list[dict[str, Any]] = []
        self._file_rows: int | None = None  # data rows in metrics.csv (read when first needed)
        self._last_flush = time.monotonic()
        self._flush_soon = False  # a checkpoint was taken: write at the next save()

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def log_dir(self) -> str:
        return str(Path(self._save_dir, self._name, self._version))

    @property
    def metrics_file(self) -> Path:
        return Path(self.log_dir) / "metrics.csv"

    @property
    def experiment(self) -> CSVLogger:
        return self

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        params = dict(params) if isinstance(params, Mapping) else vars(params)
        with open(Path(self.log_dir) / "hparams.yaml", "w") as f:
            yaml.safe_dump(params, f, sort_keys=False)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        row = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
        row["step"] = step
        self.rows.append(row)
        if self._due():
            self.flush()

    def _due(self) -> bool:
        if len(self.rows) >= self.flush_every_n_rows:
            return True
        limit = self.flush_every_s
        return limit is not None and time.monotonic() - self._last_flush >= limit

    @rank_zero_only
    def save(self) -> None:
        # Lightning's call after every row it logs: write only what is due
        if self.rows and (self._flush_soon or self._due()):
            self.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.flush()

    @rank_zero_only
    def checkpoint_mark(self) -> dict[str, Any]:
        """At a checkpoint: write the rows so far, and say how many the file holds then
        (with the file's path), for `continue_from` when a run resumes from it. The step's
        own rows, logged after its checkpoint, are written at the next `save()`."""
        self.flush()
        self._flush_soon = True
        return {"file": str(self.metrics_file.resolve()), "rows": self._count_file_rows()}

    @rank_zero_only
    def continue_from(self, mark: Mapping[str, Any], step: int) -> None:
        """A run resuming from a checkpoint taken at `step` whose `checkpoint_mark` was
        `mark`: drop the rows of this file that the run wrote after that checkpoint, so the
        continuation does not log them twice (a run killed without warning may have written
        rows after its last checkpoint). Kept: the first `mark["rows"]` rows, and later rows
        of steps before `step` (those the checkpoint's step logged after it was taken). Another
        file (a new run started from the checkpoint) is left alone."""
        path = self.metrics_file
        if str(mark.get("file")) != str(path.resolve()) or not path.is_file():
            return
        keep = int(mark.get("rows", 0))
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = list(reader)
        tail = [r for r in rows[keep:] if r.get("step") and int(float(r["step"])) < step]
        if len(rows) <= keep or len(tail) == len(rows) - keep:
            return
        log.info(
            "%s: %d rows written after the checkpoint of step %d are dropped (the run "
            "continues from that step)",
            path,
            len(rows) - keep - len(tail),
            step,
        )
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows[:keep] + tail)
        tmp.replace(path)
        self._file_rows = keep + len(tail)

    def _count_file_rows(self) -> int:
        if self._file_rows is None:
            path = self.metrics_file
            if path.is_file() and path.stat().st_size:
                with open(path, newline="") as f:
                    self._file_rows = sum(1 for _ in csv.DictReader(f))
            else:
                self._file_rows = 0
        return self._file_rows

    @rank_zero_only
    def flush(self) -> None:
        """Write the rows kept in memory to metrics.csv (appended; the file is rewritten
        when new metric names widen its header)."""
        self._last_flush, self._flush_soon = time.monotonic(), False
        if not self.rows:
            return
        path = self.metrics_file
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = self._count_file_rows()
        old_rows: list[dict[str, Any]] = []
        header: list[str] = []
        if path.is_file() and path.stat().st_size:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                keys = set(header)
                if any(set(r) - keys for r in self.rows):
                    old_rows = list(reader)  # the header widens: rewrite the file
        columns = sorted(set(header).union(*self.rows))
        if header and columns == header:
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=columns).writerows(self.rows)
        else:
            tmp = path.with_suffix(".csv.tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(old_rows)
                writer.writerows(self.rows)
            tmp.replace(path)
        self._file_rows = stored + len(self.rows)
        self.rows = []
