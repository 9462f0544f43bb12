"""GAN quality on small data: DiffAugment and ADA (genlab.nets.gan_augment), R1 and LeCam
(genlab.losses.gan_regularizers), the truncation trick (GAN.sample_latent, genlab.sample).
Closed forms where there are some, real training runs of tiny nets for the loop's part.
Each test's docstring says how it was seen failing on a broken variant (a scratch edit of the
code, reverted)."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch
from conftest import FAST, TINY_GAN, assert_same_state, load, make_cfg, run_cli
from hydra.utils import instantiate
from runlogs import assert_resumed_at
from torch import nn

from genlab.losses.gan_regularizers import R1, LeCam
from genlab.nets.gan_augment import AdaptiveAugment, DiffAugment
from genlab.sample import truncate
from genlab.train import train
from genlab.utils.errors import GenlabError

PIX2PIX = [
    "experiment=pix2pix_edges_mnist",
    "model.generator.base_channels=4",
    "model.discriminator.base_channels=4",
    "data.batch_size=8",
]


def fit(model, cfg, steps: int, *callbacks, log_every_n_steps: int = 50) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        log_every_n_steps=log_every_n_steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=list(callbacks),
    )
    trainer.fit(model, datamodule=instantiate(cfg.data))
    return trainer


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (C, H, W) moved down by dy and right by dx, zeros shifted in (slicing: an oracle
    written apart from DiffAugment's gather)."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def shift_of(before: torch.Tensor, after: torch.Tensor, s: int) -> tuple[int, int] | None:
    """The (dy, dx) in [-s, s]^2 with after == shifted(before, dy, dx) exactly, else None."""
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            if torch.equal(shifted(before, dy, dx), after):
                return dy, dx
    return None


class Recorder(nn.Module):
    """The real augmentation, with every call's input and output kept (a spy, not a mock)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, generator=None, **kwargs):
        out = self.inner(x, generator=generator, **kwargs)
        self.calls.append((x.detach().clone(), out.detach().clone()))
        return out


class RealBatches(L.Callback):
    def __init__(self) -> None:
        self.reals: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.reals.append(pl_module.prepare_batch(batch)[0].detach().clone())


# --- the augmentations ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "augment",
    [
        DiffAugment(policy=["color"]),
        DiffAugment(policy=["translation"]),
        DiffAugment(policy=["cutout"]),
        DiffAugment(),
        AdaptiveAugment(p=1.0),
        AdaptiveAugment(p=0.5, ops=["scale", "rotate", "xfrac", "brightness", "contrast"]),
    ],
    ids=["color", "translation", "cutout", "diffaugment", "ada_p1", "ada_p05"],
)
def test_augmentations_are_differentiable(augment):
    """The gradient of the augmented images with respect to the images is the true one
    (torch.autograd.gradcheck, float64, the random parameters fixed by re-seeding the
    generator at each call), and not zero: G's gradient passes through what D sees. Seen
    failing with the translation's gather on `x.detach()` and the colour's mean detached."""
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, requires_grad=True)

    def augmented(t):
        return augment(t, generator=torch.Generator().manual_seed(5))

    assert torch.autograd.gradcheck(augmented, (x,), eps=1e-6, atol=1e-5)
    (grad,) = torch.autograd.grad(augmented(x).sum(), x)
    assert grad.abs().sum() > 0


def test_translation_and_cutout_against_an_oracle():
    """DiffAugment's translation moves each image by its own integer shift within +-1/8 of the
    side (zeros shifted in), every shift of the range is drawn over a large batch; cutout zeroes
    one square of half the side per image, clipped at the borders, and nothing else. Seen
    failing with the shift range off by one (s + 1) and the cutout square one pixel short."""
    x = torch.rand(400, 1, 16, 16) + 0.5  # no zero pixel before augmentation
    out = DiffAugment(policy=["translation"])(x, generator=torch.Generator().manual_seed(0))
    shifts = [shift_of(a, b, 3) for a, b in zip(x, out, strict=True)]
    assert None not in shifts
    assert {d for s in shifts for d in s} == set(range(-2, 3))  # round(16 / 8) = 2
    cut = DiffAugment(policy=["cutout"])(x, generator=torch.Generator().manual_seed(0))
    for before, after in zip(x, cut, strict=True):
        zero = after[0] == 0
        assert torch.equal(after[0][~zero], before[0][~zero])
        rows, cols = zero.any(1).nonzero()[:, 0], zero.any(0).nonzero()[:, 0]
        # a full 8 x 8 square, or a rectangle against an edge
        assert zero.sum() == len(rows) * len(cols) and 0 < len(rows) <= 8 and len(cols) <= 8
        assert len(rows) == 8 or rows[0] == 0 or rows[-1] == 15
        assert len(cols) == 8 or cols[0] == 0 or cols[-1] == 15


def test_the_same_op_applies_to_real_and_fake_images_within_a_d_step(tmp_path):
    """A real GAN step with DiffAugment's translation: per iteration the augmentation sees the
    real batch, then the (detached) fakes in D's step, then the same fakes in G's step; every
    output is its input moved by some shift in range, with shifts other than 0 on both reals
    and fakes. Seen failing with the augmentation applied to the reals only (fakes unshifted)
    and with G's step on the plain critic (two calls per iteration)."""
    cfg = make_cfg(tmp_path, *FAST, *TINY_GAN)
    model = instantiate(cfg.model)
    model.augment = Recorder(DiffAugment(policy=["translation"]))
    reals = RealBatches()
    fit(model, cfg, 3, reals)
    calls = model.augment.calls
    assert len(calls) == 3 * 3
    for step in range(3):
        (real_in, real_out), (fake_in, fake_out), (g_in, g_out) = calls[3 * step : 3 * step + 3]
        assert torch.equal(real_in, reals.reals[step])
        assert torch.equal(fake_in, g_in)  # n_critic = 1: G's step reuses D's fakes
        for before, after in ((real_in, real_out), (fake_in, fake_out), (g_in, g_out)):
            shifts = [shift_of(a, b, 4) for a, b in zip(before, after, strict=True)]
            assert None not in shifts  # round(28 / 8) = 4 (3.5 rounds up)
            assert any(s != (0, 0) for s in shifts)


def test_a_conditional_discriminator_sees_image_and_source_moved_together(tmp_path):
    """pix2pix with DiffAugment's translation: D's two inputs (image, source) are moved by the
    same shift, for the real pair and the fake one. Seen failing with Translation's
    training_critic removed (the loop's: the image moved, the source not)."""
    cfg = make_cfg(tmp_path, *FAST, *PIX2PIX, "+model/augment=diffaugment")
    model = instantiate(cfg.model)
    model.augment = DiffAugment(policy=["translation"])
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    model.discriminator.register_forward_pre_hook(
        lambda module, args: seen.append((args[0].detach().clone(), args[1].detach().clone()))
    )
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Pairs(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            target, source = pl_module.prepare_batch(batch)
            batches.append((target.detach().clone(), source.detach().clone() * 2 - 1))

    fit(model, cfg, 2, Pairs())
    assert len(seen) == 2 * 3  # per iteration: D's real and fake pairs, G's fake pair
    moved = 0
    for step in range(2):
        target, source = batches[step]
        image, d_source = seen[3 * step]  # D's real pair
        for i in range(len(target)):
            shift = shift_of(target[i], image[i], 4)
            assert shift is not None
            assert torch.equal(shifted(source[i], *shift), d_source[i]), (step, i, shift)
            moved += shift != (0, 0)
        # the fake pair: the same source, moved as D's image of G's output was
        _, fake_source = seen[3 * step + 1]
        for i in range(len(target)):
            assert shift_of(source[i], fake_source[i], 4) is not None
    assert moved > 0


def test_colour_transforms_leave_the_stacked_source_alone():
    """`colour_channels`: the colour ops act on the image's channels only, a stacked source is
    moved by the geometric ops alone (ADA at p = 1 with colour ops only: the source channels
    come back untouched). Seen failing with the colour split ignored."""
    x = torch.rand(6, 4, 8, 8)
    for augment in (DiffAugment(policy=["color"]), AdaptiveAugment(p=1.0, ops=["brightness"])):
        out = augment(x, generator=torch.Generator().manual_seed(0), colour_channels=3)
        assert torch.equal(out[:, 3:], x[:, 3:])
        assert not torch.allclose(out[:, :3], x[:, :3])


def test_ada_at_p_zero_is_the_identity_and_draws_the_same_noise():
    """At p = 0 ADA returns the images bit for bit, and consumes as much of the generator as at
    p = 1 (the noise stream of an iteration does not depend on p). Seen failing with the
    warped images returned whatever was drawn (bilinear resampling at the identity is not
    exact)."""
    x = torch.rand(5, 3, 12, 12)
    g0, g1 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(AdaptiveAugment(p=0.0)(x, generator=g0), x)
    assert not torch.allclose(AdaptiveAugment(p=1.0)(x, generator=g1), x)
    assert torch.equal(torch.rand(4, generator=g0), torch.rand(4, generator=g1))


# --- ADA's p --------------------------------------------------------------------------------
def test_ada_p_follows_the_sign_of_d_on_reals_and_stays_in_the_unit_interval():
    """The paper's rule, step by step: every `interval` observations p moves by
    sign(r_t - target) x images seen / speed_images. A D that separates perfectly (every real
    score positive, r_t = 1): p rises by 4 x 16 / 200 = 0.32 per interval, to 1 and no further;
    a D at chance (half the scores positive, r_t = 0): p falls back to 0 and no further; between
    adjustments p does not move. Seen failing with the sign of the step flipped, the clip at
    [0, 1] removed, and the adjustment made at every observation."""
    ada = AdaptiveAugment(target=0.6, speed_images=200, interval=4)
    sure = torch.full((16,), 3.0)
    chance = torch.cat([torch.full((8,), 2.0), torch.full((8,), -2.0)])
    seen = []
    for _ in range(16):
        ada.observe(sure)
        seen.append(float(ada.p))
    assert seen == pytest.approx([min(0.32 * (k // 4), 1.0) for k in range(1, 17)])
    assert seen[-1] == 1.0 and float(ada.rt) == 1.0
    for _ in range(16):
        ada.observe(chance)
        seen.append(float(ada.p))
    assert seen[16:19] == [1.0] * 3 and seen[19] == pytest.approx(0.68)
    assert seen[-1] == 0.0 and min(seen) == 0.0 and max(seen) == 1.0
    assert float(ada.rt) == 0.0


def test_ada_p_rises_when_d_overfits_and_falls_when_it_cannot(tmp_path):
    """Real training runs, the loop calling `observe` after each D step. D against a G that
    never learns (G's learning rate 0): D soon separates reals from fakes perfectly and p
    climbs from 0. A D that cannot tell anything (its output layer zeroed, learning rate 0:
    every score 0, r_t = 0): p falls from 0.5. Seen failing with the loop's scores on fakes
    passed to `observe` (p falls in the first run). p and r_t are logged (`train/ada_p`,
    `train/ada_rt`) as they stand after the step: seen failing with them not logged."""
    fast = [*FAST, *TINY_GAN, "+model/augment=ada", "model.augment.speed_images=2000"]
    cfg = make_cfg(tmp_path, *fast, "model.optimizer_g.lr=0", "model.optimizer_d.lr=1e-2")
    model = instantiate(cfg.model)
    trainer = fit(model, cfg, 40, log_every_n_steps=1)
    assert 0.05 < float(model.augment.p) <= 1.0 and float(model.augment.rt) > 0.6
    logged = trainer.callback_metrics
    assert float(logged["train/ada_p"]) == float(model.augment.p)
    assert float(logged["train/ada_rt"]) == float(model.augment.rt)
    cfg = make_cfg(tmp_path, *fast, "model.optimizer_d.lr=0", "model.augment.p=0.5")
    model = instantiate(cfg.model)
    last = [m for m in model.discriminator.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # D's scores are 0 for every image, and stay so (lr 0)
        last.weight.zero_()
        last.bias.zero_()
    fit(model, cfg, 40)
    assert 0.0 <= float(model.augment.p) < 0.45 and float(model.augment.rt) == 0.0


# --- the regularisers ----------------------------------------------------------------------
def test_r1_of_a_linear_discriminator_is_closed_form():
    """D(x) = <w, x> + b: grad_x D = w for every x, so R1's value is ||w||^2 / 2 and its
    gradient with respect to w is w (the penalty trains D: the gradient is in the graph).
    Patch scores (B, 1, 2, 2) count by their mean per image. Seen failing without
    `create_graph` (no gradient to w) and with the sum of the patches instead of the mean."""
    torch.manual_seed(0)
    w = torch.randn(1, 3, 4, 4, requires_grad=True)
    b = torch.tensor(0.7, requires_grad=True)
    real = torch.randn(5, 3, 4, 4)

    def critic(x):
        return (x * w).flatten(1).sum(1) + b  # (B,)

    def patch_critic(x):  # four identical patches per image: the same per-image score
        return critic(x)[:, None, None, None].expand(-1, 1, 2, 2)

    r1 = R1(weight=10.0)
    value = r1.value(critic, real, real, critic(real), critic(real), None)
    assert value.item() == pytest.approx(0.5 * w.pow(2).sum().item(), rel=1e-6)
    (grad_w,) = torch.autograd.grad(value, w)
    assert torch.allclose(grad_w, w)
    patches = r1.value(patch_critic, real, real, None, None, None)
    assert patches.item() == pytest.approx(value.item(), rel=1e-6)
    assert not real.requires_grad  # the reals handed in are left as they were


def test_lazy_r1_is_taken_every_kth_d_step_weighted_k_times_and_resumes_in_rhythm():
    """R1 with every=3 on a linear D (value ||w||^2 / 2): D steps 0, 3, 6 add 3 * gamma *
    value to D's loss, the others add 0 and log the last value taken; a copy loaded from the
    state dict after 4 steps goes on with step 4 (nothing) and step 6 (the term), as the
    original does. Plain R1 (every=1) keeps an empty state dict (older checkpoints load) and
    adds gamma * value at every step. Seen failing with the term not scaled by k, and with
    the step count left out of the state dict."""
    w = torch.randn(1, 2, 3, 3, requires_grad=True)
    real = torch.randn(4, 2, 3, 3)

    def critic(x):
        return (x * w).flatten(1).sum(1)

    closed = 0.5 * w.pow(2).sum().item()
    lazy = R1(weight=2.0, every=3)

    def step(r1):
        added, logged = r1.term(critic, real, real, critic(real), critic(real), None)
        assert logged.item() == pytest.approx(closed, rel=1e-6)
        return added.item()

    assert [step(lazy) for _ in range(4)] == pytest.approx([6 * closed, 0, 0, 6 * closed])
    resumed = R1(weight=2.0, every=3)
    resumed.load_state_dict(lazy.state_dict())
    assert [step(r) for r in (lazy, resumed) for _ in range(3)] == pytest.approx(
        [0, 0, 6 * closed] * 2
    )
    plain = R1(weight=2.0)
    assert plain.state_dict() == {} and step(plain) == pytest.approx(2 * closed)
    for bad in (0, 1.5, True):
        with pytest.raises(GenlabError, match="r1.every"):
            R1(weight=1.0, every=bad)


def test_lecam_anchors_follow_the_documented_ema_and_the_term_uses_them():
    """alpha <- decay * alpha + (1 - decay) * batch mean at each D step, from 0, before the term
    is taken; the term is mean relu(D(x) - alpha_F)^2 + mean relu(alpha_R - D(G(z)))^2,
    computed here by hand for three steps. Seen failing with the anchors updated after the
    term, with real and fake anchors swapped in the term, and with the decay's weights swapped."""
    lecam = LeCam(weight=0.3, decay=0.9)
    torch.manual_seed(1)
    anchor_real = anchor_fake = 0.0
    for _ in range(3):
        real_s, fake_s = torch.randn(8) + 1.0, torch.randn(8) - 1.0
        anchor_real = 0.9 * anchor_real + 0.1 * real_s.mean().item()
        anchor_fake = 0.9 * anchor_fake + 0.1 * fake_s.mean().item()
        real_term = (real_s - anchor_fake).clamp_min(0).pow(2).mean()
        want = real_term + (anchor_real - fake_s).clamp_min(0).pow(2).mean()
        got = lecam.value(None, None, None, real_s, fake_s, None)
        assert got.item() == pytest.approx(want.item(), rel=1e-5)
        assert lecam.anchor_real.item() == pytest.approx(anchor_real, rel=1e-5)
        assert lecam.anchor_fake.item() == pytest.approx(anchor_fake, rel=1e-5)
    assert int(lecam.updates) == 3
    # buffers: in the state dict, hence in checkpoints
    assert {"anchor_real", "anchor_fake", "updates"} <= set(lecam.state_dict())


def test_penalty_configs_compose_and_reach_the_objective(tmp_path):
    """`+model/penalties=[r1,lecam]` and `+model/augment=ada` build an R1, a LeCam and an ADA
    module into the model (any adversarial family: the GAN and pix2pix here), and the
    `+model.penalties.<name>={_target_:...}` form works too."""
    cfg = make_cfg(tmp_path, *TINY_GAN, "+model/augment=ada", "+model/penalties=[r1,lecam]")
    model = instantiate(cfg.model)
    assert [p.name for p in model.objective.penalties] == ["r1", "lecam"]
    assert isinstance(model.augment, AdaptiveAugment) and model.augment.target == 0.6
    cfg = make_cfg(
        tmp_path,
        *PIX2PIX,
        "+model/augment=diffaugment",
        "+model.penalties.r1={_target_:genlab.losses.gan_regularizers.R1,weight:2.0}",
    )
    model = instantiate(cfg.model)
    assert isinstance(model.augment, DiffAugment)
    assert model.objective.penalty("r1").weight == 2.0


@pytest.mark.parametrize("recipe", ["gan_mnist", "dcgan_mnist"])
def test_every_addition_composes_onto_the_recipes(tmp_path, recipe):
    """What `benchmarks/gan_recipes.py --ablation` and a user add to a recipe composes: each
    augmentation and each penalty on top of what the recipe has, and the recipe's own
    penalties removed. Seen failing with a recipe taking its penalty in its defaults list as
    `/model/penalties: lecam` (Hydra: 'Multiple values for model/penalties' on
    +model/penalties=r1); dcgan_mnist takes R1 under its own package instead."""
    own = set(make_cfg(tmp_path, f"experiment={recipe}").model.get("penalties") or {})
    for extra in ("+model/augment=diffaugment", "+model/augment=ada"):
        assert make_cfg(tmp_path, f"experiment={recipe}", extra).model.augment._target_
    for name in ("r1", "lecam"):
        cfg = make_cfg(tmp_path, f"experiment={recipe}", f"+model/penalties={name}")
        assert set(cfg.model.penalties) == own | {name}
    removed = [f"~model.penalties.{name}" for name in own]
    assert not make_cfg(tmp_path, f"experiment={recipe}", *removed).model.get("penalties")


# --- exact resume ----------------------------------------------------------------------------
def test_resume_with_ada_and_lecam_mid_run_is_exact(tmp_path):
    """6 iterations per epoch, ADA adjusting every 4, lazy R1 every 4: the checkpoint after
    epoch 1 lies in the middle of an adjustment interval and of R1's rhythm. 2 epochs straight
    == 1 epoch, stop, resume: weights, optimizers, ADA's p and its interval sums, LeCam's
    anchors, R1's step count all bit-equal; p did move (from
    0.5); the resumed run started at the checkpoint's step 6 (it logged train/loss_d from step 6
    on, as the straight run did). Seen failing with ADA's interval sums kept as Python
    attributes (not buffers: the resumed run adjusted p at other steps), and with R1's host
    count not read back from the checkpoint (R1 taken at step 6 instead of 8)."""
    common = [
        *FAST,
        *TINY_GAN,
        "test=false",
        "trainer.limit_train_batches=6",
        "+model/augment=ada",
        "model.augment.speed_images=500",
        "model.augment.p=0.5",
        "+model/penalties=[r1,lecam]",
        "model.penalties.r1.every=4",
    ]
    straight = train(make_cfg(tmp_path / "a", *common, "trainer.max_epochs=2"))
    first = train(make_cfg(tmp_path / "b", *common, "trainer.max_epochs=1"))
    resumed = train(
        make_cfg(
            tmp_path / "c", *common, "trainer.max_epochs=2", f"ckpt_path={first['last_ckpt']}"
        )
    )
    a, b, c = load(straight["last_ckpt"]), load(resumed["last_ckpt"]), load(first["last_ckpt"])
    assert a["global_step"] == 12 and c["global_step"] == 6
    assert int(c["state_dict"]["augment.steps"]) == 6 and float(c["state_dict"]["augment.images"])
    assert float(a["state_dict"]["augment.p"]) != 0.5
    assert float(a["state_dict"]["objective.penalties.1.anchor_real"]) != 0.0
    assert int(c["state_dict"]["objective.penalties.0.steps"]) == 6
    assert_same_state(a, b)
    assert_resumed_at(straight["run_dir"], resumed["run_dir"], 6, "train/loss_d")


# --- no host sync ------------------------------------------------------------------------------
def test_augmentations_and_penalties_add_no_host_sync(tmp_path):
    """ADA's `observe`, LeCam's anchors and R1 run on the device: the training steps between
    logging steps make none of the watched host calls (family_contract.py's counter).
    Seen failing with `float(self.p)` in ADA's adjustment."""
    from family_contract import LOG_EVERY, SyncCounter, train_counting

    fast = [o for o in FAST if "log_every" not in o and "rich_progress_bar" not in o]
    cfg = make_cfg(
        tmp_path,
        *fast,
        *TINY_GAN,
        "+model/augment=ada",
        "+model/penalties=[r1,lecam]",
        "model.penalties.r1.every=3",  # lazy R1: it decides its steps on the host, unsynced
        f"trainer.log_every_n_steps={LOG_EVERY}",
        "trainer.limit_train_batches=10",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=1",
        "test=false",
    )
    counter = SyncCounter()
    summary = train_counting(cfg, counter)
    assert summary["status"] == "completed" and counter.batches >= 6
    assert not counter.counts, f"{dict(counter.counts)} at {counter.sites.most_common(5)}"


# --- truncation ------------------------------------------------------------------------------
def test_truncation_draws_a_truncated_normal(tmp_path):
    """truncation=psi: every component of z lies in [-psi, psi], and its variance is the
    truncated normal's, 1 - 2 psi phi(psi) / (2 Phi(psi) - 1) (0.2876 at psi 1 against 1 for
    the plain draw); the same seed gives the same codes; temperature still scales.
    Seen failing with z clamped to [-psi, psi] instead (variance 0.40 at psi 1)."""
    model = instantiate(make_cfg(tmp_path, *TINY_GAN).model)
    z = model.sample_latent(40_000, generator=torch.Generator().manual_seed(0), truncation=1.0)
    assert z.abs().max() <= 1.0
    phi, cdf = math.exp(-0.5) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert z.var().item() == pytest.approx(1 - 2 * phi / (2 * cdf - 1), abs=0.005)
    again = model.sample_latent(
        40_000, generator=torch.Generator().manual_seed(0), truncation=1.0, temperature=0.5
    )
    assert torch.equal(again, z * 0.5)
    with pytest.raises(GenlabError, match="truncation=0"):
        model.sample_latent(2, truncation=0.0)
    x = model.sample(4, generator=torch.Generator().manual_seed(0), truncation=0.5)
    assert x.shape == (4, 1, 28, 28)


def test_sample_cli_truncates_gans_and_refuses_others(tmp_path):
    """`genlab.sample truncation=0.5` on a GAN checkpoint: the grid and samples.json (which
    records psi); a bad value is refused with one paragraph before any output; a model without
    the option (a VAE) is refused by name."""
    run = train(make_cfg(tmp_path / "gan", *FAST, *TINY_GAN, "test=false"))
    run_cli(
        f"ckpt_path={run['last_ckpt']}",
        "n=8",
        "truncation=0.5",
        "device=cpu",
        cwd=tmp_path,
        module="genlab.sample",
    )
    [out] = (tmp_path / "gan" / "run").glob("samples/*/")
    assert json.loads((out / "samples.json").read_text())["truncation"] == 0.5
    bad = run_cli(
        f"ckpt_path={run['last_ckpt']}",
        "truncation=-1",
        cwd=tmp_path,
        module="genlab.sample",
        check=False,
    )
    assert bad.returncode == 2 and "truncation=-1 must be a number > 0" in bad.stderr
    assert len(list((tmp_path / "gan" / "run").glob("samples/*/"))) == 1
    vae = instantiate(make_cfg(tmp_path, "model=vae").model)
    with pytest.raises(GenlabError, match="VAE does not sample with the truncation trick"):
        truncate(vae, 0.5)
