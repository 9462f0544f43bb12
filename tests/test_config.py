"""Every option of every config group composes, and instantiates what it describes."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import make_cfg, options
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from omegaconf import OmegaConf

from genlab.utils.run import instantiate_group

HARDWARE = {"gpu", "mps", "ddp"}  # accelerators this machine may not have


@pytest.mark.parametrize("model", options("model"))
def test_model_options_build_and_run_a_batch(tmp_path, model):
    cfg = make_cfg(tmp_path, f"model={model}")
    net = instantiate(cfg.model)
    assert isinstance(net, L.LightningModule)
    assert cfg.model.monitor and cfg.model.monitor_mode in ("min", "max")
    dm = instantiate(cfg.data)
    x = torch.rand(4, *dm.image_shape)
    labels = {"y": torch.arange(4) % 10}  # every model takes them; unconditional ones ignore them
    net.eval()
    with torch.no_grad():
        if hasattr(net, "reconstruct"):
            assert net.reconstruct(x, **labels).shape == x.shape
        if hasattr(net, "sample"):
            assert net.sample(3).shape == (3, *dm.image_shape)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_options(tmp_path, trainer):
    overrides = [f"trainer={trainer}"]
    if trainer in HARDWARE and not torch.cuda.is_available():
        # compose exactly as a user would, and instantiate the rest of the preset on CPU
        overrides += ["trainer.accelerator=cpu", "trainer.devices=1"]
    cfg = make_cfg(tmp_path, *overrides)
    trainer_obj = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert isinstance(trainer_obj, L.Trainer)
    if trainer == "ddp_sim":
        assert trainer_obj.num_devices == 2


@pytest.mark.parametrize(
    "logger,kinds",
    [
        ("csv", {CSVLogger}),
        ("tensorboard", {TensorBoardLogger}),
        ("wandb", {WandbLogger}),
        ("many", {CSVLogger, TensorBoardLogger, WandbLogger}),
    ],
)
def test_logger_options(tmp_path, logger, kinds):
    assert set(options("logger")) == {"csv", "tensorboard", "wandb", "many"}
    cfg = make_cfg(tmp_path, f"logger={logger}")
    assert {type(lg) for lg in instantiate_group(cfg.logger)} == kinds


def test_default_logger_is_csv_and_wandb(tmp_path):
    cfg = make_cfg(tmp_path)
    assert {type(lg) for lg in instantiate_group(cfg.logger)} == {CSVLogger, WandbLogger}


@pytest.mark.parametrize("group", ["callbacks", "debug", "experiment", "extras", "paths"])
def test_other_groups_compose(tmp_path, group):
    for option in options(group):
        cfg = make_cfg(tmp_path, f"{group}={option}")
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        instantiate_group(cfg.get("callbacks"))
        if group == "experiment":
            assert isinstance(instantiate(cfg.model), L.LightningModule)


def test_hparams_search_composes(tmp_path):
    for option in options("hparams_search"):
        cfg = make_cfg(tmp_path, f"hparams_search={option}")
        assert cfg.get("optimized_metric")


def test_model_declares_the_metric_checkpointing_watches(tmp_path):
    cfg = make_cfg(tmp_path, "model.monitor=val/psnr", "model.monitor_mode=max")
    (ckpt,) = [
        c for c in instantiate_group(cfg.callbacks) if type(c).__name__ == "ModelCheckpoint"
    ]
    assert ckpt.monitor == "val/psnr" and ckpt.mode == "max"


def test_nets_follow_the_data_shape(tmp_path):
    cfg = make_cfg(
        tmp_path,
        "model/encoder=conv",
        "model/decoder=conv",
        "data.image_size=32",
        "data.channels=3",
    )
    model = instantiate(cfg.model)
    x = torch.rand(2, 3, 32, 32)
    assert model.reconstruct(x).shape == x.shape
