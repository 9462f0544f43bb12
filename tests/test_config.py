"""Every option of every config group composes, and instantiates what it describes."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import make_cfg, options
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf

from genlab.models.protocols import CanGenerate, CanReconstruct, CanSample, CanTranslate
from genlab.utils.loggers import CSVLogger
from genlab.utils.loggers import StepWandbLogger as WandbLogger  # steps continue on resume
from genlab.utils.run import instantiate_group


def batch_for(dm) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Four random samples shaped as the data's modality says, and conditions as its condition
    says (every model takes them; unconditional ones ignore them)."""
    modality, condition = dm.modality, dm.condition
    x = torch.rand(4, *modality.shape) * (modality.high - modality.low) + modality.low
    if condition is None:
        return x, None
    if condition.kind == "class":
        return x, torch.arange(4) % max(condition.num_classes, 1)
    if condition.kind == "tokens":
        return x, torch.randint(1, len(condition.vocab), (4, *condition.shape))
    return x, torch.rand(4, *condition.shape)


@pytest.mark.parametrize("model", options("model"))
def test_model_options_build_and_run_a_batch(tmp_path, model):
    """Every model option composes with the data it names (its config's data override, else
    the default images), builds, and maps a batch of that data's shape: reconstructions,
    samples and generated outputs come out shaped as the data's modality says."""
    # WaveNet samples one step at a time: its shipped data on shorter clips
    shorter = ["data.length=1024"] if model == "wavenet" else []
    cfg = make_cfg(tmp_path, f"model={model}", *shorter)
    net = instantiate(cfg.model)
    assert isinstance(net, L.LightningModule)
    assert cfg.model.monitor and cfg.model.monitor_mode in ("min", "max")
    dm = instantiate(cfg.data)
    x, y = batch_for(dm)
    shape = tuple(dm.modality.shape)
    net.eval()
    with torch.no_grad():
        if isinstance(net, CanReconstruct):
            assert net.reconstruct(x, y).shape == x.shape
        if isinstance(net, CanSample):
            assert tuple(net.sample(2, y=None if y is None else y[:2]).shape) == (2, *shape)
        if isinstance(net, CanGenerate) and not isinstance(net, CanTranslate):
            assert tuple(net.generate(y).shape) == (4, *shape)


# what each trainer preset promises (docs/configuration.md, performance.md, sweeps.md, gpu.md):
# accelerator, devices, precision, strategy (for an autoencoder; GANs: the test below),
# and whether it turns the GPU speed switches on
PRESETS = {
    "default": ("auto", 1, "32-true", "auto", False),
    "cpu": ("cpu", 1, "32-true", "auto", False),
    "gpu": ("gpu", 1, "bf16-mixed", "auto", True),
    "mps": ("mps", 1, "32-true", "auto", False),
    "ddp": ("gpu", -1, "bf16-mixed", "ddp", True),
    "ddp_sim": ("cpu", 2, "32-true", "ddp", False),
}


def test_every_trainer_preset_is_described():
    assert set(options("trainer")) == set(PRESETS)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_options(tmp_path, trainer):
    accelerator, devices, precision, strategy, gpu_perf = PRESETS[trainer]
    cfg = make_cfg(tmp_path, f"trainer={trainer}")
    got = cfg.trainer
    assert (got.accelerator, got.devices, got.precision, got.strategy) == (
        accelerator,
        devices,
        precision,
        strategy,
    )
    assert (cfg.perf.channels_last, cfg.perf.fused_optimizer) == (gpu_perf, gpu_perf)
    assert cfg.perf.matmul_precision == ("high" if gpu_perf else None)
    if trainer == "ddp":
        assert got.sync_batchnorm is True and got.num_nodes == 1
    overrides = [f"trainer={trainer}"]
    missing = {"gpu": not torch.cuda.is_available(), "mps": not torch.backends.mps.is_available()}
    if missing.get(accelerator):
        # compose exactly as a user would, and instantiate the rest of the preset on CPU
        overrides += ["trainer.accelerator=cpu", "trainer.devices=1"]
    cfg = make_cfg(tmp_path, *overrides)
    trainer_obj = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert isinstance(trainer_obj, L.Trainer)
    assert trainer_obj.precision == precision  # the precision plugin Lightning built
    if strategy == "ddp":
        assert isinstance(trainer_obj.strategy, DDPStrategy)
    if trainer == "ddp_sim":
        assert trainer_obj.num_devices == 2 and isinstance(trainer_obj.accelerator, CPUAccelerator)


@pytest.mark.parametrize("trainer", ["ddp", "ddp_sim"])
def test_ddp_presets_pick_the_strategy_from_the_model(tmp_path, trainer):
    """GAN loops leave a net out of each backward pass: their DDP looks for unused
    parameters; autoencoders get the faster plain ddp."""
    strategies = {
        m: make_cfg(tmp_path, f"trainer={trainer}", f"model={m}").trainer.strategy
        for m in ("ae", "vae", "gan", "dcgan", "cgan")
    }
    assert strategies == {
        "ae": "ddp",
        "vae": "ddp",
        "gan": "ddp_find_unused_parameters_true",
        "dcgan": "ddp_find_unused_parameters_true",
        "cgan": "ddp_find_unused_parameters_true",
    }


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
