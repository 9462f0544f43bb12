"""Adversarial losses for GANs, as plain functions of the discriminator's scores.

`real` and `fake` are D's raw outputs (logits for `bce`/`minimax`, scores otherwise), shape
(B,). Every function returns one value per example (B,); the model averages.

Kinds:
- `bce` (default): D minimises BCE with real -> 1, fake -> 0; G the non-saturating
  -log D(G(z)) (Goodfellow et al. 2014, §3).
- `minimax`: the same D; G minimises log(1 - D(G(z))), the original game, which saturates
  when D wins (kept to show why `bce` is the default).
- `hinge`: D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z)) (Miyato et al. 2018).
- `ls`: least squares, D: (D(x) - 1)^2/2 + D(G(z))^2/2; G: (D(G(z)) - 1)^2/2 (Mao et al. 2017).
- `wgan_gp`: D(G(z)) - D(x), plus `gradient_penalty` (Gulrajani et al. 2017); G: -D(G(z)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

KINDS = ("bce", "minimax", "hinge", "ls", "wgan_gp")
# losses whose real target can be smoothed (one-sided label smoothing, Salimans et al. 2016)
SMOOTHABLE = ("bce", "minimax", "ls")


def discriminator_loss(
    real: torch.Tensor, fake: torch.Tensor, kind: str = "bce", *, real_target: float = 1.0
) -> torch.Tensor:
    """D's loss on a batch of real scores and a batch of fake scores: (B,).

    `real_target` < 1 is one-sided label smoothing (only the real label moves; `SMOOTHABLE`).
    """
    if kind in ("bce", "minimax"):
        target = torch.full_like(real, real_target)
        return F.binary_cross_entropy_with_logits(real, target, reduction="none") + F.softplus(
            fake
        )  # -log(1 - sigmoid(fake)) = softplus(fake)
    if kind == "hinge":
        return F.relu(1.0 - real) + F.relu(1.0 + fake)
    if kind == "ls":
        return 0.5 * (real - real_target).pow(2) + 0.5 * fake.pow(2)
    if kind == "wgan_gp":
        return fake - real
    raise ValueError(f"unknown adversarial loss {kind!r}; use one of {KINDS}")


def generator_loss(fake: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """G's loss from D's scores on its samples: (B,)."""
    if kind == "bce":
        return F.softplus(-fake)  # -log sigmoid(fake): non-saturating
    if kind == "minimax":
        return -F.softplus(fake)  # log(1 - sigmoid(fake)): minimised by G
    if kind in ("hinge", "wgan_gp"):
        return -fake
    if kind == "ls":
        return 0.5 * (fake - 1.0).pow(2)
    raise ValueError(f"unknown adversarial loss {kind!r}; use one of {KINDS}")


def d_output(scores: torch.Tensor, kind: str) -> torch.Tensor:
    """D's output for logging: a probability for bce/minimax, else the raw score."""
    return torch.sigmoid(scores) if kind in ("bce", "minimax") else scores


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(||grad_x critic(x_hat)||_2 - 1)^2 at random points x_hat between real and fake: (B,).

    `critic` maps images (B, C, H, W) to scores (B,); gradients are kept (create_graph) so the
    penalty trains the critic.
    """
    eps = torch.rand(
        (real.shape[0],) + (1,) * (real.ndim - 1), generator=generator, device=real.device
    ).to(real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.float().sum(), x_hat, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1.0).pow(2)


def epsilon_drift(real: torch.Tensor) -> torch.Tensor:
    """D(x)^2 on real images: (B,). Weighted by a small epsilon (0.001 in Karras et al. 2018,
    §A.1) and added to a WGAN critic's loss, it keeps the critic's scores from drifting far
    from zero, which the Wasserstein loss alone leaves free."""
    return real.float().pow(2)
