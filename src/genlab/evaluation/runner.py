"""Evaluate a checkpoint: rebuild its model and data, run each configured task, collect the
results in metrics.json (the library behind `python -m genlab.eval`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from genlab.evaluation.context import EvalContext, task_modalities
from genlab.utils.checkpoint import data_config, load_model
from genlab.utils.errors import GenlabError
from genlab.utils.run import output_folder, write_json

log = logging.getLogger("genlab.eval")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run every task of `cfg.tasks` on the model of `cfg.ckpt_path`, on the run's own data or
    `cfg.data`; write RUN/eval/<time>/metrics.json (after each task, so partial results
    survive) and return its content."""
    with output_folder(cfg, "eval folder") as out_dir:
        return evaluate_into(cfg, out_dir)


def evaluate_into(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=True)
    model, run_cfg = load_model(cfg.ckpt_path)
    data_cfg = data_config(run_cfg, cfg.get("data") or None)
    datamodule: L.LightningDataModule = instantiate(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    tasks = {name: instantiate(task) for name, task in (cfg.get("tasks") or {}).items()}
    if not tasks:
        raise GenlabError("tasks is empty: name at least one evaluation task, e.g. tasks=[test].")
    check_modalities(tasks, datamodule)

    def make_trainer() -> L.Trainer:
        return instantiate(cfg.trainer, default_root_dir=str(out_dir))

    device = "cuda" if cfg.trainer.get("accelerator") in ("gpu", "cuda") else "cpu"
    ctx = EvalContext(model.to(device), datamodule, run_cfg, out_dir, make_trainer, device)
    result: dict[str, Any] = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "data": data_cfg,
    }
    for name, task in tasks.items():
        log.info("eval task: %s", name)
        result[name] = task(ctx)
        model.eval()
        write_json(out_dir / "metrics.json", result)
    log.info("evaluation written to %s", out_dir / "metrics.json")
    return result


def check_modalities(tasks: dict[str, Any], datamodule: Any) -> None:
    """Refuse, before any task runs, the tasks that do not work on the data's modality."""
    modality = getattr(datamodule, "modality", None)
    kind = getattr(modality, "kind", "image")
    wrong = {
        name: kinds
        for name, task in tasks.items()
        if (kinds := task_modalities(task)) is not None and kind not in kinds
    }
    if wrong:
        listed = "; ".join(f"{name} works on {', '.join(k)}" for name, k in wrong.items())
        raise GenlabError(
            f"the data of this run are {kind} samples, and these tasks do not work on them: "
            f"{listed}. Leave them out of tasks=[...] (test works on every modality)."
        )
