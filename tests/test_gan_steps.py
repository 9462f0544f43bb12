"""The GAN loop's bookkeeping in closed form, without a Trainer run: the noise seed of an
iteration, the EMA update with its warm-up, and the trainer options the GAN takes over."""

from __future__ import annotations

import copy
import tempfile
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import make_cfg
from hydra.utils import instantiate

from genlab.models.gan import GAN
from genlab.models.genlab_module import Diverged
from genlab.utils.errors import GenlabError

TINY = [
    "model=gan",
    "model.latent_dim=4",
    "model.generator.hidden_dims=[8]",
    "model.discriminator.hidden_dims=[8]",
]


@cache
def model_config(*extra: str):
    return make_cfg(Path(tempfile.mkdtemp()), *TINY, *extra).model


def tiny_gan(tmp_path, *extra: str) -> GAN:
    torch.manual_seed(0)
    return instantiate(model_config(*extra))


def at_step(model: GAN, step: int, rank: int = 0) -> GAN:
    """Pretend the model is attached to a trainer at `step` on `rank`."""
    model._trainer = SimpleNamespace(global_step=step, global_rank=rank)  # type: ignore
    return model


def test_noise_is_seeded_by_seed_step_rank_and_salt(tmp_path):
    model = tiny_gan(tmp_path, "seed=5")
    assert model.seed == 5
    for step, rank, salt in ((0, 0, 0), (7, 0, 0), (7, 1, 0), (7, 1, 3)):
        at_step(model, step, rank)
        key = (5 * 1_000_003 + step) * 1_009 + rank * 31 + salt
        got = torch.randn(6, generator=model._noise(salt))
        assert torch.equal(got, torch.randn(6, generator=torch.Generator().manual_seed(key)))


@pytest.mark.parametrize("step", [0, 40, 100_000])
def test_ema_moves_towards_g_with_a_warm_up(tmp_path, step):
    """ema <- ema + (1 - decay) (g - ema), decay = min(ema_decay, (1 + t) / (10 + t)) after t
    G updates; buffers are copied with `ema_batchnorm=copy`."""
    bn = "model.generator.batch_norm=true"
    own = at_step(tiny_gan(tmp_path, bn), step)
    own_buffers = [b.clone() for b in own.generator_ema.buffers()]
    with torch.no_grad():
        for b in own.generator.buffers():
            b.add_(2)
    own._update_ema()  # own statistics: the weights' update leaves the buffers alone
    for before, ema in zip(own_buffers, own.generator_ema.buffers(), strict=True):
        assert torch.equal(before, ema)
    model = at_step(tiny_gan(tmp_path, bn, "model.ema_batchnorm=copy"), step)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
        for b in model.generator.buffers():
            if b.is_floating_point():
                b.add_(2.0)
    before = [p.clone() for p in model.generator_ema.parameters()]
    model._update_ema()
    decay = min(0.999, (1 + step) / (10 + step))
    pairs = zip(
        before, model.generator.parameters(), model.generator_ema.parameters(), strict=True
    )
    for old, g, ema in pairs:
        assert torch.allclose(ema, old + (1 - decay) * (g - old), atol=1e-6)
    for g, ema in zip(model.generator.buffers(), model.generator_ema.buffers(), strict=True):
        assert torch.equal(g, ema)
    off = tiny_gan(tmp_path, "model.ema_decay=null")
    off._update_ema()  # no EMA: nothing to do, and sampling uses G itself
    assert off.generator_ema is None and off.sampling_generator is off.generator


def eval_vs_batch_statistics_gap(net: torch.nn.Module, z: torch.Tensor) -> float:
    """How far `net` in eval mode (its running statistics) is from `net` normalising by the
    batch's own statistics, on a large batch: near 0 when the running statistics are its own."""
    with torch.no_grad():
        by_batch = copy.deepcopy(net).train()(z)
        by_running = copy.deepcopy(net).eval()(z)
    return (by_running - by_batch).abs().mean().item()


def test_ema_batchnorm_statistics_are_the_ema_copys_own(tmp_path):
    """G's weights have moved far from its EMA copy's (x3: another activation scale). With
    `ema_batchnorm=copy` the EMA copy normalises by G's statistics and its eval-mode output
    is far from what its own batch statistics give; with `own` (the default) the loop's
    `_track_ema_statistics` (the EMA copy drawing from each iteration's noise) brings the
    two together. Seen failing with `_track_ema_statistics` a no-op (own 0.17, copy 0.22; with
    it, own 0.015)."""
    z = torch.randn(2048, 4, generator=torch.Generator().manual_seed(1))
    gaps = {}
    for mode in ("own", "copy"):
        model = at_step(
            tiny_gan(tmp_path, "model.generator.batch_norm=true", f"model.ema_batchnorm={mode}"),
            100_000,
        )
        with torch.no_grad():
            for p in model.generator.parameters():
                p.mul_(3.0)
        model.generator.train()
        model.generator_ema.train()
        for i in range(60):  # what 60 iterations do to the statistics
            noise = torch.Generator().manual_seed(i)
            model.generator(model.sample_latent(64, generator=noise))  # G's own, as G steps
            model._update_ema()
            model._track_ema_statistics(None, 64, torch.Generator().manual_seed(i))
        gaps[mode] = eval_vs_batch_statistics_gap(model.generator_ema, z)
    assert gaps["own"] < 0.25 * gaps["copy"], gaps


def test_trainer_options_the_gan_takes_over(tmp_path, caplog):
    caplog.set_level("INFO", logger="genlab.models.gan")
    model = tiny_gan(tmp_path)
    assert model.adopt_trainer_options({"gradient_clip_val": None}) == []
    assert model.gradient_clip_val is None
    taken = model.adopt_trainer_options(
        {
            "gradient_clip_val": 0.5,
            "gradient_clip_algorithm": "value",
            "accumulate_grad_batches": 1,
        }
    )
    assert taken == ["gradient_clip_val", "gradient_clip_algorithm"]
    assert (model.gradient_clip_val, model.gradient_clip_algorithm) == (0.5, "value")
    assert (
        "GAN: trainer.gradient_clip_val=0.5 (value) is applied by the model, to G's and D's "
        "unscaled gradients separately" in caplog.text
    )
    model.adopt_trainer_options({"gradient_clip_val": 2})
    assert model.gradient_clip_algorithm == "norm"
    with pytest.raises(GenlabError) as err:
        model.adopt_trainer_options({"accumulate_grad_batches": 3})
    assert str(err.value) == (
        "trainer.accumulate_grad_batches=3: the GAN loop takes one D and one G step per batch "
        "(manual optimization), so gradients are not accumulated. Use a larger "
        "data.batch_size instead, and leave trainer.accumulate_grad_batches=1."
    )


class FirstBatch(L.Callback):
    """Keeps the first training batch and the weights before the first step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0:
            self.batch = [t.clone() for t in batch]
            self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}


# The losses as the papers write them, not genlab's functions: the non-saturating GAN
# (Goodfellow et al. 2014, section 3: G maximises log D(G(z))) with one-sided label smoothing
# (Salimans et al. 2016, section 3.4: the real target 1 - s), and WGAN-GP (Gulrajani et al.
# 2017, Algorithm 1: D(x~) - D(x) + lambda (||grad D(x^)||_2 - 1)^2 at x^ = e x + (1 - e) x~,
# e ~ U[0, 1] per sample; G minimises -D(G(z))).
def paper_d_loss(real_s, fake_s, kind: str, smoothing: float) -> torch.Tensor:
    if kind == "wgan_gp":
        return (fake_s - real_s).mean()
    p_real, p_fake = torch.sigmoid(real_s), torch.sigmoid(fake_s)
    real_term = (1 - smoothing) * torch.log(p_real) + smoothing * torch.log(1 - p_real)
    return -(real_term + torch.log(1 - p_fake)).mean()


def paper_g_loss(fake_s, kind: str) -> torch.Tensor:
    return -fake_s.mean() if kind == "wgan_gp" else -torch.log(torch.sigmoid(fake_s)).mean()


def paper_gp(critic, real, fake, noise: torch.Generator) -> torch.Tensor:
    e = torch.rand(len(real), *[1] * (real.ndim - 1), generator=noise)  # the iteration's noise
    x_hat = (e * real + (1 - e) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


CASES = {
    # the fakes of the one D step reused by the G step; labels to G and D; smoothed target
    "cgan_bce_smoothed": ["model=cgan", "model.label_smoothing=0.1"],
    # fresh fakes per D step, gradient penalty and drift, then fresh fakes for G
    "wgan_gp_2_critic_drift": [
        "model.loss=wgan_gp",
        "model.n_critic=2",
        "+model.drift_weight=0.01",
    ],
    # labels through the fresh fakes of each D step, the penalty's critic and G's fakes
    "cgan_wgan_gp_2_critic": ["model=cgan", "model.loss=wgan_gp", "model.n_critic=2"],
    # each net's gradient clipped to norm 0.01 (after its norm is logged), or each value to
    # [-0.001, 0.001]
    "gan_bce_clipped": ["model.gradient_clip_val=0.01"],
    "gan_bce_clipped_by_value": [
        "model.gradient_clip_val=0.001",
        "model.gradient_clip_algorithm=value",
    ],
}


def grad_norm(params) -> torch.Tensor:
    """The 2-norm of all the gradients together."""
    return torch.sqrt(sum(p.grad.pow(2).sum() for p in params if p.grad is not None))


def clip_to(params, clip: float | None, algorithm: str = "norm") -> None:
    """Scale the gradients so their joint 2-norm is at most `clip` (norm), or clamp each to
    [-clip, clip] (value)."""
    if not clip:
        return
    scale = min(1.0, clip / (float(grad_norm(params)) + 1e-6))
    for p in params:
        if p.grad is not None:
            if algorithm == "value":
                p.grad.clamp_(-clip, clip)
            else:
                p.grad.mul_(scale)


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_iteration_equals_a_hand_written_step(tmp_path, case):
    """One GAN iteration through Lightning equals the documented loop written out here with
    plain optimizers and the papers' losses (above, not genlab's functions): n_critic D steps
    on the real batch and fakes from the iteration's seeded noise, then one G step through D,
    then the EMA update; bit-close weights of G, D and EMA, and the logged health scalars (D's
    outputs as probabilities for bce, raw for wgan_gp; each net's gradient norm before
    clipping, G's and D's clipped separately)."""
    cfg = make_cfg(tmp_path, *TINY, *CASES[case], "data.batch_size=8", "seed=3")
    torch.manual_seed(0)
    model: GAN = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)
    first = FirstBatch()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        log_every_n_steps=1,
        callbacks=[first],
    )
    trainer.fit(model, datamodule=datamodule)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}

    ref: GAN = instantiate(cfg.model)
    ref.load_state_dict(first.state)
    opt_g, opt_d = ref.configure_optimizers()[0]
    G, D = ref.generator, ref.discriminator
    x, y = first.batch
    x = x * 2 - 1
    y = y if ref.num_classes else None
    b, kind = len(x), ref.loss
    noise = torch.Generator().manual_seed((3 * 1_000_003 + 0) * 1_009 + 0)
    fake = None
    for _ in range(ref.n_critic):
        z = torch.randn(b, ref.latent_dim, generator=noise)
        if ref.n_critic == 1:
            fake = G(z, y)
            fake_d = fake.detach()
        else:
            with torch.no_grad():
                fake_d = G(z, y)
        real_s, fake_s = D(x, y), D(fake_d, y)
        loss_d = paper_d_loss(real_s, fake_s, kind, ref.label_smoothing)
        if kind == "wgan_gp":
            gp = paper_gp(lambda t: D(t, y), x, fake_d, noise)
            loss_d = loss_d + ref.gp_weight * gp
        loss_d = loss_d + ref.drift_weight * real_s.pow(2).mean()
        opt_d.zero_grad()
        loss_d.backward()
        norm_d = grad_norm(D.parameters())  # the last D step's is logged
        clip_to(list(D.parameters()), ref.gradient_clip_val, ref.gradient_clip_algorithm)
        opt_d.step()
    D.requires_grad_(False)
    if fake is None:
        fake = G(torch.randn(b, ref.latent_dim, generator=noise), y)
    opt_g.zero_grad()
    loss_g = paper_g_loss(D(fake, y), kind)
    loss_g.backward()
    norm_g = grad_norm(G.parameters())
    clip_to(list(G.parameters()), ref.gradient_clip_val, ref.gradient_clip_algorithm)
    opt_g.step()
    D.requires_grad_(True)
    decay = min(0.999, (1 + 1) / (10 + 1))  # after one G update
    with torch.no_grad():
        for e, g in zip(ref.generator_ema.parameters(), G.parameters(), strict=True):
            e.lerp_(g, 1 - decay)

    prob = torch.sigmoid if kind == "bce" else (lambda t: t)
    want_logged = {
        "train/loss_d": float(loss_d),
        "train/loss_g": float(loss_g),
        "train/d_real": float(prob(real_s).mean()),
        "train/d_fake": float(prob(fake_s).mean()),
        "train/grad_norm_d": float(norm_d),
        "train/grad_norm_g": float(norm_g),
    }
    if kind == "wgan_gp":
        want_logged["train/gp"] = float(gp)
    for key, value in want_logged.items():
        assert logged[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key

    got, want = model.state_dict(), ref.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-6), k
    moved = [k for k in want if not torch.equal(want[k], first.state[k])]
    assert any(k.startswith("generator.") for k in moved)
    assert any(k.startswith("discriminator.") for k in moved)
    assert any(k.startswith("generator_ema.") for k in moved)


class PoisonBatch(L.Callback):
    """Turns the real images of iteration `at` into NaN."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            batch[0].fill_(float("nan"))


def test_divergence_names_the_iteration_and_both_losses(tmp_path):
    """A NaN at iteration 2 (0-based) is reported as step 2, with D's and G's losses."""
    model: GAN = instantiate(model_config("model.nan_check_every_n_steps=1"))
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[PoisonBatch(at=2)],
    )
    with pytest.raises(Diverged) as err:
        trainer.fit(model, datamodule=instantiate(make_cfg(tmp_path, *TINY).data))
    assert err.value.step == 2 and set(err.value.losses) == {"loss_d", "loss_g"}
    assert str(err.value).startswith(
        "training diverged: at step 2 the loss became non-finite (train/loss_d=nan, train/loss_g="
    )


@pytest.mark.parametrize("interval,steps", [("step", 4), ("epoch", 2)])
def test_both_schedulers_step_per_iteration_or_per_epoch(tmp_path, interval, steps):
    """scheduler_g and scheduler_d (StepLR, gamma 0.5) step once per iteration, or once per
    epoch with scheduler_interval=epoch: 2 epochs of 2 iterations."""
    sched = "{_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}"
    cfg = make_cfg(
        tmp_path,
        *TINY,
        f"+model.scheduler_g={sched}",
        f"+model.scheduler_d={sched}",
        f"model.scheduler_interval={interval}",
    )
    model: GAN = instantiate(cfg.model)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=instantiate(cfg.data))
    lrs = [opt.param_groups[0]["lr"] for opt in trainer.optimizers]
    assert lrs == pytest.approx([2e-4 * 0.5**steps] * 2)
