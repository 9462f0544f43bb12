"""Discriminator regularisers for small data, as `Penalty` terms of any adversarial game
(genlab.losses.gan_objectives): the models' `penalties` option, {name: Penalty}.

- `R1` (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", eq. 9):
  gamma/2 * E ||grad_x D(x)||^2 on real images. Its `weight` is gamma: the value logged
  (`train/r1`) is 1/2 E ||grad_x D(x)||^2. `every` = k > 1 makes it lazy (Karras et al. 2020,
  StyleGAN2, §B): taken on one D step in k, weighted k times, at about 1/k of its cost.
- `LeCam` (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under Limited
  Data", eq. 3, in the form of the authors' code): E[relu(D(x) - alpha_F)^2] +
  E[relu(alpha_R - D(G(z)))^2], with alpha_R and alpha_F exponential moving averages of D's
  mean raw output on real and on fake images. `weight` is the paper's lambda.

Both see D as training sees it (the critic the loop hands them: behind the augmentation when
there is one) and D's raw scores (B, ...): a PatchGAN's per-image score is the mean of its
patches.
"""

from __future__ import annotations

import torch

from genlab.losses.gan_objectives import Critic, Penalty, per_image
from genlab.utils.errors import GenlabError


class R1(Penalty):
    """1/2 E_x ||grad_x D(x)||^2 over the real batch (x the images before augmentation, as
    StyleGAN2-ADA takes it: the gradient flows back through the augmentation); with
    `weight` = gamma the term added to D's loss is gamma/2 E ||grad||^2. D is run again on a
    copy of the reals that requires grad (the scores the loop computed are detached from x),
    and the gradient is kept in the graph (create_graph) so D's step minimises it."""

    name = "r1"

    def __init__(self, weight: float, *, every: int = 1) -> None:
        super().__init__(weight)
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise GenlabError(
                f"model.penalties.r1.every={every!r} must be a whole number >= 1 (1: R1 at "
                "every D step; k: lazy R1, on one D step in k, weighted k times)."
            )
        self.every = int(every)
        self._steps = 0  # D steps taken, counted on the host: no sync to decide a step
        if self.every > 1:  # a plain R1's state dict stays empty, as before `every` existed
            self.register_buffer("steps", torch.tensor(0, dtype=torch.long))
            self.register_buffer("last", torch.tensor(0.0))  # the value last taken, logged

    def extra_repr(self) -> str:
        return f"weight={self.weight}, every={self.every}"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.every > 1 and prefix + "steps" in state_dict:  # a resumed run keeps the rhythm
            self._steps = int(state_dict[prefix + "steps"])

    def value(self, critic: Critic, real, fake, real_scores, fake_scores, noise):
        x = real.detach().requires_grad_(True)
        with torch.autocast(device_type=x.device.type, enabled=False):
            scores = per_image(critic(x)).sum()
        (grad,) = torch.autograd.grad(scores, x, create_graph=True)
        return 0.5 * grad.float().pow(2).flatten(1).sum(1).mean()

    def term(self, critic: Critic, real, fake, real_scores, fake_scores, noise):
        """Plain: `weight * value` at every D step. Lazy (`every` = k): `k * weight * value`
        at D steps 0, k, 2k, ... and nothing in between (D is not run again there); the value
        logged between them is the last one taken."""
        if self.every == 1:
            return super().term(critic, real, fake, real_scores, fake_scores, noise)
        due = self._steps % self.every == 0
        self._steps += 1
        self.steps.fill_(self._steps)
        if not due:
            return real_scores.new_zeros((), dtype=torch.float32), self.last.clone()
        value = self.value(critic, real, fake, real_scores, fake_scores, noise)
        self.last.copy_(value.detach())
        return self.every * self.weight * value, value


class LeCam(Penalty):
    """The LeCam regulariser (module doc) with its two anchors as buffers (saved in
    checkpoints: a resumed run continues them exactly).

    At every D step, before the term is taken (as the authors' code), each anchor moves
    towards the batch mean of D's raw scores: alpha <- decay * alpha + (1 - decay) * mean
    (alpha_R from the real scores, alpha_F from the fake ones; `decay` 0.99, anchors from 0).
    The term is then mean(relu(D(x) - alpha_F)^2) + mean(relu(alpha_R - D(G(z)))^2), per
    image over its scores: D's output on reals is pulled down only where it exceeds the
    fakes' anchor, on fakes pulled up only where below the reals' anchor. `updates` counts
    the anchor updates."""

    name = "lecam"

    def __init__(self, weight: float, *, decay: float = 0.99) -> None:
        super().__init__(weight)
        if not 0.0 <= decay < 1.0:
            raise GenlabError(f"the lecam decay {decay} must be in [0, 1).")
        self.decay = float(decay)
        self.register_buffer("anchor_real", torch.tensor(0.0))
        self.register_buffer("anchor_fake", torch.tensor(0.0))
        self.register_buffer("updates", torch.tensor(0, dtype=torch.long))

    @torch.no_grad()
    def update(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> None:
        """Move both anchors towards the batch means of the (raw) scores; no host sync."""
        self.anchor_real.lerp_(real_scores.detach().float().mean(), 1.0 - self.decay)
        self.anchor_fake.lerp_(fake_scores.detach().float().mean(), 1.0 - self.decay)
        self.updates += 1

    def value(self, critic: Critic, real, fake, real_scores, fake_scores, noise):
        self.update(real_scores, fake_scores)
        real_term = torch.relu(real_scores.float() - self.anchor_fake).pow(2)
        fake_term = torch.relu(self.anchor_real - fake_scores.float()).pow(2)
        return per_image(real_term).mean() + per_image(fake_term).mean()
