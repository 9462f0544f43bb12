"""Evaluate a checkpoint: `python -m genlab.eval ckpt_path=PATH [tasks=[test,...]] [data=...]`.

Rebuilds the model and data from the config stored in the checkpoint (or the run's
config.yaml), checks the weights fit, runs each configured task (conf/tasks/) and writes
metrics.json, one entry per task, to RUN/eval/<time>/.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import genlab.utils.resolvers  # noqa: F401
from genlab.evaluation.context import EvalContext
from genlab.utils.checkpoint import CONFIG_KEY, check_state_dict, load_checkpoint
from genlab.utils.errors import GenlabError, exit_on_user_error
from genlab.utils.resolvers import run_dir_of
from genlab.utils.run import write_json

log = logging.getLogger("genlab.eval")


def run_config(ckpt: dict[str, Any], ckpt_path: str) -> DictConfig:
    """The training config of a checkpoint: stored inside it, else RUN/config.yaml."""
    if CONFIG_KEY in ckpt:
        return OmegaConf.create(ckpt[CONFIG_KEY])
    config_file = Path(run_dir_of(ckpt_path)) / "config.yaml"
    if config_file.is_file():
        return OmegaConf.load(config_file)  # type: ignore[return-value]
    raise GenlabError(
        f"checkpoint {ckpt_path!r} holds no genlab config and there is no {config_file}: it was "
        "not written by genlab.train. Evaluate a checkpoint from a genlab run directory."
    )


def load_model(ckpt_path: str) -> tuple[L.LightningModule, DictConfig]:
    """Rebuild the model of a checkpoint with its weights; returns (model, training config)."""
    ckpt = load_checkpoint(ckpt_path)
    cfg = run_config(ckpt, ckpt_path)
    model: L.LightningModule = instantiate(cfg.model)
    check_state_dict(model, ckpt["state_dict"], ckpt_path)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, cfg


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run every task of `cfg.tasks` on the checkpoint's model; write metrics.json."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    model, run_cfg = load_model(cfg.ckpt_path)
    data_cfg = cfg.data if cfg.get("data") else run_cfg.data
    datamodule: L.LightningDataModule = instantiate(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    tasks = {name: instantiate(task) for name, task in (cfg.get("tasks") or {}).items()}
    if not tasks:
        raise GenlabError("tasks is empty: name at least one evaluation task, e.g. tasks=[test].")

    def make_trainer() -> L.Trainer:
        return instantiate(cfg.trainer, default_root_dir=str(out_dir))

    device = "cuda" if cfg.trainer.get("accelerator") in ("gpu", "cuda") else "cpu"
    ctx = EvalContext(model.to(device), datamodule, run_cfg, out_dir, make_trainer, device)
    result: dict[str, Any] = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "data": OmegaConf.to_container(data_cfg, resolve=True),
    }
    for name, task in tasks.items():
        log.info("eval task: %s", name)
        result[name] = task(ctx)
        model.eval()
        write_json(out_dir / "metrics.json", result)  # after each task: partial results survive
    log.info("evaluation written to %s", out_dir / "metrics.json")
    return result


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
