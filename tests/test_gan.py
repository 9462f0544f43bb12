"""GANs: losses against closed forms, nets, step counting, the D-frozen property, precision,
divergence handling, exact resume, config composition. Tiny nets, few steps, real training."""

from __future__ import annotations

import csv
import json
import math

import lightning as L
import pytest
import torch
from conftest import FAST, assert_same_state, load, make_cfg, run_cli, run_dirs, short_trainer
from hydra.utils import instantiate
from runlogs import assert_resumed_at

from genlab.losses.gan_losses import discriminator_loss, generator_loss, gradient_penalty
from genlab.models.gan import GAN, frozen
from genlab.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from genlab.train import train
from genlab.utils.errors import GenlabError

# a GAN small enough to take a few ms per iteration
TINY = [
    "model=gan",
    "model.latent_dim=8",
    "model.generator.hidden_dims=[32]",
    "model.discriminator.hidden_dims=[32]",
    "data.batch_size=16",
]


# --- losses ------------------------------------------------------------------------------
def test_losses_match_closed_forms_at_known_points():
    zero = torch.zeros(3)
    log2 = math.log(2.0)
    # D undecided (logit 0): BCE pays log 2 on each side; the G losses are +-log 2
    assert torch.allclose(discriminator_loss(zero, zero, "bce"), torch.full((3,), 2 * log2))
    assert torch.allclose(generator_loss(zero, "bce"), torch.full((3,), log2))
    assert torch.allclose(generator_loss(zero, "minimax"), torch.full((3,), -log2))
    assert torch.allclose(discriminator_loss(zero, zero, "hinge"), torch.full((3,), 2.0))
    assert torch.allclose(discriminator_loss(zero, zero, "ls"), torch.full((3,), 0.5))
    # one-sided smoothing: the real term is BCE against 0.9, minimised at logit log(0.9/0.1)
    best = torch.full((1,), math.log(9.0), requires_grad=True)
    discriminator_loss(best, torch.full((1,), -50.0), "bce", real_target=0.9).sum().backward()
    assert abs(best.grad.item()) < 1e-6
    # saturation: once D rejects fakes confidently, minimax gives G almost no gradient,
    # the non-saturating loss a strong one (the reason it is the default)
    fake = torch.full((1,), -8.0, requires_grad=True)
    (g_mm,) = torch.autograd.grad(generator_loss(fake, "minimax").sum(), fake)
    (g_ns,) = torch.autograd.grad(generator_loss(fake, "bce").sum(), fake)
    assert abs(g_mm.item()) < 1e-3 < 0.99 < abs(g_ns.item())


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5, so the penalty is (5 - 1)^2 = 16 everywhere

    def critic(x):
        return x.flatten(1) @ w

    real, fake = torch.randn(6, 1, 1, 2), torch.randn(6, 1, 1, 2)
    assert torch.allclose(gradient_penalty(critic, real, fake), torch.full((6,), 16.0))


# --- nets --------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 32, 28])
def test_dcgan_shapes_and_paper_init(size):
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=100, channels=3, image_size=size, base_channels=8)
    d = DCGANDiscriminator(channels=3, image_size=size, base_channels=8)
    x = g(torch.randn(5, 100))
    assert x.shape == (5, 3, size, size) and x.abs().max() <= 1.0
    assert d(x).shape == (5,)
    convs = [m.weight for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    std = torch.cat([w.flatten() for w in convs]).std().item()
    assert 0.018 < std < 0.022
    bns = [m for m in d.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(abs(m.weight.mean().item() - 1.0) < 0.02 for m in bns)
    # no batch norm right after D's input conv, none before G's Tanh
    assert not isinstance(d.body[1], torch.nn.BatchNorm2d)
    assert isinstance(g.body[-1], torch.nn.Tanh) and isinstance(
        g.body[-2], torch.nn.ConvTranspose2d
    )


def test_dcgan_rejects_other_sizes_naming_the_option():
    with pytest.raises(GenlabError, match=r"data\.image_size"):
        DCGANGenerator(latent_dim=8, channels=1, image_size=48)


def test_conditional_nets_use_the_label():
    torch.manual_seed(0)
    g = MLPGenerator(latent_dim=4, channels=1, image_size=8, hidden_dims=[16], num_classes=3)
    d = MLPDiscriminator(channels=1, image_size=8, hidden_dims=[16], num_classes=3)
    z = torch.randn(2, 4).repeat(1, 1)
    a, b = g(z, torch.tensor([0, 0])), g(z, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    assert not torch.allclose(d(a, torch.tensor([0, 0])), d(a, torch.tensor([2, 2])))


def test_frozen_restores_flags_even_when_the_body_raises():
    net = torch.nn.Linear(2, 2)
    net.bias.requires_grad_(False)
    with pytest.raises(RuntimeError), frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
        raise RuntimeError("boom")
    assert net.weight.requires_grad and not net.bias.requires_grad


# --- training loop -----------------------------------------------------------------------
class WatchGeneratorStep(L.Callback):
    """Checks, at every G update of a real run, that D is frozen, has no gradient, and that
    the G step leaves D's weights unchanged."""

    def __init__(self) -> None:
        self.g_steps = 0
        self.snapshot: list[torch.Tensor] | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if optimizer is not trainer.optimizers[0]:
            return
        d = pl_module.discriminator
        assert not any(p.requires_grad for p in d.parameters())
        assert all(p.grad is None for p in d.parameters())
        assert all(p.grad is not None for p in pl_module.generator.parameters())
        self.snapshot = [p.detach().clone() for p in d.parameters()]

    def on_train_batch_end(self, trainer, pl_module, *args):
        d = list(pl_module.discriminator.parameters())
        assert all(p.requires_grad for p in d)
        assert all(torch.equal(a, b) for a, b in zip(self.snapshot, d, strict=True))
        self.g_steps += 1


def test_discriminator_is_frozen_and_untouched_in_the_generator_step(tmp_path):
    cfg = make_cfg(tmp_path, *FAST, *TINY, "train=true", "test=false", "++trainer.max_steps=3")
    model = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)
    watch = WatchGeneratorStep()
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    trainer = short_trainer(3, watch, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    assert watch.g_steps == 3
    # ... while D's own steps do change it
    d_after = list(model.discriminator.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(d_before, d_after, strict=True))


def test_max_steps_counts_gan_iterations(tmp_path):
    """max_steps=10 -> exactly 10 G updates and n_critic * 10 D updates (Adam's own step
    counters), schedulers stepped 10 times, one logged step per iteration; under bf16-mixed
    autocast with clipping (32-true counts are checked in test_resume_is_exact)."""
    precision = "bf16-mixed"
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY,
            "model.n_critic=2",
            "model.gradient_clip_val=1.0",
            "+model.scheduler_g={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}",
            "trainer.max_epochs=10",
            "trainer.limit_train_batches=5",  # so step 10 ends epoch 2 and last.ckpt is saved
            "++trainer.max_steps=10",
            f"trainer.precision={precision}",
            "test=false",
            "+callbacks.sample_grid.every_n_steps=5",
            "+callbacks.prior_interpolation._target_=genlab.callbacks.PriorInterpolation",
            "+callbacks.prior_interpolation.every_n_steps=5",
        )
    )
    assert summary["status"] == "completed" and summary["global_step"] == 10
    images = tmp_path / "run" / "images"
    for step in (5, 10):  # step-based grids count iterations too
        assert (images / f"samples_s{step:08d}.png").is_file()
        assert (images / f"prior_interpolation_spherical_s{step:08d}.png").is_file()
    ckpt = load(summary["last_ckpt"])
    opt_g, opt_d = ckpt["optimizer_states"]
    assert {float(s["step"]) for s in opt_g["state"].values()} == {10.0}
    assert {float(s["step"]) for s in opt_d["state"].values()} == {20.0}
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 10
    assert opt_g["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.5**10)
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        steps = {int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_d")}
    assert steps == set(range(10))
    for key in ("train/d_real", "train/d_fake", "train/grad_norm_d", "train/grad_norm_g"):
        assert math.isfinite(summary["metrics"][key]), key


def test_16_mixed_on_cpu(tmp_path):
    """fp16 autocast with a GradScaler, on CPU. Lightning 2.6 runs `trainer.precision=16-mixed`
    on a CPU as bf16-mixed (fp16 autocast is not supported there, it warns), so the real
    fp16 path is built with Lightning's own MixedPrecision plugin and a GradScaler whose first
    scale (2^20) overflows D's fp16 gradients. The layers compute in float16; every skipped
    update of G or D halves the one scaler's scale, so scale = 2^20 / 2^(12 - G steps - D
    steps taken): both nets step through the same scaler, and at least one D step was
    skipped (3 to 4 of 6 over seeds 0-2)."""
    scaler = "{_target_:torch.amp.GradScaler,device:cpu,init_scale:1048576.0}"
    plugin = (
        "{_target_:lightning.pytorch.plugins.MixedPrecision,precision:16-mixed,device:cpu,"
        f"scaler:{scaler}}}"
    )
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY,
            "model.gradient_clip_val=1.0",
            "trainer.limit_train_batches=3",
            "++trainer.max_steps=6",
            "trainer.precision=null",
            f"+trainer.plugins=[{plugin}]",
            "test=false",
            "+callbacks.probe._target_=probes.LayerProbe",
            f"+callbacks.probe.out={tmp_path}/probe.json",
        )
    )
    assert summary["global_step"] == 6
    assert json.loads((tmp_path / "probe.json").read_text())["dtypes"] == ["torch.float16"]
    ckpt = load(summary["last_ckpt"])
    steps = [
        max([float(s["step"]) for s in opt["state"].values()] or [0.0])
        for opt in ckpt["optimizer_states"]
    ]
    skipped = 12 - sum(steps)
    assert steps[1] < 6 and skipped >= 1, steps
    assert ckpt["MixedPrecision"]["scale"] == 2.0**20 * 0.5**skipped
    for v in ckpt["state_dict"].values():
        assert torch.isfinite(v.float()).all()


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # After 4 iterations (one epoch, checkpointed) D's learning rate jumps to ~1e26.
    cfg = make_cfg(
        tmp_path,
        *FAST,
        *TINY,
        "trainer.max_epochs=3",
        "model.nan_check_every_n_steps=1",
        "+model.scheduler_d={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:4,gamma:1e30}",
    )
    with pytest.raises(GenlabError, match=r"diverged: at step (\d+) .*train/loss_d=") as err:
        train(cfg)
    step = int(err.value.args[0].split("at step ")[1].split()[0])
    assert 4 <= step < 8
    ckpt = load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(v.float()).all() for v in ckpt["state_dict"].values())


def test_resume_is_exact(tmp_path):
    """2 epochs straight == 1 epoch, stop, resume for the 2nd: every weight (G, D, EMA, BN
    stats), both optimizer states and both learning-rate schedulers (StepLR per iteration, so
    the rates differ at the stop and after it) equal bit for bit; the resumed run started at
    the checkpoint's step 4 (it logged steps 4-7 only, with the uninterrupted run's values).
    Seen failing with `ckpt_path=None` forced in training.py's trainer.fit (a restart from 0
    lands on the same bits, but logs steps 0-7)."""
    sched = "{_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:3,gamma:0.5}"
    common = [
        *FAST,
        *TINY,
        "test=false",
        "model.n_critic=2",
        "model.loss=wgan_gp",
        f"model.scheduler_g={sched}",
        f"model.scheduler_d={sched}",
    ]
    straight = train(make_cfg(tmp_path / "a", *common, "trainer.max_epochs=2"))
    first = train(make_cfg(tmp_path / "b", *common, "trainer.max_epochs=1"))
    resumed = train(
        make_cfg(
            tmp_path / "c", *common, "trainer.max_epochs=2", f"ckpt_path={first['last_ckpt']}"
        )
    )
    a, b, c = load(straight["last_ckpt"]), load(resumed["last_ckpt"]), load(first["last_ckpt"])
    assert a["global_step"] == b["global_step"] == 8 and c["global_step"] == 4
    # 8 iterations = 8 G updates and n_critic * 8 D updates, in both runs
    for ckpt in (a, b):
        opt_g, opt_d = ckpt["optimizer_states"]
        assert {float(s["step"]) for s in opt_g["state"].values()} == {8.0}
        assert {float(s["step"]) for s in opt_d["state"].values()} == {16.0}
        # both schedulers stepped once per iteration: 8 steps, lr halved at 3 and 6
        assert [s["last_epoch"] for s in ckpt["lr_schedulers"]] == [8, 8]
        assert [o["param_groups"][0]["lr"] for o in ckpt["optimizer_states"]] == [5e-5, 5e-5]
    assert [o["param_groups"][0]["lr"] for o in c["optimizer_states"]] == [1e-4, 1e-4]
    assert any(k.startswith("generator_ema.") for k in a["state_dict"])
    assert_same_state(a, b)
    assert_resumed_at(straight["run_dir"], resumed["run_dir"], 4, "train/loss_d")
    # and the weights did move in the resumed epoch
    assert not torch.equal(
        c["state_dict"]["generator.body.0.weight"], b["state_dict"]["generator.body.0.weight"]
    )


def test_ddp_two_processes_train_and_end_with_identical_weights(tmp_path):
    """trainer=ddp_sim (2 CPU processes, plain `strategy: ddp`): no unused-parameter error,
    and G, D and the EMA are bit-identical on both ranks at the end."""
    fast = [o for o in FAST if o != "trainer=cpu"]
    run_cli(
        *fast,
        *TINY,
        "trainer=ddp_sim",
        "trainer.max_epochs=2",
        "test=false",
        "+callbacks.weights_digest._target_=genlab.callbacks.WeightsDigest",
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    (run,) = run_dirs(tmp_path)
    rank0 = json.loads((run / "weights_rank0.json").read_text())
    rank1 = json.loads((run / "weights_rank1.json").read_text())
    assert rank0["global_step"] == rank1["global_step"] == 2 * 4
    assert set(rank0["digests"]) == {"generator", "discriminator", "generator_ema"}
    assert rank0 == rank1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"


# --- learning ----------------------------------------------------------------------------
# A GAN's trajectory is chaotic: another CPU's rounding, thread count or seed gives another
# run, so learning is asserted over several seeds, on statistics with measured margins.
# The recipe: a small MLP GAN (G 32-128-256-784 with batch norm, D 784-256-128-1) that
# learns the digits within 496 iterations from any seed. Dropout in D (as in Goodfellow et
# al. 2014) keeps D from locking onto the few modes G has found early; without it, runs of
# this size dropped whole digit classes on some seeds.
LEARNER = [
    "model=gan",
    "model.latent_dim=32",
    "model.generator.hidden_dims=[128,256]",
    "model.generator.batch_norm=true",
    "model.generator.activation=leaky_relu",
    "model.discriminator.hidden_dims=[256,128]",
    "model.discriminator.dropout=0.3",
    "model.optimizer_g.lr=1e-3",
    "model.optimizer_d.lr=5e-4",
    "data.batch_size=64",
]
LEARNING_SEEDS = (0, 1, 2)
LEARNING_ITERATIONS = 496


def digit_judge(datamodule) -> tuple[torch.nn.Module, float, torch.Tensor]:
    """A digit classifier trained here, in plain PyTorch, on the real training digits: it
    shares no code with the GAN. An MLP 784-64-10, 120 full-batch Adam steps (so it depends
    on no data order). Returns it, its validation accuracy and the validation digits."""

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        data = datamodule.dataset(split)
        x = torch.stack([data[i][0] for i in range(len(data))])  # (n, 1, 28, 28)
        return x, torch.tensor([int(data[i][1]) for i in range(len(data))])

    (x, y), (x_val, y_val) = tensors("train"), tensors("val")
    torch.manual_seed(0)
    clf = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    opt = torch.optim.Adam(clf.parameters(), 3e-3)
    for _ in range(120):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf(x), y).backward()
        opt.step()
    with torch.no_grad():
        accuracy = (clf(x_val).argmax(1) == y_val).float().mean().item()
    return clf.eval(), accuracy, x_val


def class_statistics(probs: torch.Tensor) -> dict:
    """What a classifier's outputs (n, 10) say about a set of images: `score`, the
    Inception-style exp E_x KL(p(y|x) || p(y)) (1 when every image gets the same class
    distribution, up to 10 for confident predictions spread evenly over the classes);
    `classes`, the effective number of classes exp H(p(y)) of the mean prediction (1 for a
    GAN collapsed onto one digit, 10 for balanced ones); `counts` of the predicted classes."""
    marginal = probs.mean(0, keepdim=True)  # (1, 10)
    kl = (probs * (probs.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1)
    entropy = -(marginal * marginal.clamp_min(1e-12).log()).sum()
    return {
        "score": float(kl.mean().exp()),
        "classes": float(entropy.exp()),
        "counts": torch.bincount(probs.argmax(1), minlength=10).tolist(),
    }


def gan_learning_statistics(
    tmp_path, *overrides: str, seeds=LEARNING_SEEDS, iterations: int = LEARNING_ITERATIONS
) -> dict:
    """Train LEARNER (+ `overrides`) for `iterations` iterations from each seed, in this
    process, and rate 500 samples of each run's sampling G (its EMA, as the run's grids
    and eval use) with `digit_judge`; also the untrained G of the first seed, and the real
    validation digits."""
    cfg = make_cfg(tmp_path, "trainer=cpu", *LEARNER, *overrides)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    clf, accuracy, x_val = digit_judge(datamodule)
    with torch.no_grad():
        stats = {"judge_accuracy": accuracy, "real": class_statistics(clf(x_val).softmax(1))}
    stats["runs"] = []
    for seed in seeds:
        cfg = make_cfg(tmp_path, "trainer=cpu", *LEARNER, *overrides, f"seed={seed}")
        L.seed_everything(seed)
        model: GAN = instantiate(cfg.model)
        if "before" not in stats:
            with torch.no_grad():
                x = model.eval().sample(500, generator=torch.Generator().manual_seed(1))
                stats["before"] = class_statistics(clf(x).softmax(1))
            model.train()
        trainer = short_trainer(iterations, max_epochs=-1, limit_val_batches=0)
        trainer.fit(model, datamodule=instantiate(cfg.data))
        assert trainer.global_step == iterations
        with torch.no_grad():
            x = model.eval().sample(500, generator=torch.Generator().manual_seed(1))
            stats["runs"].append({"seed": seed, **class_statistics(clf(x).softmax(1))})
    return stats


def check_gan_learned(stats: dict) -> None:
    """The learning test's assertions; a function so that the same checks can be run on
    deliberately broken GANs."""
    assert stats["judge_accuracy"] > 0.88 and stats["real"]["score"] > 6.0, stats  # sound judge
    assert stats["before"]["score"] < 1.3, stats["before"]  # untrained: one "class" to it
    runs = stats["runs"]
    assert min(r["score"] for r in runs) > 2.5, runs  # confident digits, spread over classes
    assert min(r["classes"] for r in runs) > 6.0, runs  # no run collapsed onto a few digits


def test_training_produces_digits_an_independent_classifier_recognises(tmp_path):
    """Three runs of LEARNER (seeds 0-2, 496 iterations each), rated by `digit_judge`.

    Measured with this code over seeds 0-9, each with 1 and with 2 threads (20 different
    trajectories: the thread count alone changes every run): per run, score 3.55-4.43 (mean
    4.0) and 7.8-9.3 effective classes; the untrained G scores 1.0 with 1.0 class (the judge
    reads all its samples as one digit); real validation digits score 8.1, judge accuracy
    0.93. The bounds (2.5, 6.0) sit 1.0 and 1.8 below the lowest run. Per-class counts are
    not asserted: one class fell to 0 or 1 of 500 on 2 of those 20 runs (the judge's hard
    decisions on blurry strokes make them fragile; the effective classes are not).

    A GAN that does not learn fails it: with G's learning rate 0, D's learning rate 0, D's
    step skipped, G's gradient cut (G's loss on detached fakes), or G's loss sign flipped,
    every run scored 1.0 with 1.0 class."""
    check_gan_learned(gan_learning_statistics(tmp_path))


def test_the_learning_check_fails_for_a_generator_that_does_not_learn(tmp_path):
    """The same check on the same recipe with G's learning rate at 0 (one seed): G keeps its
    initial weights, the judge reads every sample as one digit, and the check fails.
    100 iterations, not 496: with G frozen only its batch-norm statistics move (momentum 0.1:
    settled well within 100). Measured (2-core CPU, 1 thread): score 1.000-1.001 and
    1.001-1.004 classes for seeds 0-4 at 100 iterations, 1.0 and 1.001 for seed 0 at 496.
    Seen failing with G's optimizer built with lr=1e-3, the option ignored (3.3 classes)."""
    stats = gan_learning_statistics(tmp_path, "model.optimizer_g.lr=0", seeds=(0,), iterations=100)
    assert stats["runs"][0]["classes"] < 1.5 and stats["runs"][0]["score"] < 1.3, stats
    with pytest.raises(AssertionError):
        check_gan_learned(stats)


# --- sampling ----------------------------------------------------------------------------
def test_sampling_uses_ema_and_returns_unit_range(tmp_path):
    cfg = make_cfg(tmp_path, *TINY, "model=cgan")
    model: GAN = instantiate(cfg.model)
    assert model.num_classes == 10
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)  # G and its EMA now differ
    gen = torch.Generator().manual_seed(0)
    x = model.sample(12, generator=gen)
    assert x.shape == (12, 1, 28, 28) and x.min() >= 0.0 and x.max() <= 1.0
    z = model.sample_latent(12, generator=torch.Generator().manual_seed(0))
    y = model.default_labels(12)
    assert torch.equal(y, torch.arange(12) % 10)
    ema_out = (model.generator_ema(z, y) + 1) / 2
    assert torch.allclose(x, ema_out.clamp(0, 1))
    assert not torch.allclose(x, ((model.generator(z, y) + 1) / 2).clamp(0, 1))


def test_inversion_finds_a_code_that_reproduces_a_sample(tmp_path):
    torch.manual_seed(0)
    model: GAN = instantiate(make_cfg(tmp_path, *TINY).model).eval()
    gen = torch.Generator().manual_seed(3)
    x = model.sample(8, generator=gen)  # images G can make exactly
    z = model.invert(x, steps=300, generator=torch.Generator().manual_seed(4))
    start = model.decode(model.sample_latent(8, generator=torch.Generator().manual_seed(4)))
    with torch.no_grad():
        err_start = (start - x).pow(2).mean()
        err = (model.decode(z) - x).pow(2).mean()
    assert err < 0.05 * err_start, (err, err_start)
    assert not any(p.requires_grad for p in model.generator_ema.parameters())


def test_conditional_gan_refuses_data_without_classes(tmp_path):
    cfg = make_cfg(tmp_path, *TINY, "model=cgan")
    model: GAN = instantiate(cfg.model)
    with pytest.raises(GenlabError, match="class-conditional"):
        model._labels(torch.zeros(4, 40))


# --- configs -----------------------------------------------------------------------------
def test_dcgan_celeba_command_composes_into_the_paper_recipe(tmp_path):
    """`python -m genlab.train model=dcgan data=celeba trainer=gpu`, experiment=dcgan_celeba."""
    for overrides in (["model=dcgan", "data=celeba", "trainer=gpu"], ["experiment=dcgan_celeba"]):
        cfg = make_cfg(tmp_path, *overrides)
        assert cfg.data.batch_size == 128 and cfg.data.image_size == 64 and cfg.data.channels == 3
        assert cfg.trainer.accelerator == "gpu"
        assert cfg.model.latent_dim == 100
        for opt in (cfg.model.optimizer_g, cfg.model.optimizer_d):
            assert opt._target_ == "torch.optim.Adam" and opt.lr == 2e-4 and opt.betas[0] == 0.5
        model = instantiate(cfg.model)
        assert isinstance(model.generator, DCGANGenerator)
        assert model.generator.body[0].out_channels == 8 * 64  # 4x4x512 at the bottom
        assert model.sample(2).shape == (2, 3, 64, 64)
        assert model.discriminator(torch.zeros(2, 3, 64, 64)).shape == (2,)
        instantiate(cfg.data)  # the CelebA datamodule builds (no files needed until setup)


@pytest.mark.parametrize("experiment", ["gan_mnist", "dcgan_mnist", "cgan_mnist"])
def test_mnist_experiments_compose_and_build(tmp_path, experiment):
    cfg = make_cfg(tmp_path, f"experiment={experiment}")
    model = instantiate(cfg.model)
    assert model.sample(2).shape == (2, 1, 28, 28)
    assert cfg.callbacks.sample_grid.every_n_steps > 0
