"""The variational autoencoder (Kingma & Welling 2014) and its variants by config:
β-VAE (`beta`, KL warm-up) and the conditional VAE (`conditional=true`).

Objective, per image (nats): -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I)), each term
SUMMED over pixels and latent dims, then AVERAGED over the batch. One sample of z per image,
the KL in closed form. The training loss is `recon + beta * warmup(step) * kl` (`*/loss`); the
true negative ELBO (`*/nelbo_nats`, `*/bits_per_dim`) is logged beside it and is what
checkpoints watch by default.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from genlab.distributions import DiagonalGaussian, std_normal_log_prob
from genlab.losses.likelihood import bernoulli_nll, bits_per_dim, gaussian_nll
from genlab.models.generative_ae import GenerativeAutoEncoder
from genlab.utils.errors import GenlabError

LIKELIHOODS = ("bernoulli", "gaussian")
GAUSSIAN_MEANS = ("sigmoid", "identity")


class VAE(GenerativeAutoEncoder):
    """Encoder -> q(z|x) = N(mu, diag sigma^2) -> z = mu + eps * sigma -> decoder -> p(x|z).

    - `encoder` outputs 2 * latent_dim numbers per image (mean and log-variance);
      `decoder` maps z to logits (B, C, H, W).
    - `likelihood`: `bernoulli` (logits; binary data from `data.binarize`, or continuous
      targets in [0, 1] as the classic recipe does) or `gaussian` (mean sigmoid(logits) or the
      raw output with `gaussian_mean=identity`; standard deviation `sigma`, learned with
      `learn_sigma=true`, one value for all pixels).
    - `beta` weighs the KL (β-VAE); `kl_warmup_steps` ramps that weight linearly from 0.
    - `conditional=true` (CVAE): encoder and decoder also see the label (one-hot, or the
      attribute vector), `num_classes` of them; give the nets as `_partial_` configs and they
      are built with one extra input channel (a learned label plane) / num_classes extra z dims.

    Satisfies CanEncode, CanSample, CanReconstruct and HasLikelihood (genlab.models.protocols).
    """

    codes_per_latent = 2  # the encoder outputs mean and log-variance

    def __init__(
        self,
        *,
        likelihood: str = "bernoulli",
        sigma: float = 0.1,
        learn_sigma: bool = False,
        gaussian_mean: str = "sigmoid",
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        monitor: str = "val/nelbo_nats",
        **shared: Any,
    ) -> None:
        """`shared`: the nets, optimizer and conditioning options of GenerativeAutoEncoder
        (encoder, decoder, optimizer, scheduler, latent_dim, conditional, num_classes,
        monitor_mode)."""
        if likelihood not in LIKELIHOODS:
            raise GenlabError(f"model.likelihood={likelihood!r}: use one of {LIKELIHOODS}.")
        if gaussian_mean not in GAUSSIAN_MEANS:
            raise GenlabError(
                f"model.gaussian_mean={gaussian_mean!r}: use one of {GAUSSIAN_MEANS}."
            )
        if sigma <= 0 or beta < 0 or kl_warmup_steps < 0:
            raise GenlabError(
                f"model.sigma={sigma} must be > 0, model.beta={beta} and "
                f"model.kl_warmup_steps={kl_warmup_steps} must be >= 0."
            )
        super().__init__(monitor=monitor, **shared)
        self.likelihood, self.gaussian_mean = likelihood, gaussian_mean
        log_sigma = torch.tensor(math.log(sigma))
        if likelihood == "gaussian" and learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        self.beta, self.kl_warmup_steps = beta, kl_warmup_steps

    # --- the model ------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiagonalGaussian:
        """q(z|x): a DiagonalGaussian with mean and logvar of shape (B, latent_dim)."""
        return DiagonalGaussian.from_params(self.encoder_output(x, y))

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) summed over pixels, from decoder outputs (..., B, C, H, W): (..., B)."""
        lead = out.shape[: out.ndim - 4]
        out_flat, x_flat = (
            out.reshape(-1, *out.shape[-3:]),
            x.expand_as(out).reshape(-1, *x.shape[-3:]),
        )
        if self.likelihood == "bernoulli":
            nll = bernoulli_nll(out_flat, x_flat)
        else:
            nll = gaussian_nll(self._gaussian_mean(out_flat), x_flat, self.log_sigma)
        return nll.reshape(lead + x.shape[:1])

    def _gaussian_mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out) if self.gaussian_mean == "sigmoid" else out

    def image_from_logits(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder outputs -> the mean of p(x|z), an image in [0, 1]."""
        if self.likelihood == "bernoulli" or self.gaussian_mean == "sigmoid":
            return torch.sigmoid(out)
        return out.clamp(0, 1)

    def encode_latent(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior mean: a deterministic code (B, latent_dim)."""
        return self.posterior(x, y).mean

    # --- likelihood -------------------------------------------------------------------------
    def elbo_terms(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One-sample negative ELBO terms per image (B,): recon = -log p(x|z), kl, nelbo."""
        q = self.posterior(x, y)
        z = q.rsample()
        recon = self.nll(self.decoder_logits(z, y), x)
        kl = q.kl()
        return {"recon": recon, "kl": kl, "nelbo": recon + kl, "z": z}

    def log_importance_weights(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        k: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """log w_i = log p(x, z_i) - log q(z_i|x) for k draws z_i ~ q(z|x): (k, B).

        logsumexp over k minus log k is the IWAE bound on log p(x) (Burda et al. 2015).
        """
        q = self.posterior(x, y)
        z = q.rsample((k,), generator=generator)  # (k, b, d)
        log_px_z = -self.nll(self.decoder_logits(z, y), x)  # (k, b)
        return log_px_z + std_normal_log_prob(z) - q.log_prob(z)

    # --- training -------------------------------------------------------------------------
    def kl_weight(self) -> float:
        """beta times the linear warm-up factor min(1, step / kl_warmup_steps)."""
        if self.kl_warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, self.global_step / self.kl_warmup_steps)

    def step(self, batch: tuple[torch.Tensor, Any], stage: str) -> torch.Tensor:
        x, y = batch  # (b, c, h, w) in [0, 1]; y is ignored unless conditional
        terms = self.elbo_terms(x, y)
        weight = self.kl_weight()
        loss = (terms["recon"] + weight * terms["kl"]).mean()
        if self.logs_now(stage):
            nelbo = terms["nelbo"].detach().mean()
            scalars = {
                "loss": loss,
                "nelbo_nats": nelbo,
                "bits_per_dim": bits_per_dim(nelbo, x[0].numel()),
                "recon_nats": terms["recon"].detach().mean(),
                "kl_nats": terms["kl"].detach().mean(),
            }
            if stage == "train":
                scalars["kl_weight"] = weight
                if isinstance(self.log_sigma, nn.Parameter):
                    scalars["sigma"] = self.log_sigma.detach().exp()
            bar = ("loss",) if stage == "train" else ("loss", "nelbo_nats")
            self.log_scalars(stage, scalars, batch_size=len(x), prog_bar=bar)
        return loss
