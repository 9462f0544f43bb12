"""A training run, from a composed config to a finished run directory: every check that can
fail before training (all problems reported together), the data, model, callbacks, loggers
and trainer, fit and test, and summary.json kept true throughout (genlab.utils.run.RunRecord).
`genlab.train` is its command line."""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before configs resolve)
from genlab.callbacks.checkpoint import (
    LastCheckpoint,
    RandomState,
    RunInterrupted,
    check_written,
)
from genlab.callbacks.record import Heartbeat
from genlab.models.base import Diverged
from genlab.utils.checkpoint import check_state_dict, load_checkpoint
from genlab.utils.errors import GenlabError, find_user_error
from genlab.utils.loggers import wandb_offline_dirs
from genlab.utils.preflight import (
    accelerator_problems,
    busy_cpus,
    choose_threads,
    collect,
    option_problems,
    raise_problems,
    usable_cpus,
)
from genlab.utils.resolvers import in_multirun
from genlab.utils.run import (
    RunRecord,
    StoreConfig,
    instantiate_group,
    launch_rank,
    print_config,
    read_summary,
    save_config,
    scalar_metrics,
    to_plain,
)
from genlab.utils.sweep import single_job_argv_for_ddp_children

log = logging.getLogger("genlab.train")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Check the options, accelerator, data and checkpoint (every problem reported at once);
    build data, model, callbacks, loggers and trainer from `cfg`; fit; test the best
    checkpoint; keep `summary.json` true at every point (see `RunRecord`)."""
    run_dir = Path(cfg.paths.output_dir)
    is_rank_zero = launch_rank() == 0
    record = RunRecord(run_dir, enabled=is_rank_zero)
    # resume=..., or a multirun job requeued by SLURM into its own, already used directory
    resuming = bool(cfg.get("resume")) or (
        in_multirun() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    )
    try:
        threads, why = set_threads(cfg)
        if resuming:
            apply_resume(cfg, run_dir)
        datamodule, model = build_checked(cfg, is_rank_zero)
        callbacks = instantiate_group(cfg.get("callbacks"))
    except BaseException as exc:
        if resuming:
            forget_attempt(run_dir)  # a refused continuation leaves the run as it was
            if isinstance(exc, GenlabError):
                exc.args = (f"{exc} {resume_hint(run_dir)}",)
        else:
            record.finish("failed", error=describe(exc))
        raise
    if is_rank_zero:
        save_config(cfg, run_dir)
        if cfg.extras.get("print_config"):
            print_config(cfg, run_dir)

    plain_cfg = to_plain(cfg)
    callbacks += [StoreConfig(plain_cfg), RandomState(), Heartbeat(record)]
    loggers = instantiate_group(cfg.get("logger"))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in model.adopt_trainer_options(trainer_cfg):  # e.g. the GAN clips by itself
        trainer_cfg.pop(key, None)
    trainer: L.Trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(plain_cfg)
    monitor = getattr(model, "monitor", None)
    wandb_id = prepare_wandb(loggers, monitor, getattr(model, "monitor_mode", "min"))
    record.start(
        monitor=monitor,
        threads=threads,
        threads_from=why,
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
        status = run_end_status(exc)
        if isinstance(exc, Diverged):
            explain_divergence(exc, last_cb)
        record.finish(status, error=describe(exc), **progress(trainer, model, last_cb))
        finish_wandb(loggers, exit_code=1)
        raise
    record.finish("completed", metrics=metrics)
    if trainer.is_global_zero:
        for d in wandb_offline_dirs(trainer):
            log.info("W&B run saved offline; upload it with: wandb sync %s", d)
        log.info("run directory: %s", run_dir)
    finish_wandb(loggers)
    return dict(record.data)


def build_checked(cfg: DictConfig, is_rank_zero: bool) -> tuple[L.LightningDataModule, Any]:
    """The datamodule (set up) and the model, after every check that can fail before training:
    option values, the accelerator, the data, the checkpoint file; all problems of these are
    reported in one GenlabError. Then the model is built and the checkpoint matched to it."""
    problems = option_problems(cfg)
    problems += accelerator_problems(cfg.trainer)
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
    by this node's training processes); returns (threads, why)."""
    devices = cfg.trainer.get("devices", 1)
    on_cpu = cfg.trainer.get("accelerator") == "cpu" and isinstance(devices, int)
    per_node = devices if on_cpu else 1
    n, why = choose_threads(cfg.get("threads", "auto"), max(1, per_node))
    torch.set_num_threads(n)
    log.info("torch threads: %d (%s)", n, why)
    busy = busy_cpus()
    if n > 1 and busy is not None and busy >= usable_cpus():
        log.warning(
            "the machine is busy (load average %.1f on %d usable CPUs): with %d threads each "
            "step waits for the slowest thread; threads=1 is often several times faster on a "
            "shared machine (docs/performance.md#cpu-threads)",
            busy,
            usable_cpus(),
            n,
        )
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


def explain_divergence(exc: Diverged, last_cb: LastCheckpoint | None) -> None:
    """Append to the divergence message which checkpoint holds the last good state, if any."""
    if last_cb is not None and last_cb.path.is_file():
        step = torch.load(last_cb.path, map_location="cpu", weights_only=True)["global_step"]
        where = (
            f" {last_cb.path} (step {step}) is the last good state: continue from it with "
            f"ckpt_path={last_cb.path} and a lower learning rate."
        )
    else:
        where = " No checkpoint had been written before it."
    exc.args = (exc.args[0] + where,)


def resume_hint(run_dir: Path) -> str:
    """How the run being continued was started (its overrides), to repeat them."""
    try:
        overrides = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
    except (OSError, ValueError):
        return "Repeat the options of the run you continue (see its config.yaml)."
    shown = " ".join(str(o) for o in overrides) or "(no overrides: the defaults)"
    return (
        f"resume= continues {run_dir} with the options given now, and the run was started "
        f"with: {shown}. Repeat those model and data options; nothing in the run directory "
        "was changed."
    )


def forget_attempt(run_dir: Path) -> None:
    """Remove the `.hydra/resume_*` folder Hydra made for this (refused) attempt."""
    for folder in (run_dir / ".hydra").glob(f"resume_*_{os.getpid()}"):
        logging.shutdown()  # close the attempt's log file before removing it
        shutil.rmtree(folder, ignore_errors=True)


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
    """Close this run's W&B run, so the next job of a multirun gets a run of its own."""
    import wandb

    if any(isinstance(lg, WandbLogger) for lg in loggers) and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def apply_resume(cfg: DictConfig, run_dir: Path) -> None:
    """`resume=auto|RUN_DIR`: continue from RUN_DIR/checkpoints/last.ckpt in the same
    directory and the same W&B run (its id is kept in summary.json). Nothing is written here:
    the checks that follow may still refuse the continuation."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        log.info("resume=%s: no checkpoint in %s, starting a new run", cfg.resume, run_dir)
        return
    previous = read_summary(run_dir)
    with open_dict(cfg):
        cfg.ckpt_path = str(last)
        if previous.get("wandb_id") and cfg.get("logger") and "wandb" in cfg.logger:
            cfg.logger.wandb.id = previous["wandb_id"]
    log.info("resuming %s from %s (W&B run %s)", run_dir, last, previous.get("wandb_id"))


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
