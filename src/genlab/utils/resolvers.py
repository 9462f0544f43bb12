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


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_group() -> str | None:
    """The W&B group of a job: its sweep directory's name in a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().sweep.dir).name if _multirun() else None


def job_name() -> str | None:
    """A job's run name from its overrides in a multirun (`model=vae,seed=2`), else None."""
    from hydra.core.hydra_config import HydraConfig

    return (HydraConfig.get().job.override_dirname or None) if _multirun() else None


def resume_dir(resume: str | None, runs_dir: str, fresh_name: str) -> str:
    """The run directory: `runs_dir/fresh_name` for a new run; for `resume=auto` the latest
    run in `runs_dir` that has checkpoints/last.ckpt (a new one if there is none); for
    `resume=PATH` that run directory."""
    if resume in (None, "", "null"):
        return str(Path(runs_dir) / fresh_name)
    if resume == "auto":
        runs = sorted(
            Path(runs_dir).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime
        )
        return str(runs[-1].parent.parent) if runs else str(Path(runs_dir) / fresh_name)
    path = Path(resume).expanduser().resolve()
    if not (path / "checkpoints" / "last.ckpt").is_file():
        raise ValueError(
            f"resume={resume!r}: {path}/checkpoints/last.ckpt does not exist. Pass a run "
            "directory of genlab.train (logs/train/runs/<run>) or resume=auto."
        )
    return str(path)


def sqlite_url(path: str) -> str:
    """`sqlite:///PATH` for an SQLite file, creating its folder (the sweep directory does not
    exist yet when the Optuna sweeper opens its storage)."""
    file = Path(path).expanduser().resolve()
    file.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{file}"


def devices_per_node(devices: object) -> int:
    """SLURM tasks/GPUs per node for a Trainer `devices` value (an int, a list of ids, or
    -1/"auto" meaning every GPU: then 1 unless set explicitly)."""
    if isinstance(devices, int) and devices > 0:
        return devices
    if (
        isinstance(devices, (list, tuple))
        or hasattr(devices, "__len__")
        and not isinstance(devices, str)
    ):
        return len(devices)  # type: ignore[arg-type]
    raise ValueError(
        f"trainer.devices={devices!r}: on SLURM set the number of GPUs per node explicitly, "
        "e.g. trainer.devices=4."
    )


def register() -> None:
    """Register genlab's resolvers once (safe to call again)."""
    if not OmegaConf.has_resolver("genlab.pid"):
        # The process id makes run directories unique for runs started in the same second.
        # Cached like Hydra's ${now:}: Hydra copies the cache into every job of a sweep, so
        # jobs run by submitit in other processes resolve the same sweep directory.
        OmegaConf.register_new_resolver("genlab.pid", lambda: str(os.getpid()), use_cache=True)
    if not OmegaConf.has_resolver("genlab.run_dir"):
        OmegaConf.register_new_resolver("genlab.run_dir", run_dir_of)
    for name, fn in (
        ("genlab.sweep_group", sweep_group),
        ("genlab.job_name", job_name),
        ("genlab.resume_dir", resume_dir),
        ("genlab.sqlite", sqlite_url),
        ("genlab.devices_per_node", devices_per_node),
        # the launch directory (Hydra's ${hydra:runtime.cwd} is not set yet when the sweep
        # directory is resolved)
        ("genlab.cwd", os.getcwd),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    if not OmegaConf.has_resolver("genlab.mul"):
        OmegaConf.register_new_resolver("genlab.mul", lambda a, b: a * b)


register()
