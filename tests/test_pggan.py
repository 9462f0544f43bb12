"""Progressive GAN: nets at every stage and alpha, fade-in endpoints, the paper's components
against closed forms and hand computations, the schedule in a real run, exact resume inside
a fade-in, the D-frozen property, stage checkpoints, sampling and eval at a stage, configs.
Tiny nets (2-8 channels) on the bundled 28-pixel digits (padded to 32: four levels)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    FAST,
    TINY_CLASSIFIER,
    assert_same_state,
    load,
    make_cfg,
    run_cli,
    short_trainer,
)
from hydra.utils import instantiate
from omegaconf import open_dict
from PIL import Image

from genlab.evaluation.runner import evaluate
from genlab.losses.gan_losses import epsilon_drift, gradient_penalty
from genlab.models.progressive_gan import GrowthSchedule, Progress, ProgressiveGAN
from genlab.nets import DCGANGenerator
from genlab.nets.progressive_nets import (
    ProgressiveDiscriminator,
    ProgressiveGenerator,
    ScaledConv2d,
    ScaledLinear,
    crop_to,
    downsample,
    minibatch_stddev,
    pad_to,
    stage_reals,
    upsample,
)
from genlab.train import train
from genlab.utils.checkpoint import load_model
from genlab.utils.errors import find_user_error

# 8 channels at 4x4 and 8x8, 4 at 16x16, 2 at 32x32: a few ms per iteration
TINY = [
    "model=pggan",
    "callbacks=pggan",
    "model.latent_dim=8",
    "model.generator.channel_base=64",
    "model.generator.max_channels=8",
    "data.batch_size=8",
]


def nets(**kw):
    torch.manual_seed(0)
    g = ProgressiveGenerator(
        latent_dim=8, channels=1, image_size=28, channel_base=64, max_channels=8, **kw
    )
    d = ProgressiveDiscriminator(channels=1, image_size=28, channel_base=64, max_channels=8)
    return g, d


def logged(run_dir: Path, key: str) -> dict[int, float]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r[key]) for r in csv.DictReader(f) if r.get(key)}


# --- nets --------------------------------------------------------------------------------
def test_shapes_at_every_stage_and_alpha(tmp_path):
    """28-pixel data -> nets of 4 levels (4..32); G and D at each level and alpha; the model's
    samples are always 28x28 in [0, 1]."""
    model: ProgressiveGAN = instantiate(make_cfg(tmp_path, *TINY).model)
    g, d = model.generator, model.discriminator
    assert (g.resolution, g.levels, d.levels) == (32, 4, 4)
    z = torch.randn(6, 8)
    for level in range(4):
        for alpha in (0.0, 0.3, 1.0) if level else (1.0,):
            model._set_progress(Progress(level, alpha, 0), 0)
            r = 4 * 2**level
            x = g(z)
            assert x.shape == (6, 1, r, r)
            assert d(x).shape == (6,)
            s = model.sample(5, generator=torch.Generator().manual_seed(0))
            assert s.shape == (5, 1, 28, 28) and s.min() >= 0 and s.max() <= 1
    with pytest.raises(ValueError, match="stage 32x32 got images of"):
        d(torch.zeros(2, 1, 16, 16))


def test_generator_fade_in_endpoints():
    """alpha = 0: exactly the previous stage's image, upsampled, whatever the new level's
    weights; alpha = 1: the new level alone (the old to_rgb does not matter); in between the
    lerp of the two."""
    g, _ = nets()
    z = torch.randn(5, 8)
    with torch.no_grad():
        for k in (1, 2, 3):
            g.set_progress(k - 1, 1.0)
            previous = g(z)
            g.set_progress(k, 0.0)
            at0 = g(z)
            assert torch.equal(at0, upsample(previous, 2))
            g.set_progress(k, 1.0)
            at1 = g(z)
            g.set_progress(k, 0.25)
            assert torch.allclose(g(z), 0.75 * at0 + 0.25 * at1, atol=1e-6)
            # perturb the new level: alpha 0 is unchanged; perturb the old to_rgb: alpha 1 is
            for p in [*g.blocks[k].parameters(), *g.to_rgb[k].parameters()]:
                p.add_(0.5)
            g.set_progress(k, 0.0)
            assert torch.equal(g(z), at0)
            g.set_progress(k, 1.0)
            new = g(z)
            assert not torch.allclose(new, at1)
            for p in g.to_rgb[k - 1].parameters():
                p.add_(0.5)
            assert torch.equal(g(z), new)


def test_discriminator_fade_in_endpoints_and_faded_reals():
    """D at alpha = 0 is the previous stage's D on the box-downsampled input; at alpha = 1 the
    previous level's from_rgb does not matter. The reals D sees follow the same blend."""
    _, d = nets()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        for k in (1, 2, 3):
            r = 4 * 2**k
            xr = downsample(x, 32 // r)
            d.set_progress(k - 1, 1.0)
            previous = d(downsample(xr, 2))
            d.set_progress(k, 0.0)
            assert torch.equal(d(xr), previous)
            d.set_progress(k, 1.0)
            at1 = d(xr)
            for p in d.from_rgb[k - 1].parameters():
                p.add_(0.5)
            assert torch.equal(d(xr), at1)
            d.set_progress(k, 0.0)
            assert not torch.equal(d(xr), previous)
            # the reals: box filter to r; at alpha 0 the coarser level, upsampled
            assert torch.allclose(stage_reals(x, r, 1.0), xr, atol=1e-6)
            assert torch.allclose(stage_reals(x, r, 0.0), upsample(downsample(xr, 2), 2))
            half = stage_reals(x, r, 0.5)
            assert torch.allclose(half, 0.5 * (xr + upsample(downsample(xr, 2), 2)), atol=1e-6)
    # a 2x2 box filter is the mean of each block
    y = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(downsample(y, 2).flatten(), torch.tensor([2.5, 4.5, 10.5, 12.5]))


def test_padding_to_a_power_of_two_and_back():
    """28 -> 32 by repeating the border (2 pixels each side, black for MNIST); crop undoes it."""
    x = torch.rand(3, 1, 28, 28)
    x[..., :1, :] = x[..., -1:, :] = x[..., :, :1] = x[..., :, -1:] = 0.0  # black border
    p = pad_to(x, 32)
    assert p.shape == (3, 1, 32, 32)
    assert torch.equal(crop_to(p, 28), x)
    assert torch.equal(p[..., 2:30, 2:30], x)
    assert p[..., :2, :].abs().sum() == 0 and p[..., :, 30:].abs().sum() == 0


# --- the paper's components against closed forms -----------------------------------------
def test_equalized_learning_rate_scaling_is_he_constant_at_runtime():
    """Stored weights ~ N(0, 1), multiplied in forward by sqrt(2 / fan_in); off, the same
    constant is in the stored weights. One Adam step then changes every layer's effective
    weights by the same fraction of their scale, whatever the fan-in (the point of it)."""
    torch.manual_seed(0)
    conv = ScaledConv2d(16, 32, 3)  # fan_in 144
    assert conv.scale == pytest.approx(math.sqrt(2 / 144))
    assert abs(conv.weight.std().item() - 1.0) < 0.05 and abs(conv.weight.mean().item()) < 0.05
    x = torch.randn(2, 16, 5, 5)
    expected = F.conv2d(x, conv.weight * math.sqrt(2 / 144), conv.bias, padding=1)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    plain = ScaledConv2d(16, 32, 3, equalized=False)
    assert plain.scale == 1.0
    assert abs(plain.weight.std().item() - math.sqrt(2 / 144)) < 0.006
    lin = ScaledLinear(400, 10, gain=1.0)
    assert lin.scale == pytest.approx(1 / 20)
    assert torch.allclose(lin(torch.ones(1, 400)), (lin.weight / 20).sum(1)[None], atol=1e-5)

    def relative_change(layer, x):
        before = (layer.weight * layer.scale).detach().clone()
        opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
        layer(x).square().sum().backward()
        opt.step()
        change = (layer.weight * layer.scale).detach() - before
        return (change.abs().mean() / layer.he_std).item()

    narrow, wide = ScaledLinear(4, 8), ScaledLinear(1024, 8)
    a, b = (
        relative_change(narrow, torch.randn(16, 4)),
        relative_change(wide, torch.randn(16, 1024)),
    )
    assert a == pytest.approx(1e-2, rel=0.05) and b == pytest.approx(1e-2, rel=0.05)
    narrow, wide = ScaledLinear(4, 8, equalized=False), ScaledLinear(1024, 8, equalized=False)
    a, b = (
        relative_change(narrow, torch.randn(16, 4)),
        relative_change(wide, torch.randn(16, 1024)),
    )
    assert b / a == pytest.approx(math.sqrt(1024 / 4), rel=0.1)  # plain: 16x faster in `wide`


def test_minibatch_stddev_against_a_hand_computation():
    """6 samples, group size 4 -> groups of 3 (the largest divisor of 6 not above 4): samples
    {0, 2, 4} and {1, 3, 5}. Group {0, 2, 4} has constant maps 1, 3, 5: every feature's
    population variance is 8/3; group {1, 3, 5} has 0, 0, 0 plus one pixel 6 in sample 5."""
    x = torch.zeros(6, 2, 2, 2)
    x[0], x[2], x[4] = 1.0, 3.0, 5.0
    x[5, 1, 0, 1] = 6.0
    out = minibatch_stddev(x, group_size=4)
    assert out.shape == (6, 3, 2, 2) and torch.equal(out[:, :2], x)
    first = math.sqrt(8 / 3 + 1e-8)
    # one of 8 features has values (0, 0, 6): variance 8; the other 7 have 0
    second = (math.sqrt(8 + 1e-8) + 7 * math.sqrt(1e-8)) / 8
    for i in (0, 2, 4):
        assert torch.allclose(out[i, 2], torch.full((2, 2), first))
    for i in (1, 3, 5):
        assert torch.allclose(out[i, 2], torch.full((2, 2), second))
    # a group of 1 (a batch of one image) has no spread: sqrt(eps)
    assert torch.allclose(minibatch_stddev(x[:1], 4)[0, 2], torch.full((2, 2), 1e-4))


def test_epsilon_drift_and_gradient_penalty_against_hand_computations():
    assert torch.equal(epsilon_drift(torch.tensor([1.0, -2.0, 0.5])), torch.tensor([1, 4, 0.25]))

    # critic D(x) = sum(x^2) / 2 has gradient x: the penalty is (||x_hat|| - 1)^2 at the
    # interpolate x_hat = e * real + (1 - e) * fake with e ~ U(0, 1) drawn per sample
    def critic(x):
        return x.flatten(1).pow(2).sum(1) / 2

    real, fake = torch.randn(5, 1, 3, 3), torch.randn(5, 1, 3, 3)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    e = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(7))
    x_hat = e * real + (1 - e) * fake
    assert torch.allclose(gp, (x_hat.flatten(1).norm(dim=1) - 1).pow(2), atol=1e-5)


# --- the schedule ------------------------------------------------------------------------
def test_schedule_in_images_shown():
    s = GrowthSchedule(levels=3, fade_images=40, stabilise_images=20)
    got = [(p.resolution, p.alpha, p.phase) for p in map(s.at, (0, 19, 20, 30, 59, 60, 79))]
    assert got == [
        (4, 1, 0),
        (4, 1, 0),
        (8, 0, 1),
        (8, 0.25, 1),
        (8, 39 / 40, 1),
        (8, 1, 2),
        (8, 1, 2),
    ]
    assert [(p.resolution, p.alpha) for p in map(s.at, (80, 100, 120, 10**9))] == [
        (16, 0.0),
        (16, 0.5),
        (16, 1.0),
        (16, 1.0),
    ]
    assert s.fade_start(1) == 20 and s.fade_start(2) == 80


def test_stage_transitions_at_the_configured_image_counts(tmp_path):
    """8 images per step, 4x4 for 16 images (2 steps), then fade-ins of 32 (4 steps) and
    stable phases of 16: the logged resolution and alpha at each step; a grid (run directory
    and W&B) and a checkpoint at each stage's end; a stage checkpoint samples at its stage;
    Adam's state is cleared at every phase change (last.ckpt's step counters count from the
    last change)."""
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY,
            "model.stabilise_images=16",
            "model.fade_images=32",
            "trainer.limit_train_batches=10",
            "trainer.max_epochs=2",
            "trainer.max_steps=20",
            "test=false",
            "logger=[csv,wandb]",
        )
    )
    run = Path(summary["run_dir"])
    assert summary["global_step"] == 20
    expected = (
        [(4, 1.0)] * 2
        + [(8, a) for a in (0, 0.25, 0.5, 0.75)]
        + [(8, 1.0)] * 2
        + [(16, a) for a in (0, 0.25, 0.5, 0.75)]
        + [(16, 1.0)] * 2
        + [(32, a) for a in (0, 0.25, 0.5, 0.75)]
        + [(32, 1.0)] * 2
    )
    resolution, alpha = logged(run, "train/resolution"), logged(run, "train/alpha")
    images = logged(run, "train/images_shown")
    assert sorted(resolution) == list(range(20))
    assert [(resolution[s], alpha[s]) for s in range(20)] == expected
    assert [images[s] for s in range(20)] == [8.0 * s for s in range(20)]

    names = {p.name for p in (run / "images").glob("stage_*.png")}
    assert names == {"stage_04x04.png", "stage_08x08.png", "stage_16x16.png", "stage_32x32.png"}
    (offline,) = (run / "wandb").glob("offline-run-*")
    logged_grids = {p.name.split("_")[1] for p in offline.rglob("media/images/val/stage_*.png")}
    assert logged_grids == {"04x04", "08x08", "16x16", "32x32"}
    ckpts = {p.name for p in (run / "checkpoints").glob("stage_*.ckpt")}
    assert ckpts == {"stage_04x04.ckpt", "stage_08x08.ckpt", "stage_16x16.ckpt"}
    assert load(run / "checkpoints" / "stage_08x08.ckpt")["global_step"] == 8

    model, _ = load_model(run / "checkpoints" / "stage_08x08.ckpt")
    assert model.progress.resolution == 8 and model.progress.alpha == 1.0
    assert model.generator_ema.current_resolution == 8
    x = model.sample(4, generator=torch.Generator().manual_seed(0))  # (4, 1, 28, 28)
    # 8x8 upsampled 4x to 32, cropped by 2: constant 4x4 blocks starting at pixel 2
    blocks = x[..., 2:26, 2:26].unfold(2, 4, 4).unfold(3, 4, 4)  # (4, 1, 6, 6, 4, 4)
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))
    assert x.std() > 0

    opt_g, opt_d = load(summary["last_ckpt"])["optimizer_states"]
    for opt in (opt_g, opt_d):  # phases changed at steps 2, 6, 8, 12, 14, 18
        assert {float(s["step"]) for s in opt["state"].values()} == {2.0}


def test_without_optimizer_resets_each_level_joins_adam_when_it_first_runs(tmp_path):
    """reset_optimizers=false: Adam counts, per parameter, the steps since it first got a
    gradient: level 0's block all 12 steps, level 1 from its fade-in (step 2), level 2 from
    step 8; the 4x4 to_rgb ran only until 8x8 was faded in (steps 0-5)."""
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY,
            "model.stabilise_images=16",
            "model.fade_images=32",
            "model.reset_optimizers=false",
            "trainer.limit_train_batches=6",
            "trainer.max_epochs=2",
            "test=false",
        )
    )
    model, _ = load_model(summary["last_ckpt"])
    names = [n for n, _ in model.generator.named_parameters()]
    opt_g = load(summary["last_ckpt"])["optimizer_states"][0]
    steps = {names[int(i)]: float(s["step"]) for i, s in opt_g["state"].items()}
    assert steps["blocks.0.dense.weight"] == 12.0
    assert steps["blocks.1.conv1.weight"] == 10.0
    assert steps["blocks.2.conv2.bias"] == 4.0
    assert steps["to_rgb.0.weight"] == 6.0
    assert not any(n.startswith(("blocks.3.", "to_rgb.3.")) for n in steps)  # never ran


# --- the loop ----------------------------------------------------------------------------
class WatchGeneratorStep(L.Callback):
    """At every G update of a real run: D is frozen and has no gradient, G's active levels
    have one, and the G step leaves D's weights unchanged."""

    def __init__(self) -> None:
        self.g_steps, self.resolutions = 0, set()
        self.snapshot: list[torch.Tensor] | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if optimizer is not trainer.optimizers[0]:
            return
        d, g = pl_module.discriminator, pl_module.generator
        assert not any(p.requires_grad for p in d.parameters())
        assert all(p.grad is None for p in d.parameters())
        assert all(p.grad is not None for p in g.blocks[g.level].parameters())
        self.resolutions.add(g.current_resolution)
        self.snapshot = [p.detach().clone() for p in d.parameters()]

    def on_train_batch_end(self, trainer, pl_module, *args):
        d = list(pl_module.discriminator.parameters())
        assert all(p.requires_grad for p in d)
        assert all(torch.equal(a, b) for a, b in zip(self.snapshot, d, strict=True))
        self.g_steps += 1


def test_discriminator_is_frozen_and_untouched_in_the_generator_step(tmp_path):
    cfg = make_cfg(tmp_path, *TINY, "model.stabilise_images=16", "model.fade_images=16")
    model, datamodule = instantiate(cfg.model), instantiate(cfg.data)
    watch = WatchGeneratorStep()
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    trainer = short_trainer(7, watch, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    assert watch.g_steps == 7 and watch.resolutions == {4, 8, 16}
    d_after = list(model.discriminator.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(d_before, d_after, strict=True))


def test_resume_inside_a_fade_in_is_exact(tmp_path):
    """10 straight iterations == 5 (one epoch) + resume, and == 4 (mid-epoch) + resume, both
    stops inside the 8x8 fade-in (steps 2-7): G, D, EMA, images_shown and both Adam states
    bit-equal (WGAN-GP with the drift term, optimizer resets at steps 2 and 8)."""
    common = [
        *FAST,
        *TINY,
        "model.stabilise_images=16",
        "model.fade_images=48",
        "trainer.limit_train_batches=5",
        "test=false",
    ]
    straight = train(make_cfg(tmp_path / "a", *common, "trainer.max_epochs=2"))
    a = load(straight["last_ckpt"])
    assert a["global_step"] == 10 and int(a["state_dict"]["images_shown"]) == 9 * 8
    for name, stop in (("epoch", "trainer.max_epochs=1"), ("mid", "trainer.max_steps=4")):
        first = train(make_cfg(tmp_path / name, *common, stop))
        alpha = logged(Path(first["run_dir"]), "train/alpha")
        assert 0 < alpha[max(alpha)] < 1  # stopped inside the fade-in
        resumed = train(
            make_cfg(
                tmp_path / f"{name}_resumed",
                *common,
                "trainer.max_epochs=2",
                f"ckpt_path={first['last_ckpt']}",
            )
        )
        assert_same_state(a, load(resumed["last_ckpt"]))
        steps = sorted(logged(Path(resumed["run_dir"]), "train/alpha"))
        assert steps == list(range(load(first["last_ckpt"])["global_step"], 10))


# --- configs, sampling, eval -------------------------------------------------------------
def user_error(build) -> str:
    """The GenlabError message behind what `build()` raised (Hydra wraps it)."""
    with pytest.raises(Exception) as info:
        build()
    err = find_user_error(info.value)
    assert err is not None, info.value
    return str(err)


def test_bad_options_are_refused_naming_them(tmp_path):
    cfg = make_cfg(tmp_path, *TINY)
    dcgan = DCGANGenerator(latent_dim=8, channels=1, image_size=28)
    msg = user_error(lambda: instantiate(cfg.model, generator=dcgan))
    assert "needs a ProgressiveGenerator: use model=pggan" in msg
    assert "model.fade_images=-1" in user_error(lambda: instantiate(cfg.model, fade_images=-1))
    conditional = make_cfg(tmp_path, *TINY, "model.num_classes=10").model
    assert "set model.num_classes=0" in user_error(lambda: instantiate(conditional))


@pytest.mark.parametrize("command", [["experiment=pggan_mnist"], ["experiment=pggan_celeba"]])
def test_recipes_compose_and_build(tmp_path, command):
    cfg = make_cfg(tmp_path, *command)
    model: ProgressiveGAN = instantiate(cfg.model)
    assert model.n_critic == 1 and model.reset_optimizers
    assert cfg.model.optimizer_g.betas == [0.0, 0.99] and cfg.model.optimizer_g.lr == 1e-3
    assert "stage_snapshots" in cfg.callbacks
    if cfg.data.image_size == 28:  # pggan_mnist: 4 -> 32, 32x32 stable by step 600
        assert model.loss == "bce" and model.drift_weight == 0.0
        assert model.generator.levels == 4 and model.resolution == 32
        per_step = cfg.data.batch_size
        assert model.schedule.fade_start(3) + cfg.model.fade_images == 600 * per_step
        assert cfg.trainer.max_steps > 600
        assert model.sample(2).shape == (2, 1, 28, 28)
    else:  # pggan_celeba: the paper's 128x128 nets, loss and schedule
        assert model.loss == "wgan_gp" and model.drift_weight == 0.001
        assert model.generator.levels == 6 and cfg.data.batch_size == 16
        assert cfg.model.fade_images == cfg.model.stabilise_images == 600_000
        assert [m.conv1.weight.shape[0] for m in model.generator.blocks[1:]] == [
            512,
            512,
            512,
            256,
            128,
        ]
        total = cfg.trainer.max_steps * cfg.data.batch_size
        assert model.schedule.at(total).resolution == 128
        assert model.sample(2).shape == (2, 3, 128, 128)
        instantiate(cfg.data)  # the CelebA datamodule builds (no files needed until setup)


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory) -> str:
    """A barely trained domain classifier: enough for the metrics' plumbing, not for quality."""
    summary = train(
        make_cfg(
            tmp_path_factory.mktemp("clf"),
            *FAST,
            *TINY_CLASSIFIER,
        )
    )
    return summary["last_ckpt"]


@pytest.mark.slow
def test_sample_and_eval_a_checkpoint_of_an_intermediate_stage(tmp_path, classifier_ckpt):
    """`python -m genlab.sample` and `python -m genlab.eval tasks=[generation,report]` on the
    16x16 stage checkpoint of a run that went on to 32x32: 28-pixel samples made of 2x2 blocks
    (16 -> 32 nearest, cropped at an even offset), metrics against the real test digits."""
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY,
            "model.stabilise_images=16",
            "model.fade_images=16",
            "trainer.limit_train_batches=10",
            "trainer.max_epochs=1",
            "test=false",
        )
    )
    ckpt = Path(summary["run_dir"]) / "checkpoints" / "stage_16x16.ckpt"
    run_cli(
        f"ckpt_path={ckpt}", "n=8", "save_individual=true", cwd=tmp_path, module="genlab.sample"
    )
    [img] = Path(summary["run_dir"]).glob("samples/*/images/000000.png")
    pixels = torch.from_numpy(np.array(Image.open(img).convert("L"))).float()  # (28, 28)
    assert torch.equal(pixels[0::2, 0::2], pixels[1::2, 1::2]) and pixels.std() > 0

    cfg = make_cfg(
        tmp_path,
        f"ckpt_path={ckpt}",
        "tasks=[generation,report]",
        "trainer=cpu",
        f"tasks.generation.classifier_ckpt={classifier_ckpt}",
        "tasks.generation.n_samples=40",
        "tasks.generation.metrics=[fid,kid,precision_recall]",
        config_name="eval",
    )
    out = Path(summary["run_dir"]) / "eval" / "stage16"
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    evaluate(cfg)
    result = json.loads((out / "metrics.json").read_text())
    values, prov = (
        result["generation"]["samples"]["values"],
        result["generation"]["samples"]["provenance"],
    )
    assert prov["image_size"] == 28 and prov["n_fake"] == 40
    assert math.isfinite(values["fid_domain"]) and 0 <= values["precision_domain"] <= 1
    assert (out / "report" / "samples.png").is_file()
    # the report shows the run's stage grids, the same files the run wrote
    report = (out / "report" / "report.md").read_text()
    for stage in ("04x04", "08x08", "16x16"):
        name = f"stage_{stage}.png"
        assert f"]({name})" in report
        written = Path(summary["run_dir"]) / "images" / name
        assert (out / "report" / name).read_bytes() == written.read_bytes()
