"""OmegaConf resolvers used by the config tree (`${genlab.*:...}`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from omegaconf import OmegaConf

from genlab.utils.errors import GenlabError, refuse_now


def run_dir_of(ckpt_path: str) -> str:
    """The training run directory that holds a checkpoint (`RUN/checkpoints/x.ckpt` -> `RUN`)."""
    path = Path(ckpt_path).expanduser().resolve()
    parent = path.parent
    return str(parent.parent if parent.name == "checkpoints" else parent)


def output_parent(ckpt_path: str) -> str:
    """`run_dir_of` for the output folders of eval/sample/latent/translate (RUN/eval/<time>),
    resolved by Hydra before it creates them: a missing checkpoint stops here, with one
    paragraph, before any folder exists."""
    path = Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        refuse_now(
            GenlabError(
                f"ckpt_path={str(ckpt_path)!r} "
                + ("is a directory" if path.is_dir() else "does not exist")
                + ". Pass the path of a .ckpt file, e.g. "
                "logs/train/runs/<run>/checkpoints/last.ckpt. Nothing was written."
            )
        )
    return run_dir_of(str(ckpt_path))


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
    out = Path(output_dir)
    why = write_problem(out) if out.is_dir() else None
    if why:
        refuse_now(GenlabError(unwritable(out, why)))
    if not (out / ".hydra").is_dir() and not (out / "summary.json").exists():
        return ".hydra"  # a new run
    return f".hydra/resume_{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}"


def job_log(output_dir: str, subdir: str | None, name: str) -> str:
    """The job's log file: RUN/<name>.log, or inside the resume folder for a continuation
    (Lightning's DDP children run with `hydra.output_subdir=null`: RUN/<name>.log)."""
    fresh = subdir in (None, ".hydra")
    folder = Path(output_dir) if fresh else Path(output_dir) / str(subdir)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # the log handler opens it before Hydra saves
    except OSError as exc:
        refuse_now(GenlabError(unwritable(folder, exc.strerror or str(exc))))
    return str(folder / f"{name}.log")


# why resume=auto chose the run it chose (logged once the run's logging is set up)
RESUME_CHOICE: dict[str, str] = {}
FUTURE_SLACK_S = 300.0


def latest_run(runs_dir: Path) -> tuple[Path | None, str]:
    """The run `resume=auto` continues: among the run directories under `runs_dir` that hold
    checkpoints/last.ckpt, belong to this user and have a summary.json genlab can read, the one
    started last by its summary's `started` time (not by file times, which anyone can set).
    Returns (run or None, why)."""
    from genlab.utils.untrusted import read_json_object

    if not runs_dir.is_dir():
        return None, f"{runs_dir} does not exist"
    found, skipped = [], []
    now = time.time()
    for entry in sorted(os.scandir(runs_dir), key=lambda e: e.name):
        run = Path(entry.path)
        if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        if not (run / "checkpoints" / "last.ckpt").is_file():
            continue
        try:
            if hasattr(os, "getuid") and entry.stat(follow_symlinks=False).st_uid != os.getuid():
                skipped.append(f"{run.name} (another user's)")
                continue
            summary = read_json_object(run / "summary.json", what="summary")
            started = float(summary["started"])
        except (GenlabError, KeyError, TypeError, ValueError, OSError):
            skipped.append(f"{run.name} (no readable summary.json)")
            continue
        if not started <= now + FUTURE_SLACK_S:
            skipped.append(f"{run.name} (started in the future)")
            continue
        found.append((started, run))
    why = f"{len(found)} run(s) with a last.ckpt under {runs_dir}"
    if skipped:
        why += "; not considered: " + ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
    if not found:
        return None, why
    started, run = max(found)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    return run, f"the latest started ({stamp}) of {why}"


def resume_dir(resume: str | None, runs_dir: str, fresh_name: str) -> str:
    """The run directory: `runs_dir/fresh_name` for a new run; for `resume=auto` the latest
    run of this user in `runs_dir` (`latest_run`; a new one if there is none); for
    `resume=PATH` that run directory. A run directory to continue is checked here, before
    Hydra writes into it (`check_run_dir`)."""
    if resume in (None, "", "null"):
        return str(Path(runs_dir) / fresh_name)
    if resume == "auto":
        run, why = latest_run(Path(runs_dir))
        RESUME_CHOICE.update(run=str(run), why=why)
        if run is None:
            return str(Path(runs_dir) / fresh_name)
        path = run.resolve()
    else:
        path = Path(str(resume)).expanduser().resolve()
        if not (path / "checkpoints" / "last.ckpt").is_file():
            refuse_now(
                GenlabError(
                    f"resume={resume!r}: {path}/checkpoints/last.ckpt does not exist. Pass a run "
                    "directory of genlab.train (logs/train/runs/<run>) or resume=auto. Nothing "
                    "was written."
                )
            )
    try:
        check_run_dir(path)
    except GenlabError as exc:
        refuse_now(exc)
    return str(path)


# W&B keeps links of its own in its folder (latest-run, debug.log, and logs/debug-core.log into
# ~/.cache/wandb); it replaces them rather than writing through them, and writes a resumed
# segment into a folder of its own
LINKS_ALLOWED_UNDER = ("wandb",)
MAX_RUN_ENTRIES = 200_000


def check_run_dir(run: Path) -> None:
    """A run directory genlab is about to write into again: no symbolic link in it (genlab
    would write through it, anywhere), except W&B's own under wandb/; writable. Raises a
    GenlabError naming the path."""
    if run.is_symlink():
        raise GenlabError(f"the run directory {run} is a symbolic link: give its real path.")
    seen = 0
    for folder, dirs, files in os.walk(run, followlinks=False):
        seen += len(dirs) + len(files)
        if seen > MAX_RUN_ENTRIES:
            raise GenlabError(
                f"the run directory {run} holds more than {MAX_RUN_ENTRIES:,} files: not a run "
                "genlab wrote. Start a new run instead of continuing this one."
            )
        for name in dirs + files:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            relative = path.relative_to(run)
            if relative.parts[0] not in LINKS_ALLOWED_UNDER:
                raise GenlabError(
                    f"the run directory {run} holds a symbolic link, {relative} -> "
                    f"{os.readlink(path)}: genlab never makes one there, and continuing the run "
                    "would write through it. Remove the link (or start a new run) and try again."
                )
    why = write_problem(run)
    if why:
        raise GenlabError(unwritable(run, why))


def write_problem(folder: Path) -> str | None:
    """Why a new file cannot be made in `folder` (None when it can): tried for real, since a
    permission check says yes to root on a read-only or immutable folder."""
    probe = folder / f".genlab-write-check.{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(probe, flags, 0o600))
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def unwritable(folder: Path, detail: str = "") -> str:
    """The one wording for a run directory genlab cannot write to, before training or during."""
    return (
        f"cannot write to {folder}{f' ({detail})' if detail else ''}: genlab writes the run's "
        "checkpoints, config and summary there. Make it writable (chmod u+w, or check the "
        "disk), or choose another directory (hydra.run.dir=...)."
    )


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
        OmegaConf.register_new_resolver("genlab.run_dir", output_parent)
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
