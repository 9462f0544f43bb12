"""Train a model: `python -m genlab.train [model=...] [data=...] [trainer=...] [key=value ...]`.

The run directory (printed at start) receives config.yaml (resolved), checkpoints/ (last and
best by the model's declared metric), csv/metrics.csv, images/ and summary.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.checkpoint import check_state_dict, load_checkpoint
from genlab.utils.errors import GenlabError, exit_on_user_error
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

log = logging.getLogger("genlab.train")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build data, model, callbacks, loggers and trainer from `cfg`; fit; test; summarise."""
    run_dir = Path(cfg.paths.output_dir)
    is_rank_zero = launch_rank() == 0
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
    model: L.LightningModule = instantiate(cfg.model)
    if cfg.get("ckpt_path"):
        check_state_dict(model, load_checkpoint(cfg.ckpt_path)["state_dict"], cfg.ckpt_path)

    callbacks = instantiate_group(cfg.get("callbacks")) + [StoreConfig(to_plain(cfg))]
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(to_plain(cfg))

    summary: dict[str, Any] = {"status": "running", "run_dir": str(run_dir), "started": time.time()}
    try:
        if cfg.get("train", True):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
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
            summary.update(status="failed", error=f"{type(exc).__name__}: {exc}", ended=time.time())
            write_json(run_dir / "summary.json", summary)
        raise
    summary.update(status="completed", ended=time.time(), metrics=metrics)
    if trainer.is_global_zero:
        write_json(run_dir / "summary.json", summary)
        for d in wandb_offline_dirs(trainer):
            log.info("W&B run saved offline; upload it with: wandb sync %s", d)
        log.info("run directory: %s", run_dir)
    return summary


def objective(cfg: DictConfig, summary: dict[str, Any]) -> float | None:
    """The value a sweeper minimises: `optimized_metric`, else the model's declared metric
    (None when that was not logged, e.g. with train=false)."""
    metrics = summary.get("metrics", {})
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        raise GenlabError(
            f"optimized_metric={name!r} was not logged by this run; logged metrics are: "
            f"{', '.join(sorted(metrics)) or 'none'}."
        )
    return metrics.get(name or summary.get("monitor"))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    summary = train(cfg)
    return objective(cfg, summary)


if __name__ == "__main__":
    main()
