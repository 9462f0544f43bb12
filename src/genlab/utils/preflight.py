"""What genlab.train checks before it builds anything: option values, the accelerator, the
data, the checkpoint — every problem found is reported together, in one message — and how
many CPU threads torch may use."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from genlab.utils.errors import GenlabError, find_user_error

log = logging.getLogger(__name__)


# --- option values --------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _count(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        n = _int(value)
        if n is None or n < minimum:
            return f"must be a whole number >= {minimum}"
        return None

    return check


def _batches(value: Any) -> str | None:
    """limit_*_batches, val_check_interval: a fraction in [0, 1] or a number of batches."""
    if isinstance(value, bool):
        return "must be a fraction in [0, 1] or a whole number of batches"
    if isinstance(value, int) and value >= 0:
        return None
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return None
    return "must be a fraction in [0, 1] or a whole number of batches >= 0"


def _positive(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return "must be a number > 0"
    if not math.isfinite(value):
        return "must be finite"
    return None


# key -> check; a key absent from the config (or null where null is Lightning's default) is
# not checked
OPTION_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "trainer.max_epochs": _count(-1),
    "trainer.min_epochs": _count(0),
    "trainer.max_steps": _count(-1),
    "trainer.check_val_every_n_epoch": _count(1),
    "trainer.log_every_n_steps": _count(0),
    "trainer.accumulate_grad_batches": _count(1),
    "trainer.num_nodes": _count(1),
    "trainer.num_sanity_val_steps": _count(-1),
    "trainer.limit_train_batches": _batches,
    "trainer.limit_val_batches": _batches,
    "trainer.limit_test_batches": _batches,
    "trainer.val_check_interval": _batches,
    "trainer.gradient_clip_val": _positive,
    "data.batch_size": _count(1),
    "data.eval_batch_size": _count(1),
    "data.num_workers": _count(0),
    "data.image_size": _count(4),
    "model.latent_dim": _count(1),
    "model.optimizer.lr": _positive,
    "model.optimizer_g.lr": _positive,
    "model.optimizer_d.lr": _positive,
    "seed": _count(0),
    "perf.steps_per_batch": _count(1),
}


def option_problems(cfg: DictConfig) -> list[str]:
    """One line per option whose value cannot work (wrong type or range), naming the key."""
    problems = []
    for key, check in OPTION_CHECKS.items():
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            problems.append(f"{key}: {type(exc).__name__}: {exc}".split("\n")[0])
            continue
        if value is None:
            continue
        why = check(value)
        if why:
            problems.append(f"{key}={value!r} {why}.")
    return problems


# --- the accelerator ------------------------------------------------------------------------
def accelerator_problems(trainer: DictConfig) -> list[str]:
    """The accelerator and device count the trainer asks for, against what torch sees."""
    accelerator = str(trainer.get("accelerator", "auto"))
    devices = trainer.get("devices", 1)
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            built = torch.version.cuda or "none (a CPU-only build)"
            return [
                f"trainer.accelerator={accelerator} (trainer=gpu/ddp), but torch sees no CUDA "
                f"GPU (torch {torch.__version__}, CUDA {built}). Use trainer=cpu here, or run "
                "where a GPU and a CUDA build of torch are installed."
            ]
        n = _int(devices)
        if n is not None and n > torch.cuda.device_count():
            return [
                f"trainer.devices={n} but only {torch.cuda.device_count()} CUDA GPU(s) are "
                "visible. Lower trainer.devices (or -1 for all)."
            ]
    if accelerator == "mps" and not torch.backends.mps.is_available():
        return [
            "trainer.accelerator=mps (trainer=mps), but the Apple MPS backend is not available "
            "here. Use trainer=cpu."
        ]
    return []


def collect(problems: list[str], check: Callable[[], Any]) -> Any:
    """Run `check`; a GenlabError (also inside Hydra's instantiate errors) or a missing config
    value becomes one more line of `problems` instead of stopping the other checks."""
    try:
        return check()
    except OmegaConfBaseException as exc:
        problems.append(str(exc).split("\n")[0] + " (a required option has no value).")
    except Exception as exc:
        err = find_user_error(exc)
        if err is None:
            raise
        problems.append(str(err))
    return None


def raise_problems(problems: list[str]) -> None:
    """One GenlabError listing every problem (numbered when there are several)."""
    if not problems:
        return
    if len(problems) == 1:
        raise GenlabError(problems[0])
    listed = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
    raise GenlabError(f"{len(problems)} problems were found before training started:\n{listed}")


# --- threads --------------------------------------------------------------------------------
def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (cgroup v2 `cpu.max` or v1
    `cpu.cfs_quota_us`), None when unlimited or unknown. Containers and SLURM jobs set it."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, SLURM's cpuset), capped by
    the cgroup CPU quota (docker --cpus, SLURM's cgroup). torch reads neither quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def choose_threads(
    setting: Any, processes_per_node: int = 1, *, load: float | None = None
) -> tuple[int, str]:
    """(intra-op thread count, why). `setting` is `auto` or a number; auto honours an explicit
    OMP_NUM_THREADS, else shares the usable CPUs between this node's training processes, and
    takes one thread when `load` (the load average, see `busy_cpus`) says other work already
    keeps those CPUs busy: each step waits for its slowest thread, and a thread that loses its
    CPU holds the step up (docs/performance.md#cpu-threads)."""
    if setting not in (None, "auto"):
        n = _int(setting)
        if n is None or n < 1:
            raise GenlabError(f"threads={setting!r}: use auto or a whole number >= 1.")
        return n, "threads option"
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    cpus = usable_cpus()
    n = max(1, cpus // max(1, processes_per_node))
    if n > 1 and load is not None and load >= cpus:
        return 1, (
            f"the machine is busy: load average {load:.1f} on {cpus} usable CPU(s), where "
            f"{n} threads would wait for one another; threads={n} to use them anyway"
        )
    return n, f"{cpus} usable CPU(s) / {processes_per_node} process(es)"


def busy_cpus() -> float | None:
    """The 1-minute load average when this process's first run started, if this machine has
    no more CPUs than this process may use (then it measures the competition for them); None
    on larger hosts, where the load of other containers or jobs says nothing about ours, or
    where it is unknown. Read once per process, so that the jobs of a sweep that runs in one
    process do not count its own earlier jobs as other work."""
    global _LOAD_AT_START
    if _LOAD_AT_START is _UNREAD:
        try:
            load: float | None = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = None
        _LOAD_AT_START = load if (os.cpu_count() or 0) <= usable_cpus() else None
    return _LOAD_AT_START  # type: ignore[return-value]


_UNREAD = object()
_LOAD_AT_START: object = _UNREAD
