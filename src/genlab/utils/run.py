"""Run-directory bookkeeping shared by the entry points: instantiation, config files, summary,
locks. Light to import (no torch, no Lightning at module level): genlab.compare and every
tool's --help start without them."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

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
    from hydra.utils import instantiate

    if not group:
        return []
    return [
        instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c
    ]


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The config as nested plain dicts with every interpolation resolved."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    """Write the composed, resolved config as `run_dir/config.yaml` (atomically)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(to_plain(cfg))))


def print_config(cfg: DictConfig, run_dir: Path | None = None, *, echo: bool = True) -> None:
    """Print the config as a rich tree (and save the printout as `config_tree.log`); with
    `echo=False` (a job of a sweep, whose config the user gave once) only the file and a
    debug-level log line."""
    import io

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
    if echo:
        rich.print(tree)
    if run_dir is not None or not echo:
        printed = io.StringIO()
        rich.print(tree, file=printed)
        if run_dir is not None:
            write_text_atomic(run_dir / "config_tree.log", printed.getvalue())
        if not echo:
            log.debug("config:\n%s", printed.getvalue())


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Tensors and numbers -> floats (NaN kept as None for JSON)."""
    import torch

    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (int, float)):
            out[k] = None if math.isnan(float(v)) else float(v)
    return out


def write_text_atomic(path: Path, text: str) -> None:
    """Write `path` atomically (a temp file beside it, then rename): a reader never sees half a
    file, a failed write (a full disk) leaves the previous file and no temp file behind, and
    nothing is written through a symbolic link (the temp file is created anew, never followed;
    the rename replaces a link at `path` rather than writing where it points)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileExistsError:  # left by a killed process of the same pid, or planted
        tmp.unlink()
        fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


# --- summary.json -------------------------------------------------------------------------------
STATUSES = ("running", "completed", "failed", "diverged", "interrupted", "pruned")
HEARTBEAT_S = 30.0


def pid_alive(pid: Any) -> bool:
    """Whether process `pid` of this host still runs (a zombie, dead but not yet reaped by its
    parent, counts as gone)."""
    try:
        pid = int(pid)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, TypeError, OverflowError):
        return True  # another user's process, or an unreadable pid: not known to be gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


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
                    for k in (
                        "status",
                        "error",
                        "started",
                        "ended",
                        "global_step",
                        "last_ckpt",
                        "overrides",
                    )
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
        if not (self.enabled and self.path.parent.is_dir()):
            return
        try:
            write_json(self.path, self.data)
        except OSError as exc:
            # a full or read-only disk: the error that stops the run says so; the summary keeps
            # its last complete state and no temp file, and a reader sees the process gone
            # (`effective_status`)
            log.error("could not write %s (%s)", self.path, exc.strerror or exc)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run directory's summary.json as a dict ({} when there is none or it cannot be read:
    too large, not JSON, not an object, nested too deep; a warning names the file)."""
    from genlab.utils.errors import GenlabError
    from genlab.utils.untrusted import read_json_object

    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return {}
    try:
        return read_json_object(path, what="summary")
    except GenlabError as exc:
        log.warning("%s", exc)
        return {}


class RunLock:
    """One writer per directory: `DIR/.genlab.lock` holds the pid, host and start time of the
    process writing there, taken before it writes anything. A second live process is refused
    with the first one's pid; the lock of a process that is gone (same host, dead pid; or,
    from another host, a lock older than `stale_after_s` with no fresh heartbeat) is taken
    over with a warning. Released when the process is done with the directory."""

    NAME = ".genlab.lock"

    def __init__(self, folder: Path, *, what: str = "run directory") -> None:
        self.path = Path(folder) / self.NAME
        self.what = what
        self.held = False

    def _holder(self) -> dict[str, Any]:
        from genlab.utils.errors import GenlabError
        from genlab.utils.untrusted import read_json_object

        try:
            return read_json_object(self.path, what="lock file", max_bytes=4096)
        except GenlabError:
            return {}

    def _alive(self, holder: dict[str, Any], stale_after_s: float) -> bool:
        if holder.get("host") == _host():
            return pid_alive(holder.get("pid", -1))
        try:  # another host: alive while the lock or the run's heartbeat is fresh
            fresh = time.time() - self.path.stat().st_mtime < stale_after_s
        except OSError:
            return False
        summary = read_summary(self.path.parent)
        beat = summary.get("heartbeat")
        beat = float(beat) if isinstance(beat, (int, float)) else None
        return fresh or (beat is not None and time.time() - beat < stale_after_s)

    def acquire(self, stale_after_s: float = 20 * HEARTBEAT_S) -> None:
        from genlab.utils.errors import GenlabError
        from genlab.utils.resolvers import unwritable

        me = {"pid": os.getpid(), "host": _host(), "started": time.time()}
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        for _ in range(3):
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileExistsError:
                holder = self._holder()
                if self._alive(holder, stale_after_s) and holder.get("pid") != os.getpid():
                    since = holder.get("started")
                    when = (
                        time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since))
                        if isinstance(since, (int, float))
                        else ""
                    )
                    raise GenlabError(
                        f"the {self.what} {self.path.parent} is in use by genlab process "
                        f"{holder.get('pid', '?')} on {holder.get('host', '?')}{when} "
                        f"({self.path}). Two runs writing one directory would mix their "
                        "records: wait for it to end, or choose another directory. If that "
                        "process is gone, remove the lock file."
                    ) from None
                log.warning(
                    "%s %s: taking over the lock of process %s on %s, which is gone",
                    self.what,
                    self.path.parent,
                    holder.get("pid", "?"),
                    holder.get("host", "?"),
                )
                self.path.unlink(missing_ok=True)
                continue
            except OSError as exc:
                raise GenlabError(unwritable(self.path.parent, exc.strerror or str(exc))) from exc
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise GenlabError(f"could not take the lock {self.path}: another process keeps taking it.")

    def touch(self) -> None:
        """Refresh the lock's time (a live holder on another host stays live)."""
        if self.held:
            with suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self.held and self._holder().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


@contextmanager
def output_folder(cfg: DictConfig, what: str) -> Iterator[Path]:
    """The output folder of an entry point that reads a run (eval, sample, latent,
    translate): the user's `trusted_targets` applied, one writer (`RunLock`), and on failure
    nothing left behind but what holds results (a folder with only Hydra's own record and
    log is removed)."""
    from genlab.utils.untrusted import trust

    trust(cfg.get("trusted_targets"))
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out, what=what)
    try:
        lock.acquire()
        yield out
    except BaseException:
        lock.release()
        remove_if_unused(out)
        raise
    lock.release()


def remove_if_unused(folder: Path) -> None:
    """Remove `folder` (and its parent, when that is left empty) if it holds nothing but
    Hydra's record (.hydra/) and log files: a refused command leaves no output folder."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    if any(e.name != ".hydra" and e.suffix != ".log" for e in entries):
        return
    logging.shutdown()  # close the command's log file before removing it
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    with suppress(OSError):
        folder.parent.rmdir()  # e.g. RUN/eval/ made for this command alone


def effective_status(summary: dict[str, Any], *, stale_after_s: float = 20 * HEARTBEAT_S) -> str:
    """The status a run really has: a "running" run whose process is gone (same host) or whose
    heartbeat is older than `stale_after_s` was killed without a word: "interrupted"."""
    status = summary.get("status", "missing")
    if status != "running":
        return status
    if summary.get("host") == _host() and summary.get("pid") and not pid_alive(summary["pid"]):
        return "interrupted"
    beat = summary.get("heartbeat") or summary.get("started")
    if isinstance(beat, (int, float)) and time.time() - float(beat) > stale_after_s:
        return "interrupted"
    return "running"
