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


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (`-m`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_group() -> str | None:
    """The W&B group of a job: its sweep directory's name in a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().sweep.dir).name if in_multirun() else None


def job_name() -> str | None:
    """A run's name from its command-line overrides (`model=vae,seed=2`), single run or
    multirun job; None without overrides (W&B then picks a name)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().job.override_dirname or None


def hydra_subdir(output_dir: str) -> str:
    """Where Hydra writes this job's config/overrides/log: `.hydra` in a new run directory;
    in a directory that already holds a run (resume=, a requeued SLURM job) a folder of its
    own, `.hydra/resume_<time>_<pid>`, so a continuation never overwrites the record of the
    run it continues (and a refused one can be removed without a trace)."""
    import time

    if not (Path(output_dir) / ".hydra").is_dir():
        return ".hydra"
    return f".hydra/resume_{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}"


def job_log(output_dir: str, subdir: str | None, name: str) -> str:
    """The job's log file: RUN/<name>.log, or inside the resume folder for a continuation
    (Lightning's DDP children run with `hydra.output_subdir=null`: RUN/<name>.log)."""
    fresh = subdir in (None, ".hydra")
    folder = Path(output_dir) if fresh else Path(output_dir) / str(subdir)
    folder.mkdir(parents=True, exist_ok=True)  # the log handler opens it before Hydra saves
    return str(folder / f"{name}.log")


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


def ddp_strategy(model_target: str) -> str:
    """The DDP strategy the model class `model_target` trains under: one that looks for unused
    parameters when its loop leaves some out of a backward pass (the class sets
    `ddp_find_unused_parameters = True`, e.g. the GAN), else plain `ddp`, which is faster."""
    from hydra.utils import get_class

    needs = getattr(get_class(model_target), "ddp_find_unused_parameters", False)
    return "ddp_find_unused_parameters_true" if needs else "ddp"


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
    if not OmegaConf.has_resolver("genlab.hydra_subdir"):
        # cached: resolved once per job, before and after Hydra creates the folder
        OmegaConf.register_new_resolver("genlab.hydra_subdir", hydra_subdir, use_cache=True)
    if not OmegaConf.has_resolver("genlab.job_log"):
        OmegaConf.register_new_resolver("genlab.job_log", job_log)
    if not OmegaConf.has_resolver("genlab.run_dir"):
        OmegaConf.register_new_resolver("genlab.run_dir", run_dir_of)
    for name, fn in (
        ("genlab.sweep_group", sweep_group),
        ("genlab.job_name", job_name),
        ("genlab.resume_dir", resume_dir),
        ("genlab.ddp_strategy", ddp_strategy),
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
    if not OmegaConf.has_resolver("genlab.add"):
        OmegaConf.register_new_resolver("genlab.add", lambda a, b: a + b)


register()
