"""Adversarial objectives as objects: each owns D's and G's terms and D's penalties, so the one
adversarial loop (genlab.models.adversarial) knows nothing of which game is played.

An objective is handed the critic (a function from images to D's raw scores, any shape (B, ...):
a PatchGAN's patch logits count equally per image) and the images, and returns the loss and
what to log. Scores are reduced per image after the per-score term, as pix2pix averages its
patch losses; penalties are weighted terms of their own (`Penalty`), so R1, LeCam, the WGAN
gradient penalty and the drift term combine with any game.

Games (the `loss` option of every adversarial model):
- `bce` (`NonSaturating`): D minimises BCE with real -> 1, fake -> 0; G the non-saturating
  -log D(G(z)) (Goodfellow et al. 2014, §3). One-sided label smoothing (Salimans et al. 2016).
- `minimax` (`Minimax`): the same D; G minimises log(1 - D(G(z))), the original game, which
  saturates when D wins.
- `hinge` (`Hinge`): D: relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z)) (Miyato et al. 2018).
- `ls` (`LeastSquares`): D: (D(x) - 1)^2/2 + D(G(z))^2/2; G: (D(G(z)) - 1)^2/2 (Mao 2017).
- `wgan_gp` (`Wasserstein` with `GradientPenalty`): D: D(G(z)) - D(x); G: -D(G(z))
  (Gulrajani et al. 2017), optionally with `EpsilonDrift` (Karras et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from genlab.losses.gan_losses import (
    KINDS,
    SMOOTHABLE,
    d_output,
    discriminator_loss,
    epsilon_drift,
    generator_loss,
    gradient_penalty,
)
from genlab.utils.errors import GenlabError

Critic = Callable[[torch.Tensor], torch.Tensor]


def per_image(scores: torch.Tensor) -> torch.Tensor:
    """Scores or per-score terms of any shape (B, ...) -> their mean per image (B,)."""
    return scores.float().reshape(len(scores), -1).mean(1)


class Penalty(nn.Module):
    """A weighted term added to D's loss: `weight * value(...)`, logged as `name`."""

    name = "penalty"

    def __init__(self, weight: float) -> None:
        super().__init__()
        if weight < 0:
            raise GenlabError(f"the {self.name} weight {weight} must be >= 0.")
        self.weight = float(weight)

    def value(
        self,
        critic: Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        real_scores: torch.Tensor,
        fake_scores: torch.Tensor,
        noise: torch.Generator | None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def term(
        self,
        critic: Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        real_scores: torch.Tensor,
        fake_scores: torch.Tensor,
        noise: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What one D step adds to D's loss, and the value it logs: `weight * value` and
        `value` (a lazy penalty, R1 with `every`, adds it on some steps only)."""
        value = self.value(critic, real, fake, real_scores, fake_scores, noise)
        return self.weight * value, value


class GradientPenalty(Penalty):
    """WGAN-GP: (||grad critic(x_hat)|| - 1)^2 between real and fake (Gulrajani et al. 2017);
    the interpolation weights come from the iteration's noise."""

    name = "gp"

    def value(self, critic, real, fake, real_scores, fake_scores, noise):
        return gradient_penalty(lambda t: per_image(critic(t)), real, fake, generator=noise).mean()


class EpsilonDrift(Penalty):
    """epsilon * D(x)^2 on real scores (Karras et al. 2018, §A.1)."""

    name = "drift"

    def value(self, critic, real, fake, real_scores, fake_scores, noise):
        return per_image(epsilon_drift(real_scores)).mean()


class AdversarialObjective(nn.Module):
    """A game between G and D: per-score terms for D and G, how D's scores read (as
    probabilities or raw), and D's penalties. Subclasses set `kind` and may accept label
    smoothing (`smoothable`)."""

    kind = "?"
    smoothable = False

    def __init__(self, *, label_smoothing: float = 0.0, penalties: Sequence[Penalty] = ()) -> None:
        super().__init__()
        if label_smoothing and not self.smoothable:
            raise GenlabError(
                f"model.label_smoothing={label_smoothing} has no meaning for model.loss="
                f"{self.kind!r}; use it with {SMOOTHABLE} or set model.label_smoothing=0."
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise GenlabError(f"model.label_smoothing={label_smoothing} must be in [0, 1).")
        self.label_smoothing = float(label_smoothing)
        self.penalties = nn.ModuleList([p for p in penalties if p.weight])

    @property
    def probability_valued(self) -> bool:
        """Whether D's output is a probability (its saturation is a collapse sign)."""
        return self.kind in SMOOTHABLE

    def penalty(self, name: str) -> Penalty | None:
        return next((p for p in self.penalties if p.name == name), None)

    def readable(self, scores: torch.Tensor) -> torch.Tensor:
        """D's scores as logged: probabilities for bce/minimax, raw otherwise."""
        return d_output(scores, self.kind)

    def d_terms(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return discriminator_loss(
            real_scores, fake_scores, self.kind, real_target=1.0 - self.label_smoothing
        )

    def real_part(self, scores: torch.Tensor) -> torch.Tensor:
        """D's per-score term for scores that should read real (label smoothing included)."""
        target = 1.0 - self.label_smoothing
        if self.kind in ("bce", "minimax"):
            return torch.nn.functional.binary_cross_entropy_with_logits(
                scores, torch.full_like(scores, target), reduction="none"
            )
        if self.kind == "ls":
            return 0.5 * (scores - target).pow(2)
        if self.kind == "hinge":
            return torch.relu(1.0 - scores)
        return -scores  # wgan_gp

    def fake_part(self, scores: torch.Tensor) -> torch.Tensor:
        """D's per-score term for scores that should read fake (to compose D losses with more
        pairings, as a matching-aware D does)."""
        if self.kind in ("bce", "minimax"):
            return torch.nn.functional.softplus(scores)
        if self.kind == "hinge":
            return torch.relu(1.0 + scores)
        if self.kind == "ls":
            return 0.5 * scores.pow(2)
        return scores  # wgan_gp

    def g_terms(self, fake_scores: torch.Tensor) -> torch.Tensor:
        return generator_loss(fake_scores, self.kind)

    def discriminator_loss(
        self,
        critic: Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        noise: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss on a real and a (detached) fake batch, and what to log (`d_real`,
        `d_fake`, each penalty's value); the scores are kept for health checks."""
        real_s, fake_s = critic(real).float(), critic(fake).float()
        loss = per_image(self.d_terms(real_s, fake_s)).mean()
        logs = {"real_scores": real_s, "fake_scores": fake_s}
        for p in self.penalties:
            added, logs[p.name] = p.term(critic, real, fake, real_s, fake_s, noise)
            loss = loss + added
        return loss, logs

    def generator_loss(self, critic: Critic, fake: torch.Tensor) -> torch.Tensor:
        """G's adversarial loss on its fakes (D frozen by the caller)."""
        return per_image(self.g_terms(critic(fake).float())).mean()

    def evaluate(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, Any]:
        """Val/test scalars from D's scores (no penalty: no gradients there)."""
        return {
            "loss_d": per_image(discriminator_loss(real_scores, fake_scores, self.kind)).mean(),
            "loss_g": per_image(self.g_terms(fake_scores)).mean(),
            "d_real": self.readable(real_scores).mean(),
            "d_fake": self.readable(fake_scores).mean(),
        }


class NonSaturating(AdversarialObjective):
    kind, smoothable = "bce", True


class Minimax(AdversarialObjective):
    kind, smoothable = "minimax", True


class Hinge(AdversarialObjective):
    kind = "hinge"


class LeastSquares(AdversarialObjective):
    kind, smoothable = "ls", True


class Wasserstein(AdversarialObjective):
    kind = "wgan_gp"


GAMES: dict[str, type[AdversarialObjective]] = {
    cls.kind: cls for cls in (NonSaturating, Minimax, Hinge, LeastSquares, Wasserstein)
}
assert set(GAMES) == set(KINDS)


def objective(
    loss: str = "bce",
    *,
    label_smoothing: float = 0.0,
    gp_weight: float = 10.0,
    drift_weight: float = 0.0,
    penalties: Sequence[Penalty] = (),
) -> AdversarialObjective:
    """The objective named by the models' `loss` option, with its penalties: `wgan_gp` gets
    the gradient penalty (`gp_weight`), any game the drift term (`drift_weight` > 0) and the
    extra `penalties` (R1, LeCam: genlab.losses.gan_regularizers)."""
    if loss not in GAMES:
        raise GenlabError(f"model.loss={loss!r} is not an adversarial loss: use one of {KINDS}.")
    if drift_weight < 0:
        raise GenlabError(f"model.drift_weight={drift_weight} must be >= 0 (0 = off).")
    extra = [*penalties]
    if loss == "wgan_gp":
        extra.insert(0, GradientPenalty(gp_weight))
    if drift_weight:
        extra.append(EpsilonDrift(drift_weight))
    return GAMES[loss](label_smoothing=label_smoothing, penalties=extra)
