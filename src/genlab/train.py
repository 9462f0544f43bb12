"""Train a model: `python -m genlab.train [model=...] [data=...] [trainer=...] [key=value ...]`.

The run directory (printed at start) receives config.yaml (resolved), checkpoints/ (last and
best by the model's declared metric), csv/metrics.csv, images/ and summary.json.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, open_dict

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.checkpoint import check_state_dict, load_checkpoint
from genlab.utils.errors import GenlabError, find_user_error
from genlab.utils.loggers import wandb_offline_dirs
from genlab.utils.run import (
    StoreConfig,
    instantiate_group,
    launch_rank,
    print_config,
    save_config,
    scalar_metrics,
    to_plain,
    write_json,
)
from genlab.utils.sweep import single_job_argv_for_ddp_children

log = logging.getLogger("genlab.train")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build data, model, callbacks, loggers and trainer from `cfg`; fit; test; summarise."""
    run_dir = Path(cfg.paths.output_dir)
    is_rank_zero = launch_rank() == 0
    if cfg.get("resume") or (_multirun() and (run_dir / "checkpoints" / "last.ckpt").is_file()):
        # resume=..., or a multirun job requeued by SLURM into its own, already used directory
        apply_resume(cfg, run_dir)
    if is_rank_zero:
        save_config(cfg, run_dir)
        if cfg.extras.get("print_config"):
            print_config(cfg, run_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    # Everything that can be wrong with the input is found here, before training starts.
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    if is_rank_zero:
        datamodule.prepare_data()
    datamodule.setup("fit")
    apply_perf(cfg)
    model: L.LightningModule = instantiate(cfg.model)
    if cfg.get("perf", {}).get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    if cfg.get("compile"):
        compile_nets(model, backend=cfg.get("compile_backend", "inductor"))
    if cfg.get("ckpt_path"):
        check_state_dict(model, load_checkpoint(cfg.ckpt_path)["state_dict"], cfg.ckpt_path)

    callbacks = instantiate_group(cfg.get("callbacks")) + [StoreConfig(to_plain(cfg))]
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(to_plain(cfg))

    summary: dict[str, Any] = {
        "status": "running",
        "run_dir": str(run_dir),
        "started": time.time(),
    }
    wandb_ids = [
        lg.experiment.id for lg in loggers if isinstance(lg, WandbLogger) and is_rank_zero
    ]
    if wandb_ids:
        summary["wandb_id"] = wandb_ids[0]
    if is_rank_zero:
        write_json(run_dir / "summary.json", summary)
    single_job_argv_for_ddp_children()
    try:
        if cfg.get("train", True):
            trainer.fit(
                model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
            )
        metrics = scalar_metrics(trainer.callback_metrics)
        ckpt_cb = trainer.checkpoint_callback
        best = (getattr(ckpt_cb, "best_model_path", "") or None) if ckpt_cb else None
        last = Path(ckpt_cb.dirpath) / "last.ckpt" if ckpt_cb and ckpt_cb.dirpath else None
        summary.update(
            global_step=trainer.global_step,
            epoch=trainer.current_epoch,
            monitor=getattr(model, "monitor", None),
            best_score=scalar_metrics({"s": ckpt_cb.best_model_score}).get("s")
            if ckpt_cb is not None and ckpt_cb.best_model_score is not None
            else None,
            best_ckpt=best,
            last_ckpt=str(last) if last is not None and last.exists() else None,
        )
        if cfg.get("test", True):
            # the best checkpoint by the model's declared metric, else the current weights
            trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
            metrics.update(scalar_metrics(trainer.callback_metrics))
            summary["test_ckpt"] = best
    except BaseException as exc:
        if trainer.is_global_zero:
            summary.update(
                status="failed", error=f"{type(exc).__name__}: {exc}", ended=time.time()
            )
            write_json(run_dir / "summary.json", summary)
        finish_wandb(loggers)
        raise
    summary.update(status="completed", ended=time.time(), metrics=metrics)
    if trainer.is_global_zero:
        write_json(run_dir / "summary.json", summary)
        for d in wandb_offline_dirs(trainer):
            log.info("W&B run saved offline; upload it with: wandb sync %s", d)
        log.info("run directory: %s", run_dir)
    finish_wandb(loggers)
    return summary


def finish_wandb(loggers: list) -> None:
    """Close this run's W&B run, so the next job of a multirun gets a run of its own."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def apply_resume(cfg: DictConfig, run_dir: Path) -> None:
    """`resume=auto|RUN_DIR`: continue from RUN_DIR/checkpoints/last.ckpt in the same
    directory and the same W&B run (its id is kept in summary.json)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        log.info("resume=%s: no checkpoint in %s, starting a new run", cfg.resume, run_dir)
        return
    previous = (
        json.loads((run_dir / "summary.json").read_text())
        if (run_dir / "summary.json").is_file()
        else {}
    )
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


def objective(cfg: DictConfig, summary: dict[str, Any]) -> float | None:
    """The value a sweeper minimises: `optimized_metric`, else the model's declared metric;
    for the declared metric, the best value the run reached (its best checkpoint's score).
    None when nothing was logged (e.g. train=false)."""
    metrics = summary.get("metrics", {})
    name = cfg.get("optimized_metric") or summary.get("monitor")
    if name and name == summary.get("monitor") and summary.get("best_score") is not None:
        return summary["best_score"]
    if cfg.get("optimized_metric") and name not in metrics:
        raise GenlabError(
            f"optimized_metric={name!r} was not logged by this run; logged metrics are: "
            f"{', '.join(sorted(metrics)) or 'none'}."
        )
    return metrics.get(name) if name else None


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def release_distributed(env: dict[str, str]) -> None:
    """Between the jobs of a multirun in one process: end the DDP process group and restore
    the environment Lightning's DDP launcher changed (MASTER_PORT, WORLD_SIZE, ...), so the
    next job starts its own processes cleanly."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    os.environ.clear()
    os.environ.update(env)


def worst(cfg: DictConfig) -> float:
    """The objective of a failed or diverged job: the worst possible value."""
    mode = cfg.get("model", {}).get("monitor_mode", "min")
    return -math.inf if mode == "max" else math.inf


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    env = dict(os.environ)
    try:
        summary = train(cfg)
    except Exception as exc:
        user_error = find_user_error(exc)
        if _multirun() and cfg.get("multirun_on_error", "record") == "record":
            # recorded in the job's summary.json and the sweep summary; the sweep goes on
            log.error(
                "job failed: %s",
                user_error or f"{type(exc).__name__}: {exc}",
                exc_info=user_error is None,
            )
            error = str(user_error) if user_error else f"{type(exc).__name__}: {exc}"
            write_json(
                Path(cfg.paths.output_dir) / "summary.json", {"status": "failed", "error": error}
            )
            return worst(cfg)
        if user_error is not None and not _multirun():
            print(f"\ngenlab: error: {user_error}\n", file=sys.stderr)
            sys.exit(2)
        raise
    finally:
        if _multirun():
            release_distributed(env)
    value = objective(cfg, summary)
    if value is not None and math.isnan(value):
        log.warning(
            "objective %s is NaN: reported as the worst value", cfg.get("optimized_metric")
        )
        return worst(cfg)
    return value


if __name__ == "__main__":
    main()
