"""Losses, distributions and sparsity against closed forms written out here, value by value:
a wrong sign, constant or reduction gives wrong science without failing a training run, so
each function is pinned at points where its value is known (mutation testing measures how
well: benchmarks/results/mutation.md)."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.distributions import DiagonalGaussian, std_normal_log_prob
from genlab.losses.gan_losses import (
    KINDS,
    SMOOTHABLE,
    d_output,
    discriminator_loss,
    epsilon_drift,
    generator_loss,
    gradient_penalty,
)
from genlab.losses.kl import kl_diag_normals, kl_std_normal
from genlab.losses.likelihood import LOG_2PI, bernoulli_nll, bits_per_dim, gaussian_nll
from genlab.losses.mmd import kernel_matrix, mmd
from genlab.losses.reconstruction import reconstruction_loss
from genlab.losses.sparsity import (
    KLSparsity,
    L1Sparsity,
    Sparsity,
    TopKSparsity,
    code_stats,
    hoyer_sparsity,
    kl_sparsity_batch,
    l1_sparsity,
    top_k,
)
from genlab.utils.errors import GenlabError


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# --- adversarial -----------------------------------------------------------------------------
REAL, FAKE = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-0.5, 1.5, 3.0])


@pytest.mark.parametrize("target", [1.0, 0.8])
def test_discriminator_losses_value_by_value(target):
    for kind in KINDS:
        got = discriminator_loss(REAL, FAKE, kind, real_target=target).tolist()
        for r, f, value in zip(REAL.tolist(), FAKE.tolist(), got, strict=True):
            if kind in ("bce", "minimax"):
                p = sigmoid(r)
                want = -(target * math.log(p) + (1 - target) * math.log(1 - p))
                want -= math.log(1 - sigmoid(f))
            elif kind == "hinge":
                want = max(0.0, 1 - r) + max(0.0, 1 + f)
            elif kind == "ls":
                want = 0.5 * (r - target) ** 2 + 0.5 * f**2
            else:
                want = f - r
            assert value == pytest.approx(want, rel=1e-5, abs=1e-6), (kind, target)


def test_generator_losses_value_by_value():
    for kind in KINDS:
        got = generator_loss(FAKE, kind).tolist()
        for f, value in zip(FAKE.tolist(), got, strict=True):
            want = {
                "bce": -math.log(sigmoid(f)),
                "minimax": math.log(1 - sigmoid(f)),
                "hinge": -f,
                "wgan_gp": -f,
                "ls": 0.5 * (f - 1) ** 2,
            }[kind]
            assert value == pytest.approx(want, rel=1e-5), kind


def test_unknown_kinds_and_d_output():
    with pytest.raises(ValueError, match="unknown adversarial loss 'x'"):
        discriminator_loss(REAL, FAKE, "x")
    with pytest.raises(ValueError, match="unknown adversarial loss 'x'"):
        generator_loss(FAKE, "x")
    assert SMOOTHABLE == ("bce", "minimax", "ls")
    for kind in KINDS:
        out = d_output(REAL, kind)
        want = torch.sigmoid(REAL) if kind in ("bce", "minimax") else REAL
        assert torch.equal(out, want), kind
    assert torch.equal(epsilon_drift(torch.tensor([-3.0, 2.0])), torch.tensor([9.0, 4.0]))


def test_gradient_penalty_points_and_norm():
    """A critic |x|^2 / 2 has gradient x_hat, so the penalty is (|x_hat| - 1)^2 at the point
    x_hat = eps real + (1 - eps) fake, eps drawn from the generator per example."""
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    got = gradient_penalty(
        lambda x: 0.5 * x.flatten(1).pow(2).sum(1),
        real,
        fake,
        generator=torch.Generator().manual_seed(3),
    )
    eps = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(3))
    x_hat = eps * real + (1 - eps) * fake
    assert torch.allclose(got, (x_hat.flatten(1).norm(dim=1) - 1) ** 2, atol=1e-6)
    # it keeps the graph: the penalty trains the critic
    w = torch.tensor(3.0, requires_grad=True)
    gp = gradient_penalty(lambda x: w * x.flatten(1).sum(1), real, fake).sum()
    (grad,) = torch.autograd.grad(gp, w)  # d/dw 5 (2|w| - 1)^2 = 5 * 2 (2w - 1) * 2
    assert grad.item() == pytest.approx(5 * 2 * (2 * 3.0 - 1) * 2, rel=1e-5)


# --- reconstruction and likelihood ---------------------------------------------------------
def test_reconstruction_losses_sum_over_pixels():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 1.0]]], [[[3.0, -2.0], [0.5, 0.0]]]])
    x = torch.tensor([[[[0.5, 1.0], [0.0, 0.25]]], [[[1.0, 0.0], [0.75, 0.5]]]])
    p, t = torch.sigmoid(logits).flatten(1).tolist(), x.flatten(1).tolist()
    mse = [
        sum((a - b) ** 2 for a, b in zip(pi, ti, strict=True)) for pi, ti in zip(p, t, strict=True)
    ]
    bce = [
        sum(-(b * math.log(a) + (1 - b) * math.log(1 - a)) for a, b in zip(pi, ti, strict=True))
        for pi, ti in zip(p, t, strict=True)
    ]
    assert reconstruction_loss(logits, x, "mse").tolist() == pytest.approx(mse, rel=1e-5)
    assert reconstruction_loss(logits, x, "bce").tolist() == pytest.approx(bce, rel=1e-5)
    assert bernoulli_nll(logits, x).tolist() == pytest.approx(bce, rel=1e-5)
    with pytest.raises(GenlabError, match=r"model.reconstruction='l2' is not a loss"):
        reconstruction_loss(logits, x, "l2")


def test_gaussian_nll_per_pixel_sigma():
    mean, x = torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, -2.0]]]])
    log_sigma = torch.tensor([[[[0.0, math.log(2.0)]]]])
    want = sum(
        0.5 * (v / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)
        for v, s in ((1.0, 1.0), (-2.0, 2.0))
    )
    assert gaussian_nll(mean, x, log_sigma).item() == pytest.approx(want, rel=1e-6)
    assert pytest.approx(math.log(2 * math.pi)) == LOG_2PI
    assert bits_per_dim(torch.tensor(2 * math.log(2.0)), 2).item() == pytest.approx(1.0)


def test_kl_closed_forms_at_other_points():
    mean, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.7]])
    want = sum(
        0.5 * (m * m + math.exp(lv) - 1 - lv)
        for m, lv in zip([0.5, -1.0], [0.2, -0.7], strict=True)
    )
    assert kl_std_normal(mean, logvar).item() == pytest.approx(want, rel=1e-6)
    m2, lv2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 1.0]])
    want2 = sum(
        0.5 * (b - a + (math.exp(a) + (m - n) ** 2) / math.exp(b) - 1)
        for m, a, n, b in zip([0.5, -1.0], [0.2, -0.7], [1.0, 0.0], [0.5, 1.0], strict=True)
    )
    assert kl_diag_normals(mean, logvar, m2, lv2).item() == pytest.approx(want2, rel=1e-6)


# --- distributions ---------------------------------------------------------------------------
def test_diagonal_gaussian_from_params_and_moments():
    params = torch.tensor([[1.0, -2.0, 50.0, -50.0, 0.5, 0.0]])  # 3 means, 3 log-variances
    q = DiagonalGaussian.from_params(params)
    assert q.mean.tolist() == [[1.0, -2.0, 50.0]]
    assert q.logvar.tolist() == [[-30.0, 0.5, 0.0]]  # clamped to [-30, 20]
    assert DiagonalGaussian.from_params(torch.tensor([[0.0, 25.0]])).logvar.item() == 20.0
    q = DiagonalGaussian.from_params(params, logvar_min=-60.0)
    assert q.logvar[0, 0].item() == -50.0
    assert torch.allclose(q.variance, q.logvar.exp()) and torch.allclose(
        q.stddev, (0.5 * q.logvar).exp()
    )


def test_diagonal_gaussian_with_leading_sample_dims_and_float64():
    """Parameters and codes with sample dims in front, (S, B, ...): the split, the sums and
    the log-densities act on the last dim only; float64 parameters draw float64 noise."""
    params = torch.arange(24, dtype=torch.float64).view(2, 3, 4) / 10  # (s, b, 2d)
    q = DiagonalGaussian.from_params(params)
    assert torch.equal(q.mean, params[..., :2]) and torch.equal(q.logvar, params[..., 2:])
    z = torch.tensor([[[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]]] * 2)  # (2, 3, 2)
    want = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
    assert std_normal_log_prob(z).shape == (2, 3)
    assert torch.allclose(std_normal_log_prob(z), want)
    draws = q.rsample((4,), generator=torch.Generator().manual_seed(1))
    eps = torch.randn(4, 2, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert draws.dtype == torch.float64 and torch.equal(draws, q.mean + eps * q.stddev)


def test_diagonal_gaussian_sample_log_prob_and_kl():
    mean, logvar = torch.tensor([[1.0, -1.0]]), torch.tensor([[math.log(4.0), 0.0]])
    q = DiagonalGaussian(mean, logvar)
    eps = torch.randn(3, 1, 2, generator=torch.Generator().manual_seed(0))
    z = q.rsample((3,), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z, mean + eps * torch.tensor([[2.0, 1.0]]))
    point = torch.tensor([[2.0, 0.5]])
    want = sum(
        -0.5 * ((v - m) ** 2 / s2 + math.log(s2) + math.log(2 * math.pi))
        for v, m, s2 in ((2.0, 1.0, 4.0), (0.5, -1.0, 1.0))
    )
    assert q.log_prob(point).item() == pytest.approx(want, rel=1e-6)
    assert std_normal_log_prob(point).item() == pytest.approx(
        sum(-0.5 * (v * v + math.log(2 * math.pi)) for v in (2.0, 0.5)), rel=1e-6
    )
    p = DiagonalGaussian(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, math.log(2.0)]]))
    assert q.kl().item() == pytest.approx(kl_std_normal(mean, logvar).item())
    assert q.kl(p).item() == pytest.approx(kl_diag_normals(mean, logvar, p.mean, p.logvar).item())
    assert q.kl(p).item() != pytest.approx(q.kl().item())


# --- mmd -------------------------------------------------------------------------------------
def test_kernel_matrix_and_unbiased_mmd_by_hand():
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])
    scales, var = [0.5, 2.0], 1.5
    for kind in ("imq", "rbf"):

        def k(u, v, kind=kind):
            sq = float(((u - v) ** 2).sum())
            out = 0.0
            for s in scales:
                c = 2 * 2 * var * s
                out += c / (c + sq) if kind == "imq" else math.exp(-sq / c)
            return out

        got = kernel_matrix(a, b, kind, scales, prior_var=var)
        want = torch.tensor([[k(u, v) for v in b] for u in a])
        assert torch.allclose(got, want, atol=1e-6), kind
        kxx = sum(k(a[i], a[j]) for i in range(3) for j in range(3) if i != j) / 6
        kyy = sum(k(b[i], b[j]) for i in range(2) for j in range(2) if i != j) / 2
        kxy = sum(k(u, v) for u in a for v in b) / 6
        value = mmd(a, b, kind, scales, prior_var=var).item()
        assert value == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-5), kind
    with pytest.raises(GenlabError, match="at least 2 codes"):
        mmd(a[:1], b)
    with pytest.raises(GenlabError, match="at least 2 codes"):
        mmd(a, b[:1])
    with pytest.raises(GenlabError, match=r"model.kernel='cos' is not a kernel"):
        kernel_matrix(a, b, "cos", [1.0])


# --- sparsity --------------------------------------------------------------------------------
def test_sparsity_penalties_and_transforms():
    code = torch.tensor([[0.5, -2.0, 0.0], [1.0, 0.25, -0.5]])
    assert l1_sparsity(code).tolist() == [2.5, 1.75]
    assert L1Sparsity(weight=0.2).penalty(code).item() == pytest.approx(0.2 * 2.125)
    sig = torch.tensor([[0.1, 0.6], [0.3, 0.2]])  # unit means 0.2 and 0.4
    rho = 0.1
    want = sum(
        rho * math.log(rho / m) + (1 - rho) * math.log((1 - rho) / (1 - m)) for m in (0.2, 0.4)
    )
    assert kl_sparsity_batch(sig, rho).item() == pytest.approx(want, rel=1e-5)
    assert KLSparsity(rho=rho, weight=3.0).penalty(sig).item() == pytest.approx(3 * want, rel=1e-5)
    # a unit whose mean is 0 is clamped (finite penalty), not infinite
    assert math.isfinite(kl_sparsity_batch(torch.zeros(4, 2), 0.05).item())
    with pytest.raises(GenlabError, match="codes in \\[0, 1\\]"):
        KLSparsity().penalty(code)
    assert torch.equal(top_k(code, 1), torch.tensor([[0.5, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert torch.equal(top_k(code, 3), code) and torch.equal(
        TopKSparsity(k=2).transform(code), top_k(code, 2)
    )
    assert torch.equal(Sparsity().transform(code), code) and Sparsity().penalty(code).item() == 0
    assert Sparsity().kind == "none" and (L1Sparsity.kind, KLSparsity.kind) == ("l1", "kl")
    assert TopKSparsity.kind == "topk" and TopKSparsity().penalty(code).item() == 0
    assert repr(L1Sparsity(0.5)) == "L1Sparsity(weight=0.5, active_threshold=0.001)"
    for bad in (
        lambda: L1Sparsity(-1),
        lambda: KLSparsity(rho=0),
        lambda: KLSparsity(rho=1),
        lambda: KLSparsity(weight=-1),
        lambda: TopKSparsity(k=0),
    ):
        with pytest.raises(GenlabError):
            bad()
    assert L1Sparsity(0.0).weight == 0.0 and TopKSparsity(k=1).k == 1


def test_code_stats_and_hoyer():
    code = torch.tensor([[0.0, 0.5, 0.0, 0.05], [0.0, -0.3, 0.0, 0.2]])
    stats = code_stats(code, threshold=0.1)
    assert stats["mean_activation"].item() == pytest.approx(1.05 / 8)
    assert stats["active_fraction"].item() == pytest.approx(3 / 8)
    assert stats["dead_unit_fraction"].item() == pytest.approx(2 / 4)
    assert stats["unit_active_fraction_max"].item() == pytest.approx(1.0)
    z = torch.tensor([[3.0, 4.0, 0.0, 0.0]])
    want = (2.0 - 7.0 / 5.0) / (2.0 - 1.0)
    assert hoyer_sparsity(z).item() == pytest.approx(want, rel=1e-6)


# --- image-to-image translation --------------------------------------------------------------
def test_translation_losses_by_hand():
    from genlab.losses.translation_losses import feature_loss, pixel_loss, psnr_db, region_mean

    out = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]], [[[0.5, 0.5], [0.5, 0.5]]]])  # (2,1,2,2)
    target = torch.tensor([[[[0.5, 0.5], [0.0, 0.25]]], [[[0.0, 1.0], [0.5, 0.5]]]])
    region = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    assert region_mean(out).tolist() == pytest.approx([0.4375, 0.5])
    # the first image's region holds 0.0 and 1.0; an empty region gives 0
    assert region_mean(out, region).tolist() == pytest.approx([0.5, 0.0])
    assert pixel_loss(out, target, "l1").tolist() == pytest.approx([1.5 / 4, 1.0 / 4])
    assert pixel_loss(out, target, "mse").tolist() == pytest.approx([1.25 / 4, 0.5 / 4])
    assert pixel_loss(out, target, "l1", region).tolist() == pytest.approx([0.75, 0.0])
    assert pixel_loss(out, target, "mse", region).tolist() == pytest.approx([0.625, 0.0])
    with pytest.raises(GenlabError, match=r"model.recon_loss='l3' is not a pixel loss"):
        pixel_loss(out, target, "l3")
    feats = feature_loss(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.0, 2.0, 5.0]]))
    assert feats.tolist() == pytest.approx([5.0 / 3])
    assert psnr_db(out, target).tolist() == pytest.approx(
        [10 * math.log10(4 / 1.25), 10 * math.log10(4 / 0.5)], rel=1e-5
    )
    assert psnr_db(out, target, data_range=2.0).tolist() == pytest.approx(
        [10 * math.log10(4 * 4 / 1.25), 10 * math.log10(4 * 4 / 0.5)], rel=1e-5
    )
    assert psnr_db(target, target).tolist() == [100.0, 100.0]  # capped at max_db
    assert psnr_db(target, target, max_db=60.0).tolist() == pytest.approx([60.0, 60.0])


# --- defaults, boundaries and messages (what mutation testing found unpinned) -------------------
def test_documented_defaults():
    real, fake = torch.tensor([0.3, -0.2]), torch.tensor([1.0, -1.0])
    assert torch.equal(discriminator_loss(real, fake), discriminator_loss(real, fake, "bce"))
    assert torch.equal(generator_loss(fake), generator_loss(fake, "bce"))
    a, b = torch.randn(4, 2), torch.randn(5, 2)
    assert mmd(a, b).item() == mmd(a, b, "imq", (1.0,), prior_var=1.0).item()
    logits, x = torch.randn(2, 1, 2, 2), torch.rand(2, 1, 2, 2)
    assert torch.equal(reconstruction_loss(logits, x), reconstruction_loss(logits, x, "mse"))
    from genlab.losses.translation_losses import pixel_loss

    assert torch.equal(pixel_loss(logits, x), pixel_loss(logits, x, "l1"))
    kl = KLSparsity()  # Ng's UFLDL values
    assert (kl.rho, kl.weight, kl.active_threshold) == (0.05, 3.0, 0.1)
    assert (L1Sparsity().weight, L1Sparsity().active_threshold) == (0.05, 1e-3)
    assert (TopKSparsity().k, TopKSparsity().active_threshold) == (16, 1e-3)
    assert Sparsity.active_threshold == 1e-3


def test_sums_over_the_last_dim_with_leading_sample_dims():
    mean, logvar = torch.randn(3, 2, 4), torch.randn(3, 2, 4)  # (s, b, d)
    want = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(-1)
    assert kl_std_normal(mean, logvar).shape == (3, 2)
    assert torch.allclose(kl_std_normal(mean, logvar), want)
    assert torch.allclose(
        kl_diag_normals(mean, logvar, torch.zeros_like(mean), torch.zeros_like(logvar)), want
    )


def test_mmd_boundaries_and_message():
    two, three = torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([[0.0], [1.0], [3.0]])
    assert math.isfinite(mmd(two, two + 1).item())  # 2 codes per sample are enough
    assert math.isfinite(mmd(three, three[:2]).item())
    message = "the MMD penalty needs at least 2 codes per batch: raise data.batch_size."
    with pytest.raises(GenlabError) as err:
        mmd(two[:1], two)
    assert str(err.value) == message


def test_sparsity_boundaries_and_messages():
    code = torch.tensor([[0.0, 0.1, 0.0, 0.5], [0.0, 0.3, 0.0, 0.2], [0.0, 0.0, 0.7, 0.1]])
    stats = code_stats(code, threshold=0.1)  # 0.1 itself is not active
    assert stats["active_fraction"].item() == pytest.approx(4 / 12)
    assert stats["dead_unit_fraction"].item() == pytest.approx(1 / 4)
    z = torch.tensor([[3.0, 4.0, 0, 0, 0, 0, 0, 0, 0], [0.03, 0.04, 0, 0, 0, 0, 0, 0, 0]])
    want = (3.0 - 7.0 / 5.0) / (3.0 - 1.0)  # D = 9: scale-free, also for a small code
    assert hoyer_sparsity(z).tolist() == pytest.approx([want, want], rel=1e-5)
    ones = torch.ones(4, 2)  # unit means of 1 are clamped to 1 - 1e-6: finite
    rho = 0.05
    hat = 1 - 1e-6
    per_unit = rho * math.log(rho / hat) + (1 - rho) * math.log((1 - rho) / (1 - hat))
    assert kl_sparsity_batch(ones, rho).item() == pytest.approx(2 * per_unit, rel=1e-3)
    ends = torch.tensor([[0.0, 1.0], [0.5, 1.0]])  # codes may touch 0 and 1
    assert math.isfinite(KLSparsity().penalty(ends).item())
    message = (
        "model.sparsity=kl needs codes in [0, 1]: set model.encoder.out_activation=sigmoid "
        "(the model/sparsity=kl option does this unless something overrides it)."
    )
    for bad in (torch.tensor([[0.5, 1.5]]), torch.tensor([[-0.1, 0.5]])):
        with pytest.raises(GenlabError) as err:
            KLSparsity().penalty(bad)
        assert str(err.value) == message
    assert KLSparsity(weight=0.0).weight == 0.0 and KLSparsity(weight=0.5).weight == 0.5
    for make, text in (
        (lambda: L1Sparsity(-1), "model.sparsity.weight (L1 lambda) must be >= 0, got -1."),
        (
            lambda: KLSparsity(rho=1.0),
            "model.sparsity.rho (target mean activation) must be in (0, 1), got 1.0.",
        ),
        (lambda: KLSparsity(weight=-2), "model.sparsity.weight (KL beta) must be >= 0, got -2."),
        (lambda: TopKSparsity(k=0), "model.sparsity.k must be at least 1, got 0."),
    ):
        with pytest.raises(GenlabError) as err:
            make()
        assert str(err.value) == text


def test_translation_regions_and_psnr_cap():
    from genlab.losses.translation_losses import pixel_loss, psnr_db, region_mean

    values = torch.arange(8, dtype=torch.float32).view(2, 1, 2, 2)
    region = torch.tensor([[[[1, 1], [1, 0]]], [[[0, 0], [0, 1]]]], dtype=torch.bool)
    assert region_mean(values, region).tolist() == pytest.approx([1.0, 7.0])
    target = torch.zeros_like(values)
    mse = pixel_loss(values, target, "mse", region)
    assert mse.tolist() == pytest.approx([5 / 3, 49.0])
    assert psnr_db(values, target, region, data_range=8.0).tolist() == pytest.approx(
        [10 * math.log10(64 / (5 / 3)), 10 * math.log10(64 / 49)], rel=1e-5
    )
    same = torch.rand(1, 1, 2, 2)
    assert psnr_db(same, same, data_range=2.0).item() == pytest.approx(100.0, rel=1e-5)
