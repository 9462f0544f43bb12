"""Closed-form checks of the VAE's losses and their reductions (sum over pixels and latent
dims per image, mean over the batch), the MMD, and the posterior distribution object."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from genlab.distributions import DiagonalGaussian
from genlab.losses.kl import kl_diag_normals, kl_std_normal
from genlab.losses.likelihood import bernoulli_nll, bits_per_dim, gaussian_nll
from genlab.losses.mmd import kernel_matrix, mmd
from genlab.models.vae import VAE
from genlab.utils.errors import GenlabError


def test_kl_of_standard_normal_with_itself_is_zero():
    zeros = torch.zeros(5, 7)
    assert torch.equal(kl_std_normal(zeros, zeros), torch.zeros(5))
    mean, logvar = torch.randn(5, 7), torch.randn(5, 7)
    assert torch.allclose(kl_diag_normals(mean, logvar, mean, logvar), torch.zeros(5), atol=1e-6)


def test_kl_matches_hand_computation():
    # q = N([1, 2], diag[4, 1/4]) vs N(0, I): 0.5 * sum(mu^2 + var - 1 - ln var)
    mean = torch.tensor([[1.0, 2.0]])
    logvar = torch.log(torch.tensor([[4.0, 0.25]]))
    by_hand = 0.5 * (1 + 4 - 1 - math.log(4)) + 0.5 * (4 + 0.25 - 1 - math.log(0.25))
    assert kl_std_normal(mean, logvar).item() == pytest.approx(by_hand, rel=1e-6)
    assert by_hand == pytest.approx(3.625, abs=1e-9)
    # between two 1-d Gaussians: ln(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2
    kl = kl_diag_normals(
        torch.tensor([[0.5]]),
        torch.tensor([[math.log(1.0)]]),
        torch.tensor([[-1.0]]),
        torch.tensor([[math.log(4.0)]]),
    )
    assert kl.item() == pytest.approx(math.log(2.0) + (1.0 + 2.25) / 8.0 - 0.5, rel=1e-6)


def test_kl_matches_torch_distributions_and_sums_over_latent_dims():
    gen = torch.Generator().manual_seed(0)
    m1, lv1, m2, lv2 = (torch.randn(6, 4, generator=gen) for _ in range(4))
    q = Independent(Normal(m1, torch.exp(0.5 * lv1)), 1)
    p = Independent(Normal(m2, torch.exp(0.5 * lv2)), 1)
    assert torch.allclose(kl_diag_normals(m1, lv1, m2, lv2), kl_divergence(q, p), atol=1e-5)
    std = Independent(Normal(torch.zeros(6, 4), torch.ones(6, 4)), 1)
    assert torch.allclose(DiagonalGaussian(m1, lv1).kl(), kl_divergence(q, std), atol=1e-5)
    assert DiagonalGaussian(m1, lv1).kl().shape == (6,)


def test_posterior_log_prob_and_reparameterized_samples():
    mean = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.log(torch.tensor([[0.25, 4.0]])).requires_grad_()
    q = DiagonalGaussian(mean, logvar)
    z = q.rsample((20000,), generator=torch.Generator().manual_seed(0))  # (s, 1, 2)
    assert z.shape == (20000, 1, 2)
    assert torch.allclose(z.mean(0), mean.detach(), atol=0.05)
    assert torch.allclose(z.std(0), torch.tensor([[0.5, 2.0]]), atol=0.05)
    ref = Normal(mean, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    assert torch.allclose(q.log_prob(z), ref, atol=1e-5)
    z.sum().backward()  # the reparameterization trick: gradients reach mean and logvar
    assert mean.grad is not None and logvar.grad is not None and logvar.grad.abs().sum() > 0
    # Monte Carlo KL agrees with the closed form
    std = Normal(0.0, 1.0)
    mc = (q.log_prob(z) - std.log_prob(z).sum(-1)).mean()
    assert mc.item() == pytest.approx(q.kl().item(), abs=0.05)


def test_bernoulli_nll_is_the_bce_sum_per_image():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 5, 5, generator=gen)
    x = torch.bernoulli(torch.full((3, 1, 5, 5), 0.3), generator=gen)
    nll = bernoulli_nll(logits, x)
    assert nll.shape == (3,)
    total = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")
    assert nll.sum().item() == pytest.approx(total.item(), rel=1e-5)
    ref = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(nll, ref, atol=1e-5)


def test_gaussian_nll_matches_normal_log_prob():
    gen = torch.Generator().manual_seed(2)
    mean, x = torch.rand(4, 3, 2, 2, generator=gen), torch.rand(4, 3, 2, 2, generator=gen)
    log_sigma = torch.tensor(math.log(0.3))
    ref = -Normal(mean, 0.3).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(gaussian_nll(mean, x, log_sigma), ref, atol=1e-5)


def test_bits_per_dim():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert bits_per_dim(100.0, 784) == pytest.approx(100 / 784 / math.log(2))


def test_mmd_kernels_and_estimates():
    a = torch.zeros(1, 3)
    b = torch.tensor([[1.0, 1.0, 1.0]])  # |a - b|^2 = 3; C = 2 * 3 * scale
    assert kernel_matrix(a, b, "imq", [1.0]).item() == pytest.approx(6 / 9)
    assert kernel_matrix(a, b, "rbf", [1.0, 2.0]).item() == pytest.approx(
        math.exp(-3 / 6) + math.exp(-3 / 12)
    )
    gen = torch.Generator().manual_seed(3)
    p, q = torch.randn(400, 2, generator=gen), torch.randn(400, 2, generator=gen)
    shifted = torch.randn(400, 2, generator=gen) + 2.0
    for kind in ("imq", "rbf"):
        same, different = mmd(p, q, kind).item(), mmd(p, shifted, kind).item()
        assert abs(same) < 0.02 and different > 0.2, (kind, same, different)
    with pytest.raises(GenlabError):
        mmd(p, q, "cosine")


class LinearDecoder(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.in_dim, self.net = d, nn.Linear(d, 9)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 1, 3, 3)


class FlatEncoder(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.out_dim, self.net = 2 * d, nn.Linear(9, 2 * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def tiny_vae(**kw) -> VAE:
    torch.manual_seed(0)
    return VAE(
        encoder=FlatEncoder(2),
        decoder=LinearDecoder(2),
        optimizer=torch.optim.Adam,
        latent_dim=2,
        **kw,
    )


def test_vae_elbo_is_summed_per_image_with_one_reparameterized_sample():
    model = tiny_vae()
    x = torch.bernoulli(torch.full((4, 1, 3, 3), 0.5), generator=torch.Generator().manual_seed(4))
    torch.manual_seed(5)
    terms = model.elbo_terms(x)
    # by hand, with the same noise
    torch.manual_seed(5)
    params = model.encoder(x)
    mu, logvar = params[:, :2], params[:, 2:]
    z = mu + torch.randn(4, 2) * torch.exp(0.5 * logvar)
    logits = model.decoder(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    assert terms["recon"].shape == terms["kl"].shape == (4,)
    assert torch.allclose(terms["recon"], recon, atol=1e-5)
    assert torch.allclose(terms["kl"], kl, atol=1e-6)
    assert torch.allclose(terms["nelbo"], recon + kl, atol=1e-5)


def test_vae_rejects_mis_sized_encoders_and_bad_options():
    with pytest.raises(GenlabError, match="2 x model.latent_dim"):
        VAE(
            encoder=FlatEncoder(3),
            decoder=LinearDecoder(2),
            optimizer=torch.optim.Adam,
            latent_dim=2,
        )
    with pytest.raises(GenlabError, match="likelihood"):
        tiny_vae(likelihood="poisson")


def test_learned_sigma_is_a_parameter_and_fixed_sigma_is_not():
    learned = tiny_vae(likelihood="gaussian", learn_sigma=True, sigma=0.5)
    fixed = tiny_vae(likelihood="gaussian", sigma=0.5)
    assert any(p is learned.log_sigma for p in learned.parameters())
    assert not any(p is fixed.log_sigma for p in fixed.parameters())
    assert learned.log_sigma.exp().item() == pytest.approx(0.5)


def test_label_vectors_for_conditioning():
    from genlab.nets.conditional import label_vector

    assert torch.equal(
        label_vector(torch.tensor([2, 0]), 3), torch.tensor([[0, 0, 1.0], [1.0, 0, 0]])
    )
    attrs = torch.tensor([[1, 0, 1], [0, 0, 0]])
    assert torch.equal(label_vector(attrs, 3), attrs.float())  # attribute vectors pass through
    with pytest.raises(GenlabError, match="num_classes"):
        label_vector(torch.tensor([3]), 3)
    with pytest.raises(GenlabError, match="num_classes=3"):
        label_vector(attrs, 40)
