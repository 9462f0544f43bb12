"""Importance-weighted log p(x) against a model whose log-likelihood is known in closed form:
a linear-Gaussian VAE, x = W z + b + noise, z ~ N(0, I), so p(x) = N(b, W W^T + sigma^2 I)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from genlab.evaluation.density import iwae_log_px
from genlab.models.vae import VAE

D, LATENT, SIGMA = 9, 2, 0.5


class Affine(nn.Module):
    """A fixed affine map, shaped like a genlab encoder (out_dim) or decoder (in_dim, images)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, *, image: bool) -> None:
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(weight)
            self.lin.bias.copy_(bias)
        self.image = image
        self.out_dim, self.in_dim = weight.shape[0], weight.shape[1]

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        out = self.lin(v.flatten(1))
        return out.view(-1, 1, 3, 3) if self.image else out


def linear_gaussian(mean_shift: float = 0.0, logvar_shift: float = 0.0):
    """(VAE, W, b): the decoder is x = W z + b; the encoder is the exact posterior, optionally
    shifted (then it is only an approximation and the ELBO is strictly below log p(x))."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=gen))
    scales = torch.tensor([2.0, 1.0])
    w = q[:, :LATENT] * scales  # orthogonal columns: the posterior covariance is diagonal
    b = torch.randn(D, generator=gen) * 0.3
    post_var = 1.0 / (1.0 + scales**2 / SIGMA**2)  # diag of (I + W^T W / sigma^2)^-1
    a = post_var[:, None] * w.T / SIGMA**2  # posterior mean = a (x - b)
    enc_w = torch.cat([a, torch.zeros(LATENT, D)])
    enc_b = torch.cat([-a @ b + mean_shift, post_var.log() + logvar_shift])
    model = VAE(
        encoder=Affine(enc_w, enc_b, image=False),
        decoder=Affine(w, b, image=True),
        optimizer=torch.optim.Adam,
        latent_dim=LATENT,
        likelihood="gaussian",
        gaussian_mean="identity",
        sigma=SIGMA,
    )
    return model.eval(), w, b


def analytic_log_px(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cov = w @ w.T + SIGMA**2 * torch.eye(D)
    return MultivariateNormal(b, covariance_matrix=cov).log_prob(x.flatten(1))


def data(model: VAE, n: int, seed: int) -> torch.Tensor:
    """Draws from the model's own p(x)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, LATENT, generator=gen)
    mean = model.decoder_logits(z)
    return mean + SIGMA * torch.randn(mean.shape, generator=gen)


@torch.no_grad()
def test_exact_posterior_gives_log_px_for_every_sample():
    model, w, b = linear_gaussian()
    x = data(model, 16, seed=1)
    truth = analytic_log_px(x, w, b)
    log_w = model.log_importance_weights(x, k=32, generator=torch.Generator().manual_seed(2))
    assert log_w.shape == (32, 16)
    # with q(z|x) = p(z|x), every importance weight is p(x): the ELBO is tight
    assert torch.allclose(log_w, truth.expand_as(log_w), atol=1e-3)
    # the one-sample ELBO with the closed-form KL is unbiased for it: its mean is log p(x)
    torch.manual_seed(3)
    nelbo = model.elbo_terms(x.repeat(2000, 1, 1, 1))["nelbo"].view(2000, 16).mean(0)
    assert torch.allclose(-nelbo, truth, atol=0.05)


@torch.no_grad()
def test_iwae_is_above_the_elbo_tightens_with_k_and_matches_the_analytic_value():
    model, w, b = linear_gaussian(mean_shift=0.6, logvar_shift=0.8)
    x = data(model, 64, seed=3)
    truth = analytic_log_px(x, w, b).mean().item()
    torch.manual_seed(4)
    elbo = -torch.stack([model.elbo_terms(x)["nelbo"] for _ in range(200)]).mean().item()
    gen = torch.Generator().manual_seed(5)
    est = {
        k: iwae_log_px(model, x, k=k, chunk=64, generator=gen).mean().item()
        for k in (1, 10, 100, 3000)
    }
    assert elbo < truth - 0.3  # the approximate posterior leaves a real gap
    # the mean log-weight is the ELBO (Monte Carlo KL here, closed form in elbo_terms)
    mean_log_w = model.log_importance_weights(x, k=2000, generator=gen).mean().item()
    assert mean_log_w == pytest.approx(elbo, abs=0.1)
    assert elbo < est[10] < est[100] < est[3000] <= truth + 0.02
    assert est[3000] == pytest.approx(truth, abs=0.05)


@torch.no_grad()
def test_chunking_over_k_gives_the_same_bound():
    model, w, b = linear_gaussian(mean_shift=0.6, logvar_shift=0.8)
    x = data(model, 32, seed=6)
    one = iwae_log_px(model, x, k=2000, chunk=2000, generator=torch.Generator().manual_seed(7))
    many = iwae_log_px(model, x, k=2000, chunk=64, generator=torch.Generator().manual_seed(8))
    assert one.shape == many.shape == (32,)
    # different draws, same estimator: agreement within Monte Carlo error, both at log p(x)
    truth = analytic_log_px(x, w, b).mean().item()
    assert one.mean().item() == pytest.approx(many.mean().item(), abs=0.05)
    assert many.mean().item() == pytest.approx(truth, abs=0.05)
    assert math.isfinite(one.sum().item())
