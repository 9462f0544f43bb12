"""A training run, from a composed config to a finished run directory: every check that can
fail before training (all problems reported together), the data, model, callbacks, loggers
and trainer, fit and test, and summary.json kept true throughout (genlab.utils.run.RunRecord).
`genlab.train` is its command line."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before configs resolve)
from genlab.callbacks.last_checkpoint import (
    AtomicCheckpointIO,
    ConfiguredLearningRates,
    LastCheckpoint,
    RandomState,
    RunInterrupted,
    check_written,
    wait_for_checkpoints,
)
from genlab.callbacks.record import Heartbeat, StoreConfig, TrainingBudget
from genlab.models.genlab_module import Diverged
from genlab.search.multirun import single_job_argv_for_ddp_children
from genlab.utils.checkpoint import CONFIG_KEY, check_state_dict, load_checkpoint
from genlab.utils.console import expect_own_checkpoints, quiet_framework_noise
from genlab.utils.errors import GenlabError, find_user_error, lost_peer
from genlab.utils.loggers import StepWandbLogger, wandb_offline_dirs
from genlab.utils.preflight import (
    accelerator_problems,
    busy_cpus,
    choose_threads,
    collect,
    option_problems,
    raise_problems,
)
from genlab.utils.resolvers import RESUME_CHOICE, in_multirun, unwritable, write_problem
from genlab.utils.resume import resumed_config
from genlab.utils.run import (
    RunLock,
    RunRecord,
    instantiate_group,
    launch_rank,
    pid_alive,
    print_config,
    read_summary,
    save_config,
    scalar_metrics,
    to_plain,
)
from genlab.utils.untrusted import trust

CONF_DIR = Path(__file__).resolve().parent / "conf"
# a DDP child's parent (rank 0, which launched it), to tell that rank 0 died
PARENT_AT_START: int | None = None

log = logging.getLogger("genlab.train")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Check the options, accelerator, data and checkpoint (every problem reported at once);
    build data, model, callbacks, loggers and trainer from `cfg`; fit; test the best
    checkpoint; keep `summary.json` true at every point (see `RunRecord`). The run directory
    has one writer (`RunLock`), and a continued run goes on with its own stored config
    (`genlab.utils.resume`)."""
    global PARENT_AT_START
    quiet_framework_noise()
    run_dir = Path(cfg.paths.output_dir)
    is_rank_zero = launch_rank() == 0
    PARENT_AT_START = None if is_rank_zero else os.getppid()
    trust(cfg.get("trusted_targets"))
    # resume=..., or a multirun job requeued by SLURM into its own, already used directory
    resuming = bool(cfg.get("resume")) or (
        in_multirun() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    )
    lock = RunLock(run_dir)
    if is_rank_zero:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()  # before anything of this run is written
            if not resuming:
                refuse_used_directory(run_dir)
        except BaseException:
            lock.release()
            forget_attempt(run_dir)  # the folder Hydra made for this attempt, if any
            raise
    try:
        return train_locked(cfg, run_dir, is_rank_zero, resuming, lock)
    finally:
        lock.release()


def train_locked(
    cfg: DictConfig, run_dir: Path, is_rank_zero: bool, resuming: bool, lock: RunLock
) -> dict[str, Any]:
    record = RunRecord(run_dir, enabled=is_rank_zero)
    resumed = False
    try:
        threads, why = set_threads(cfg)
        if resuming:
            cfg, resumed = apply_resume(cfg, run_dir)
        datamodule, model = build_checked(cfg, is_rank_zero, run_dir)
        callbacks = instantiate_group(cfg.get("callbacks"))
    except BaseException as exc:
        if resuming and (run_dir / "summary.json").is_file():
            forget_attempt(run_dir)  # a refused continuation leaves the run as it was
        else:
            record.finish("failed", error=describe(exc))
        raise
    if is_rank_zero:
        if not resumed:  # a continued run's config.yaml is its record: never rewritten
            save_config(cfg, run_dir)
        if cfg.extras.get("print_config"):  # a sweep's jobs: to the file and the debug log
            print_config(cfg, None if resumed else run_dir, echo=not in_multirun())
    if resumed:
        own = (run_dir / "checkpoints").resolve()
        for cb in callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath and Path(cb.dirpath) == own:
                expect_own_checkpoints(cb.dirpath)

    plain_cfg = to_plain(cfg)
    callbacks += [StoreConfig(plain_cfg), RandomState(), Heartbeat(record, lock)]
    callbacks.append(TrainingBudget(record))
    changed = optimizer_changes(cfg) if cfg.get("ckpt_path") and not resumed else []
    if changed:
        callbacks.append(ConfiguredLearningRates(changed))
    loggers = instantiate_group(cfg.get("logger"))
    if resumed:  # W&B's steps go on after the continued run's last one
        step = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        for logger in loggers:
            if isinstance(logger, StepWandbLogger):
                logger.continue_after(int(step["global_step"]))
    trainer = build_trainer(cfg, model, callbacks, loggers)
    for logger in loggers:
        logger.log_hyperparams(plain_cfg)
    monitor = getattr(model, "monitor", None)
    wandb_id = prepare_wandb(loggers, monitor, getattr(model, "monitor_mode", "min"))
    record.start(
        monitor=monitor,
        threads=threads,
        threads_from=why,
        overrides=attempt_overrides(),
        **({"wandb_id": wandb_id} if wandb_id else {}),
        **({"resumed_from": cfg.ckpt_path} if cfg.get("ckpt_path") else {}),
    )
    last_cb = next((c for c in callbacks if isinstance(c, LastCheckpoint)), None)
    single_job_argv_for_ddp_children()
    try:
        if cfg.get("train", True):
            trainer.fit(
                model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
            )
        wait_for_checkpoints(trainer)  # a background writer's files are complete from here
        metrics = scalar_metrics(trainer.callback_metrics)
        ckpt_cb = trainer.checkpoint_callback
        best = (getattr(ckpt_cb, "best_model_path", "") or None) if ckpt_cb else None
        if best is not None and trainer.is_global_zero:
            check_written(Path(best), 0.0)  # Lightning's save can fail without a word
        record.update(
            **progress(trainer, model, last_cb),
            best_score=scalar_metrics({"s": ckpt_cb.best_model_score}).get("s")
            if ckpt_cb is not None and ckpt_cb.best_model_score is not None
            else None,
            best_ckpt=best,
        )
        if best is None and ckpt_cb is not None and cfg.get("train", True):
            record.update(best_ckpt_note=f"no validation logged {monitor}: no best checkpoint")
        if cfg.get("test", True):
            # the best checkpoint by the model's declared metric, else the current weights
            trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
            metrics.update(scalar_metrics(trainer.callback_metrics))
            record.update(test_ckpt=best)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the files written so far are complete
            wait_for_checkpoints(trainer)
        status = run_end_status(exc)
        if isinstance(exc, Diverged):
            explain_divergence(exc, last_cb, model)
        exc = as_user_error(exc, run_dir)
        if lost_peer(exc):
            exc = peer_death(trainer, exc, run_dir, record)
        record.finish(status, error=describe(exc), **progress(trainer, model, last_cb))
        finish_wandb(loggers, exit_code=1)
        raise exc
    record.finish("completed", metrics=metrics)
    if trainer.is_global_zero:
        for d in wandb_offline_dirs(trainer):
            log.info("W&B run saved offline; upload it with: wandb sync %s", d)
        log.info("run directory: %s", run_dir)
    finish_wandb(loggers)
    return dict(record.data)


def build_trainer(cfg: DictConfig, model: Any, callbacks: list, loggers: list) -> L.Trainer:
    """The Lightning Trainer of the run's `trainer` config, its checkpoints written by
    genlab's atomic writer (`AtomicCheckpointIO`)."""
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in model.adopt_trainer_options(trainer_cfg):  # e.g. the GAN clips by itself
        trainer_cfg.pop(key, None)
    plugins = trainer_cfg.pop("plugins", None) or []
    plugins = [instantiate(p) if isinstance(p, dict) else p for p in _as_list(plugins)]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        background = bool((cfg.get("perf") or {}).get("async_checkpoints", False))
        plugins.append(AtomicCheckpointIO(background=background))
    return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False, plugins=plugins)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def refuse_used_directory(run_dir: Path) -> None:
    """A new run never writes over the record of another one in the same directory."""
    records = [n for n in ("summary.json", "config.yaml", "checkpoints") if (run_dir / n).exists()]
    if records:
        status = read_summary(run_dir).get("status", "unknown")
        raise GenlabError(
            f"the run directory {run_dir} already holds a run ({', '.join(records)}; status "
            f"{status}). genlab never starts a second run over a first: continue it with "
            f"resume={run_dir}, or choose another directory (leave hydra.run.dir to genlab)."
        )


def attempt_overrides() -> list[str]:
    """The command-line overrides of this attempt (recorded in summary.json)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def peer_death(
    trainer: L.Trainer, exc: BaseException, run_dir: Path, record: RunRecord
) -> GenlabError:
    """A DDP rank's view of another rank's death, as one paragraph naming the rank that died
    and how (rank 0 sees its child processes' exit codes; the others see rank 0's process
    gone). When rank 0 is the one that died, rank 1 writes summary.json's `failed`."""
    import time

    rank = trainer.global_rank
    dead = []
    launcher = getattr(trainer.strategy, "launcher", None)
    # Lightning's subprocess launcher keeps rank 0's children in `launcher.procs` (not a
    # documented API; tests/test_integrity.py fails if it moves), and a thread of its own
    # SIGKILLs rank 0 within 5 s of a child's death, before rank 0 could say anything. That
    # thread watches this same list: emptying it lets rank 0 report and exit cleanly; the
    # children still alive are stopped here instead.
    watched = getattr(launcher, "procs", None)
    procs = list(watched or [])
    if isinstance(watched, list):
        watched.clear()
    deadline = time.time() + 2.0
    while procs and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)  # the dead process may not be reaped yet
    for i, proc in enumerate(procs, start=1):
        code = proc.poll()
        if code:
            dead.append(f"rank {i} died ({exit_text(code)})")
        elif code is None:
            proc.kill()
    if rank != 0:
        summary = read_summary(run_dir)
        pid = summary.get("pid")
        import socket

        same_host = summary.get("host") == socket.gethostname()

        def rank0_gone() -> bool:
            # rank 0 started this process: its parent changes when rank 0 dies
            orphaned = PARENT_AT_START is not None and os.getppid() != PARENT_AT_START
            return orphaned or (same_host and isinstance(pid, int) and not pid_alive(pid))

        # the backend reports rank 0's sockets closed while its process is still exiting (a
        # dying process closes its files before its children are handed on): wait for the
        # exit to show, or this rank does not know rank 0 died and records nothing
        deadline = time.time() + 2.0
        while not rank0_gone() and time.time() < deadline:
            time.sleep(0.05)
        if rank0_gone():
            dead.append(f"rank 0 died (its process {pid} is gone)")
            if rank == 1:
                record.enabled = True
                record.data = {k: v for k, v in summary.items() if k != "heartbeat"}
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    first = first.split("] ", 1)[-1].split(". ")[0]  # gloo: "[file:line] Read error ...: why"
    last = run_dir / "checkpoints" / "last.ckpt"
    err = GenlabError(
        f"{', '.join(dead) or 'another rank died'}, so rank {rank} stopped at step "
        f"{trainer.global_step}: the ranks of a DDP run wait for one another, and the "
        f"backend reported the loss ({first[:160]}). "
        + (
            f"{last} holds the last complete state: continue with resume={run_dir}."
            if last.is_file()
            else "No checkpoint had been written."
        )
    )
    err.__cause__ = exc
    return err


def as_user_error(exc: BaseException, run_dir: Path) -> BaseException:
    """An OSError that says the run directory cannot be written (permissions, a read-only or
    full disk) as genlab's message, in the same words as the check before training."""
    import errno

    if find_user_error(exc) is not None:
        return exc
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (
            errno.EACCES,
            errno.EPERM,
            errno.EROFS,
            errno.ENOSPC,
            errno.EDQUOT,
        ):
            where = Path(err.filename).parent if err.filename else run_dir
            user = GenlabError(unwritable(where, err.strerror or str(err)))
            user.__cause__ = exc
            return user
        err = err.__cause__ or err.__context__
    return exc


def build_checked(
    cfg: DictConfig, is_rank_zero: bool, run_dir: Path | None = None
) -> tuple[L.LightningDataModule, Any]:
    """The datamodule (set up) and the model, after every check that can fail before training:
    option values, the accelerator, the run directory, the data, the checkpoint file; all
    problems of these are reported in one GenlabError. Then the model is built and the
    checkpoint matched to it."""
    problems = option_problems(cfg)
    problems += accelerator_problems(cfg.trainer)
    if is_rank_zero and run_dir is not None:
        problems += writable_problems(run_dir)
    ckpt = collect(problems, lambda: cfg.get("ckpt_path") and load_checkpoint(cfg.ckpt_path))
    if cfg.get("seed") is not None and not option_problems(OmegaConf.create({"seed": cfg.seed})):
        L.seed_everything(cfg.seed, workers=True)
    datamodule = None
    if not any(p.startswith("data.") for p in problems):
        datamodule = collect(problems, lambda: instantiate(cfg.data))
    if datamodule is not None:

        def prepare() -> None:
            if is_rank_zero:
                datamodule.prepare_data()
            datamodule.setup("fit")
            problems.extend(split_problems(cfg, datamodule))

        collect(problems, prepare)
    raise_problems(problems)
    warn_if_never_validated(cfg, datamodule)

    apply_perf(cfg)
    model = instantiate(cfg.model)
    k = int(cfg.get("perf", {}).get("steps_per_batch") or 1)
    model.use_steps_per_batch(k)  # the fast path; a model that cannot refuses here
    datamodule.steps_per_batch = k
    if cfg.get("perf", {}).get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    if cfg.get("compile"):
        compile_nets(model, backend=cfg.get("compile_backend", "inductor"))
    if ckpt:
        check_state_dict(model, ckpt["state_dict"], cfg.ckpt_path)
    return datamodule, model


def writable_problems(run_dir: Path) -> list[str]:
    """The run directory and its checkpoints folder (where it exists already) accept a new
    file."""
    for folder in (run_dir, run_dir / "checkpoints"):
        why = write_problem(folder) if folder.is_dir() else None
        if why:
            return [unwritable(folder, why)]
    return []


def split_problems(cfg: DictConfig, datamodule: Any) -> list[str]:
    """Empty validation or test splits that the run would evaluate on."""
    problems = []
    wanted = {"val": cfg.trainer.get("limit_val_batches") != 0 and cfg.get("train", True)}
    wanted["test"] = bool(cfg.get("test", True))
    for split, used in wanted.items():
        if not used or not hasattr(datamodule, "dataset"):
            continue
        n = len(datamodule.dataset(split))
        if n == 0:
            option = "trainer.limit_val_batches=0" if split == "val" else "test=false"
            problems.append(
                f"the {split} split of data={getattr(datamodule, 'name', '?')} is empty, so "
                f"there is nothing to {'validate' if split == 'val' else 'test'} on. Give it "
                f"images (data.{split}_fraction, or more data), or set {option}."
            )
    return problems


def warn_if_never_validated(cfg: DictConfig, datamodule: Any) -> None:
    """Say so before training when the budget ends before the first validation: no val
    metrics and no best checkpoint then (last.ckpt and the final grids are still written)."""
    every = cfg.trainer.get("check_val_every_n_epoch") or 1
    if every <= 1 or cfg.trainer.get("val_check_interval") is not None:
        return
    epochs = cfg.trainer.get("max_epochs")
    max_steps = cfg.trainer.get("max_steps") or -1
    if max_steps > 0 and datamodule is not None and hasattr(datamodule, "dataset"):
        per_epoch = max(1, len(datamodule.dataset("train")) // datamodule.batch_size)
        limit = cfg.trainer.get("limit_train_batches")
        if isinstance(limit, int) and limit > 0:
            per_epoch = min(per_epoch, limit)
        steps_epochs = math.ceil(max_steps / per_epoch)
        epochs = steps_epochs if epochs in (None, -1) else min(epochs, steps_epochs)
    if epochs is not None and 0 <= epochs < every:
        log.warning(
            "validation never runs: trainer.check_val_every_n_epoch=%d but the run lasts %s "
            "epoch(s). There will be no val metrics and no best checkpoint (last.ckpt and the "
            "end-of-run image grids are still written); set trainer.check_val_every_n_epoch=1 "
            "to validate every epoch.",
            every,
            epochs,
        )


def set_threads(cfg: DictConfig) -> tuple[int, str]:
    """torch's intra-op thread count from the `threads` option (auto: the usable CPUs shared
    by this node's training processes, one on a busy machine); returns (threads, why)."""
    devices = cfg.trainer.get("devices", 1)
    on_cpu = cfg.trainer.get("accelerator") == "cpu" and isinstance(devices, int)
    per_node = devices if on_cpu else 1
    n, why = choose_threads(cfg.get("threads", "auto"), max(1, per_node), load=busy_cpus())
    torch.set_num_threads(n)
    log.info("torch threads: %d (%s)", n, why)
    return n, why


def progress(trainer: L.Trainer, model: Any, last_cb: LastCheckpoint | None) -> dict[str, Any]:
    """Where a run got to, for summary.json: steps, epoch, the last checkpoint and its step."""
    out: dict[str, Any] = {"global_step": trainer.global_step, "epoch": trainer.current_epoch}
    if last_cb is not None and last_cb.path.is_file():
        out["last_ckpt"] = str(last_cb.path)
        out["last_ckpt_step"] = last_cb.saved_step
    else:
        out["last_ckpt"] = None
    health = model.health() if hasattr(model, "health") else {}
    if health:
        out["health"] = health
    return out


def run_end_status(exc: BaseException) -> str:
    """The summary status of a run that ended with `exc` (an exception may name its own, e.g.
    the search's pruning: `run_status = "pruned"`)."""
    if getattr(exc, "run_status", None):
        return exc.run_status  # type: ignore[attr-defined]
    if isinstance(exc, Diverged):
        return "diverged"
    interrupted = (RunInterrupted, KeyboardInterrupt, SIGTERMException)
    if isinstance(exc, interrupted) or isinstance(exc.__context__, interrupted):
        return "interrupted"
    return "failed"


def describe(exc: BaseException) -> str:
    """The error text for summary.json: the user-facing message, else type and message."""
    err = find_user_error(exc)
    return str(err) if err is not None else f"{type(exc).__name__}: {exc}"


def explain_divergence(exc: Diverged, last_cb: LastCheckpoint | None, model: Any) -> None:
    """Append to the divergence message what last.ckpt holds: its step, learning rates and
    weight norm beside those at the start of this attempt, so the user can judge whether it
    is worth continuing from (it is not called good when it was never checked)."""
    if last_cb is None or not last_cb.path.is_file():
        exc.args = (exc.args[0] + " No checkpoint had been written before it.",)
        return
    ckpt = torch.load(last_cb.path, map_location="cpu", weights_only=True)
    lrs = [g.get("lr") for o in ckpt.get("optimizer_states", []) for g in o["param_groups"]]
    norm = weight_norm(ckpt["state_dict"].values())
    start = getattr(model, "genlab_start_state", None) or {}
    lr0, norm0 = start.get("lrs") or [], start.get("weight_norm")
    where = (
        f" {last_cb.path} holds step {ckpt['global_step']}: learning rate(s) "
        f"{', '.join(f'{v:.3g}' for v in lrs if v is not None) or 'unknown'}"
        + (f" (at the start: {', '.join(f'{v:.3g}' for v in lr0)})" if lr0 else "")
        + f", weight norm {norm:.4g}"
        + (f" (at the start: {norm0:.4g})" if norm0 is not None else "")
        + "."
    )
    grown = (norm0 and norm > 10 * norm0) or any(
        a is not None and b and a > 10 * b for a, b in zip(lrs, lr0, strict=False)
    )
    if grown or not math.isfinite(norm):
        where += (
            " Those are far above the start: that state is probably already diverging; "
            "continue from an earlier best-*.ckpt, or start again with a lower learning rate."
        )
    else:
        where += (
            f" To continue from it: ckpt_path={last_cb.path} with a lower learning rate "
            "(applied to the loaded optimizer)."
        )
    exc.args = (exc.args[0] + where,)


def weight_norm(tensors: Any) -> float:
    """The L2 norm over every floating-point tensor (a model's weights and buffers)."""
    total = 0.0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            total += float(t.double().pow(2).sum())
    return math.sqrt(total)


def optimizer_changes(cfg: DictConfig) -> list[str]:
    """`ckpt_path=` (a new run from a checkpoint): the model's optimizer and scheduler options
    that differ from the checkpoint's own config; their values are applied to the loaded
    optimizer state (`ConfiguredLearningRates`), which would otherwise keep the old ones."""
    try:
        stored = load_checkpoint(cfg.ckpt_path).get(CONFIG_KEY) or {}
    except GenlabError:
        return []
    old = (stored.get("model") or {}) if isinstance(stored, dict) else {}
    new = OmegaConf.to_container(cfg.model, resolve=True)
    changed = []
    for key, value in new.items():
        if key.startswith(("optimizer", "scheduler")) and value != old.get(key, value):
            changed.append(f"model.{key}")
    return changed


def forget_attempt(run_dir: Path) -> None:
    """Remove the `.hydra/resume_*` folder Hydra made for this (refused) attempt."""
    for folder in (run_dir / ".hydra").glob(f"resume_*_{os.getpid()}"):
        logging.shutdown()  # close the attempt's log file before removing it
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        (run_dir / ".hydra").rmdir()  # made for this attempt alone (a run without one)


def prepare_wandb(loggers: list, monitor: str | None, mode: str) -> str | None:
    """Start the W&B run (rank 0), make its summary hold the best value of the declared metric
    (not the last), and return its id."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and launch_rank() == 0:
            run = logger.experiment
            if monitor:
                run.define_metric(monitor, summary="min" if mode == "min" else "max")
            return run.id
    return None


def finish_wandb(loggers: list, exit_code: int = 0) -> None:
    """Close this run's W&B run, so the next job of a multirun gets a run of its own. A run
    without the W&B logger does not import wandb (about 0.6 s of every CLI process)."""
    if not any(isinstance(lg, WandbLogger) for lg in loggers):
        return
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def apply_resume(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, bool]:
    """`resume=auto|RUN_DIR` (or a requeued job): the config to continue RUN_DIR/checkpoints/
    last.ckpt with, in the same directory and the same W&B run: the run's own stored config
    with only the options that are safe to change taken from this command
    (`genlab.utils.resume.resumed_config`). Nothing is written here: the checks that follow
    may still refuse the continuation. Returns (config, whether a run is continued)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        log.info("resume=%s: no checkpoint in %s, starting a new run", cfg.get("resume"), run_dir)
        return cfg, False
    if cfg.get("resume") == "auto" and RESUME_CHOICE.get("why"):
        log.info("resume=auto: continuing %s, %s", run_dir, RESUME_CHOICE["why"])
    summary = read_summary(run_dir)
    resumed = resumed_config(cfg, run_dir, attempt_overrides(), CONF_DIR, summary)
    log.info(
        "resuming %s from %s with the run's own config (W&B run %s)",
        run_dir,
        last,
        summary.get("wandb_id"),
    )
    return resumed, True


FUSABLE = {"torch.optim.Adam", "torch.optim.AdamW"}


def apply_perf(cfg: DictConfig) -> None:
    """The `perf` switches that act before the model exists: matmul precision, and fused
    kernels for every Adam/AdamW optimizer of the model config (optimizer, optimizer_g, ...)."""
    perf = cfg.get("perf") or {}
    if perf.get("matmul_precision"):
        torch.set_float32_matmul_precision(perf.matmul_precision)
    if perf.get("fused_optimizer"):
        with open_dict(cfg):
            for node in cfg.model.values():
                if isinstance(node, DictConfig) and node.get("_target_") in FUSABLE:
                    node.setdefault("fused", True)


def compile_nets(model: L.LightningModule, backend: str) -> None:
    """torch.compile each net of the model in place (nn.Module.compile keeps parameter
    names, so checkpoints stay loadable without compile); metric modules are left alone."""
    for name, child in model.named_children():
        if "metric" not in name and any(p.requires_grad for p in child.parameters()):
            child.compile(backend=backend)
