"""The voxel GAN shape prior and ShapeHD's naturalness fine-tuning, through the real pipeline
(genlab.train with the shipped configs, real checkpoint files, genlab.sample as a subprocess):

- the prior samples voxel grids, `genlab.sample` writes them as the voxels writer does (the
  .binvox files are the model's own samples at 0.5), and a prior of another grid size than
  the data is refused before training;
- ShapeHD's fine-tuning starts from the two checkpoints and keeps the prior's D frozen: during
  real Lightning steps D is in eval mode and gets no gradient, its weights and batch-norm
  statistics stay bit-equal to the prior checkpoint's while the completion net's change, and
  the optimizer holds no D parameter; the naturalness term is the prior's generator loss,
  -mean D(sigmoid(logits)), computed by hand; bad checkpoint files are named;
- the `shape_prior` eval task on a real prior's checkpoint (files, bounds) and on a prior that
  copies its training shapes (the closed form: nearest IoU 1, every sample a copy);
- the ShapeNet GPU recipes compose and instantiate; the writer's turntables are few and its
  cached preview is never stale.

Broken variants seen failing: the prior's D never put in eval mode (neither when built nor
in `ShapeCompletion.train`: its batch-norm statistics moved, the bit-equality fails); the
prior's D built without `requires_grad_(False)` (the optimizer took its parameters and moved
them); the naturalness computed on the logits instead of the occupancies (the hand computation
differs); the writer's preview cache keyed without the tensor's version (the grids zeroed in
place got the stale image); the start files read in `setup` unless `trainer.ckpt_path` (the
first version: Lightning sets that path after `setup`, so the resumed run asked for the
moved files).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FAST, assert_same_state, load, make_cfg, run_cli, short_trainer
from hydra.utils import instantiate
from runlogs import assert_resumed_at

from genlab.data.binvox import read_binvox
from genlab.data.modality import voxels
from genlab.evaluation.context import EvalContext
from genlab.evaluation.runner import evaluate
from genlab.evaluation.shape_prior_task import shape_prior
from genlab.models.protocols import CanSample
from genlab.models.voxel_gan import VoxelGAN
from genlab.models.voxel_models import ShapeCompletion
from genlab.train import train
from genlab.utils.checkpoint import load_model
from genlab.utils.errors import GenlabError
from genlab.writers import voxels_writer

SMALL = ["data.size=16", "data.shapes_per_category=4", "data.batch_size=4"]
TINY_PRIOR = [
    "model=voxel_gan",
    *FAST,
    *SMALL,
    "model.latent_dim=8",
    "model.generator.base_channels=4",
    "model.discriminator.base_channels=4",
    # batch norm in D: a D left in training mode would move its running statistics
    "model.discriminator.norm=batch",
    "model.n_critic=2",
    "trainer.max_epochs=1",
    "callbacks=[model_checkpoint,rich_progress_bar]",
    "test=false",
]
TINY_NET = [
    *FAST,
    *SMALL,
    "data.image_size=16",
    "model.net.encoder_channels=4",
    "model.net.decoder_channels=4",
    "model.net.latent_dim=8",
    "trainer.max_epochs=1",
    "callbacks=[model_checkpoint,rich_progress_bar]",
    "test=false",
]
TINY_COMPLETION = ["model=shape_completion", *TINY_NET]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained prior and a tiny trained completion model (4 steps each), sharing one
    data folder."""
    root = tmp_path_factory.mktemp("voxel_gan")
    data = [f"paths.data_dir={root / 'data'}"]
    prior = train(make_cfg(root / "prior", *TINY_PRIOR, *data))
    completion = train(make_cfg(root / "completion", *TINY_COMPLETION, *data))
    return {
        "root": root,
        "data": root / "data",
        "prior": Path(prior["last_ckpt"]),
        "completion": Path(completion["last_ckpt"]),
    }


def shapehd_cfg(tmp_path: Path, runs: dict[str, Path], *extra: str):
    return make_cfg(
        tmp_path,
        "model=shapehd",
        *TINY_NET,
        f"paths.data_dir={runs['data']}",
        f"model.init_ckpt={runs['completion']}",
        f"model.prior_ckpt={runs['prior']}",
        "model.prior_discriminator.base_channels=4",
        "model.prior_discriminator.norm=batch",
        *extra,
    )


# --- the prior ------------------------------------------------------------------------------
def test_prior_samples_and_genlab_sample_writes_them(runs, tmp_path):
    model, _ = load_model(runs["prior"])
    assert isinstance(model, VoxelGAN) and isinstance(model, CanSample)
    x = model.sample(3, generator=torch.Generator().manual_seed(5))
    assert x.shape == (3, 1, 16, 16, 16) and x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, model.sample(3, generator=torch.Generator().manual_seed(5)))
    run_cli(
        f"ckpt_path={runs['prior']}",
        "n=3",
        "seed=5",
        f"paths.data_dir={runs['data']}",
        cwd=tmp_path,
        module="genlab.sample",
    )
    (folder,) = (runs["prior"].parent.parent / "samples").iterdir()
    assert (folder / "samples.png").is_file() and (folder / "samples_0.gif").is_file()
    for i in range(3):  # the model's own samples, thresholded at 0.5
        grid = read_binvox(folder / f"samples_{i}.binvox").voxels
        assert np.array_equal(grid, (x[i, 0] >= 0.5).numpy()), i


def test_prior_of_another_size_is_refused_before_training(tmp_path):
    with pytest.raises(GenlabError, match=r"draws voxel grids \(1, 32, 32, 32\).*data give"):
        train(
            make_cfg(
                tmp_path,
                *TINY_PRIOR,
                "model.generator.size=32",
                "model.discriminator.size=32",
            )
        )


# --- ShapeHD: the frozen prior ----------------------------------------------------------------
class Watch(L.Callback):
    """What the prior's D and the completion net look like at each optimizer step."""

    def __init__(self) -> None:
        self.d_training: list[bool] = []
        self.d_grads: list[int] = []
        self.net_grads: list[int] = []
        self.start: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = {k: v.clone() for k, v in pl_module.state_dict().items()}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        d = pl_module.prior_discriminator
        self.d_training.append(d.training)
        self.d_grads.append(sum(p.grad is not None for p in d.parameters()))
        self.net_grads.append(sum(p.grad is not None for p in pl_module.net.parameters()))


def test_shapehd_fine_tuning_keeps_the_prior_frozen(runs, tmp_path):
    cfg = shapehd_cfg(tmp_path, runs, "model.naturalness_weight=0.5")
    model, dm = instantiate(cfg.model), instantiate(cfg.data)
    watch = Watch()
    trainer = short_trainer(3, watch, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(model, dm)
    prior, completion = load(runs["prior"])["state_dict"], load(runs["completion"])["state_dict"]
    after = model.state_dict()
    # started from the two checkpoints
    for key, value in completion.items():
        if key.startswith("net."):
            assert torch.equal(watch.start[key], value), key
    d_keys = [k for k in after if k.startswith("prior_discriminator.")]
    assert any("running_mean" in k for k in d_keys)  # batch norm: eval mode is checked
    for key in d_keys:  # bit-equal to the prior's D, buffers included
        assert torch.equal(after[key], prior[key.replace("prior_", "", 1)]), key
    # D: eval mode and no gradient at every step; the net learns
    assert watch.d_training == [False] * 3 and watch.d_grads == [0] * 3
    assert all(n > 0 for n in watch.net_grads)
    changed = [
        k for k in completion if k.startswith("net.") and not torch.equal(after[k], completion[k])
    ]
    assert len(changed) > 5
    (opt,) = trainer.optimizers
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.net.parameters()}


def test_shapehd_resumes_exactly_without_reading_its_start_files(runs, tmp_path):
    """6 steps straight == 3 steps, then resumed to 6 with the two start files gone (moved
    away: the resumed run's own checkpoint holds the completion net and the prior's D);
    bit-equal states, logged from step 3 on."""
    moved = {k: tmp_path / f"{k}.ckpt" for k in ("completion", "prior")}
    for key, path in moved.items():
        shutil.copy(runs[key], path)
    start = [f"model.init_ckpt={moved['completion']}", f"model.prior_ckpt={moved['prior']}"]
    common = [
        "model.naturalness_weight=0.01",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
    ]

    def cfg(name: str, *extra: str):
        return shapehd_cfg(tmp_path / name, runs, *common, *start, *extra)

    straight = train(cfg("a", "trainer.max_steps=6"))
    first = train(cfg("b", "trainer.max_steps=3"))
    for path in moved.values():
        path.unlink()
    resumed = train(cfg("c", "trainer.max_steps=6", f"ckpt_path={first['last_ckpt']}"))
    assert straight["global_step"] == resumed["global_step"] == 6
    assert_same_state(load(straight["last_ckpt"]), load(resumed["last_ckpt"]))
    assert_resumed_at(straight["run_dir"], resumed["run_dir"], 3, "train/loss_natural")


def test_naturalness_term_is_the_prior_generator_loss(runs, tmp_path):
    cfg = shapehd_cfg(tmp_path, runs, "model.naturalness_weight=0.25")
    model: ShapeCompletion = instantiate(cfg.model)
    model.load_prior(str(runs["prior"]))
    dm = instantiate(cfg.data)
    dm.setup()
    x, view = next(iter(dm.train_dataloader()))
    model.eval()
    with torch.no_grad():
        loss = model.step((x, view), "val")
        logits = model.net(view)
        d = model.prior_discriminator
        by_hand = (
            F.binary_cross_entropy_with_logits(
                logits, x, pos_weight=torch.tensor(model.filled_weight)
            ).mean()
            + 0.25 * -d(torch.sigmoid(logits)).mean()
        )
    assert torch.allclose(loss, by_hand, rtol=1e-5), (loss, by_hand)


def test_shapehd_names_bad_checkpoints(runs, tmp_path):
    cfg = shapehd_cfg(tmp_path, runs)
    model: ShapeCompletion = instantiate(cfg.model)
    with pytest.raises(
        GenlabError, match="model.prior_ckpt=.* is a checkpoint of .*ShapeCompletion"
    ):
        model.load_prior(str(runs["completion"]))
    with pytest.raises(GenlabError, match="model.init_ckpt=.* is a checkpoint of .*VoxelGAN"):
        model.load_completion(str(runs["prior"]))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(GenlabError, match="model.prior_ckpt: .*could not be read"):
        model.load_prior(str(junk))
    wider = instantiate(
        shapehd_cfg(tmp_path, runs, "model.prior_discriminator.base_channels=8").model
    )
    with pytest.raises(GenlabError, match="does not fit this model .*prior_discriminator's size"):
        wider.load_prior(str(runs["prior"]))
    # no prior given: refused by genlab.train before the first step
    with pytest.raises(GenlabError, match="give model.prior_ckpt="):
        train(shapehd_cfg(tmp_path / "run", runs, "model.prior_ckpt=null"))


# --- the prior's evaluation ---------------------------------------------------------------------
def test_shape_prior_task_on_a_real_prior(runs, tmp_path):
    cfg = make_cfg(
        tmp_path,
        f"ckpt_path={runs['prior']}",
        f"paths.data_dir={runs['data']}",
        "tasks=[shape_prior]",
        "tasks.shape_prior.n_samples=10",
        "tasks.shape_prior.n_render=2",
        "tasks.shape_prior.classifier_steps=5",
        config_name="eval",
    )
    result = evaluate(cfg)["shape_prior"]
    out = tmp_path / "run"
    for name in ("shape_prior_views.png", "shape_prior_nearest.png", "shape_prior.json"):
        assert (out / name).is_file(), name
    mem = result["memorisation"]
    for key in ("nearest_iou_mean", "copy_fraction", "reference_nearest_iou_mean"):
        assert 0 <= mem[key] <= 1, key
    assert sum(result["coverage"]["counts"].values()) == 10
    assert set(result["coverage"]["counts"]) == {
        "box",
        "sphere",
        "cylinder",
        "torus",
        "chair",
        "table",
        "lamp",
        "bench",
    }


class Copier(torch.nn.Module):
    """A prior that has memorised its training set: sample i is training shape i."""

    def __init__(self, shapes: torch.Tensor) -> None:
        super().__init__()
        self.shapes = shapes

    def sample(self, n, *, generator=None, temperature=1.0, y=None):
        return self.shapes[:n].float()


def test_shape_prior_task_sees_a_copier(runs, tmp_path):
    cfg = make_cfg(tmp_path, *TINY_PRIOR, f"paths.data_dir={runs['data']}")
    dm = instantiate(cfg.data)
    dm.setup()
    train_x = dm.arrays("train")["x"]
    ctx = EvalContext(Copier(train_x), dm, cfg, tmp_path / "out", lambda: None)
    result = shape_prior(ctx, n_samples=len(train_x), n_render=0, classifier_steps=5)
    assert result["memorisation"]["nearest_iou_mean"] == 1.0
    assert result["memorisation"]["copy_fraction"] == 1.0
    assert result["memorisation"]["reference_copy_fraction"] < 1.0  # held-out shapes are new


# --- recipes and the writer -------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["voxel_gan_shapenet", "shapehd_shapenet"])
def test_shapenet_gpu_recipes_compose_and_instantiate(recipe, tmp_path):
    cfg = make_cfg(tmp_path, f"experiment={recipe}", "data.root=/path/to/shapenet_voxels")
    assert cfg.trainer.accelerator == "gpu" and cfg.data.size == 64
    model, dm = instantiate(cfg.model), instantiate(cfg.data)
    assert dm.modality == voxels(64)
    if recipe == "voxel_gan_shapenet":
        assert model.latent_dim == 200 and model.loss == "wgan_gp"
        assert model.sample(1).shape == (1, 1, 64, 64, 64)
    else:
        assert model.prior_discriminator.size == 64 and model.naturalness_weight > 0


def test_voxels_writer_turntables_are_few_and_previews_fresh(tmp_path):
    x = torch.zeros(3, 1, 16, 16, 16)
    x[:, :, 4:12, 2:10, 5:11] = 1.0
    files = voxels_writer.save(x, tmp_path / "s", modality=voxels(16), n_per_row=3)
    names = sorted(f.name for f in files)
    gifs = [n for n in names if n.endswith(".gif")]
    assert len(gifs) == voxels_writer.GIF_SHAPES == 2 and len(names) == 1 + 2 + 3
    full = x.clone()
    x.zero_()  # changed in place after save drew (and kept) its preview: not the kept image
    empty = voxels_writer.preview(x, modality=voxels(16), n_per_row=3)
    assert torch.equal(empty, voxels_writer.preview(x.clone(), modality=voxels(16), n_per_row=3))
    drawn = voxels_writer.preview(full, modality=voxels(16), n_per_row=3)
    assert not torch.equal(empty, drawn)
    assert torch.equal(drawn, voxels_writer.preview(full, modality=voxels(16), n_per_row=3))
