"""A diagonal Gaussian posterior q(z|x): what a VAE encoder returns."""

from __future__ import annotations

import torch

from genlab.losses.kl import kl_diag_normals, kl_std_normal
from genlab.losses.likelihood import LOG_2PI


class DiagonalGaussian:
    """N(mean, diag(exp(logvar))) over the last dimension; batch dims in front.

    `rsample` is the reparameterization trick z = mean + eps * std with eps ~ N(0, I)
    (differentiable in mean and logvar, and seedable with a torch.Generator); `kl()` is the
    closed-form KL divergence to the prior N(0, I), summed over latent dims: shape (B,).
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean, self.logvar = mean, logvar  # (b, d) each

    @classmethod
    def from_params(cls, params: torch.Tensor, *, logvar_min: float = -30.0) -> DiagonalGaussian:
        """Split an encoder output (B, 2 * d) into mean and log-variance (clamped for safety)."""
        mean, logvar = params.chunk(2, dim=-1)
        return cls(mean, logvar.clamp(min=logvar_min, max=20.0))

    @property
    def stddev(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def variance(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def rsample(
        self, sample_shape: tuple[int, ...] = (), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Reparameterized draws, shape (*sample_shape, B, d)."""
        shape = (*sample_shape, *self.mean.shape)
        eps = torch.randn(
            shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + eps * self.stddev

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z), summed over the latent dim: z (..., B, d) -> (..., B)."""
        return -0.5 * ((z - self.mean).pow(2) / self.variance + self.logvar + LOG_2PI).sum(-1)

    def kl(self, other: DiagonalGaussian | None = None) -> torch.Tensor:
        """KL(self || other) in nats, summed over latent dims: (B,). `other=None` is N(0, I)."""
        if other is None:
            return kl_std_normal(self.mean, self.logvar)
        return kl_diag_normals(self.mean, self.logvar, other.mean, other.logvar)


def std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dim: (..., d) -> (...)."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
