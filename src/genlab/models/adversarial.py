"""The one adversarial loop: every GAN-like family (the GAN, DCGAN and cGAN, the progressive
GAN, image-to-image translation, and the families built on them) trains through it. A family
says how it generates and what else its generator is judged by; the game is an objective object
(genlab.losses.gan_objectives); the loop owns everything else.

Each iteration (= one training batch, or one of its k parts with `perf.steps_per_batch=k`
= one counted step everywhere):

1. `n_critic` discriminator steps on the real batch and fakes (the iteration's seeded noise),
   D's loss and penalties from the objective;
2. one generator step through D with D frozen (`requires_grad=False`, restored in a
   `finally`), so D gets no gradient and no update: the objective's adversarial term times
   `adv_weight`, plus the family's `generator_terms`;
3. the EMA copy of G moves towards G (its batch-norm statistics: the docstring of
   `_update_ema`); schedulers step.

Steps: Lightning counts `global_step` once per `LightningOptimizer.step()`, so two optimizers
would count every iteration twice (max_steps, checkpoint intervals and the logged step would
all drift). The generator steps through its LightningOptimizer (counted); the discriminator
steps through `trainer.strategy.optimizer_step` -- the exact call `LightningOptimizer.step`
makes, so AMP's scaler (unscale, inf check, update), `on_before_optimizer_step` (gradient
norms, clipping) and DDP behave the same -- minus the progress counter. So `global_step` is
the number of G updates = iterations, and D's update count is `n_critic * global_step`.

Noise: the iteration's generator is seeded by (seed, step, rank): a resumed run draws exactly
the noise of an uninterrupted one, and DDP ranks draw different noise.

What a family implements (see GAN and Translation):
- `prepare_batch(batch) -> (real, cond)`: the real images in the nets' units, the condition;
- `make_fake(cond, n, noise) -> fake`: G's output in the nets' units (`fresh_fakes`: whether
  each D step draws new fakes, as the GAN does, or all reuse one forward pass, as translation);
- `critic(cond) -> (x -> scores)`: D's raw scores of images given the condition;
- `extra_generator_terms(fake, real, cond) -> {name: (weight, value)}`: its generator terms;
- `eval_scalars(batch, batch_idx) -> {name: value}`: what val/test log.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from genlab.losses.gan_objectives import AdversarialObjective, Penalty
from genlab.losses.gan_objectives import objective as make_objective
from genlab.models.genlab_module import GenlabModule
from genlab.utils.errors import GenlabError

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]
Critic = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def frozen(module: nn.Module, params: Sequence[nn.Parameter] | None = None) -> Iterator[None]:
    """Turn off `requires_grad` on every parameter of `module` (`params`, when the caller has
    the list already); restore the old flags on exit, also when the body raises."""
    params = list(module.parameters()) if params is None else params
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


COLLAPSE_HINTS = {
    "d_saturated": "D separates real and fake completely, so G's gradient vanishes: the samples "
    "have probably collapsed. Lower model.optimizer_d.lr, use label smoothing, or "
    "model.loss=hinge.",
    "g_grad_vanished": "G receives (almost) no gradient: it has stopped learning.",
    "d_grad_vanished": "D receives (almost) no gradient: it has stopped learning.",
    "loss_exploded": "a loss beyond 1e6: the training is unstable even if still finite. Lower the "
    "learning rates or add model.gradient_clip_val=1.0.",
}


def _no_closure() -> None:
    return None


@dataclass(frozen=True)
class _NetTensors:
    """The parameter and buffer lists of G, its EMA copy and D, taken at one time (`nets`)."""

    nets: tuple[nn.Module | None, ...]
    g_params: list[torch.Tensor]
    ema_params: list[torch.Tensor]
    g_buffers: list[torch.Tensor]
    ema_buffers: list[torch.Tensor]
    d_params: list[nn.Parameter]

    @classmethod
    def of(cls, g: nn.Module, ema: nn.Module | None, d: nn.Module) -> _NetTensors:
        g_params, g_buffers = list(g.parameters()), list(g.buffers())
        ema_params = list(ema.parameters()) if ema is not None else []
        ema_buffers = list(ema.buffers()) if ema is not None else []
        if ema is not None and (
            len(ema_params) != len(g_params) or len(ema_buffers) != len(g_buffers)
        ):
            raise GenlabError(
                f"the EMA copy of G has {len(ema_params)} parameters and {len(ema_buffers)} "
                f"buffers, G {len(g_params)} and {len(g_buffers)}: a family that changes G's "
                "structure must change its EMA copy alike."
            )
        return cls(
            nets=(g, ema, d),
            g_params=g_params,
            ema_params=ema_params,
            g_buffers=g_buffers if ema is not None else [],
            ema_buffers=ema_buffers,
            d_params=list(d.parameters()),
        )


def split_batch(batch: Any, k: int) -> list[Any]:
    """A batch of k batches -> k batches in order: each tensor cut along its first dimension
    into parts of ceil(n / k) (tuples, lists and dicts of them alike; anything else is given
    to every part)."""
    if isinstance(batch, torch.Tensor):
        return list(batch.split(-(-len(batch) // k)))
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], (str, int, float)):
        size = -(-len(batch) // k)  # one value per sample (e.g. captions as text)
        return [batch[i : i + size] for i in range(0, len(batch), size)]
    if isinstance(batch, (tuple, list)):
        columns = [split_batch(x, k) for x in batch]
        n = min(len(c) for c in columns) if columns else 0
        return [type(batch)(c[i] for c in columns) for i in range(n)]
    if isinstance(batch, Mapping):
        columns = {key: split_batch(x, k) for key, x in batch.items()}
        n = min(len(c) for c in columns.values()) if columns else 0
        return [{key: c[i] for key, c in columns.items()} for i in range(n)]
    return [batch] * k


def _forget_tensor_lists(module: nn.Module, incompatible_keys: Any) -> None:
    """After `load_state_dict` (which may put new tensors in place, `assign=True`)."""
    if isinstance(module, AdversarialModule):
        module.invalidate_tensor_lists()


class AdversarialModule(GenlabModule):
    """G and D trained against each other by the loop above (module doc).

    Options shared by every adversarial family: the nets, `optimizer_g`/`optimizer_d` and
    their schedulers (`scheduler_interval`: step or epoch); the game, `loss` in `bce`
    (non-saturating, default) | `minimax` | `hinge` | `ls` | `wgan_gp` with `gp_weight`,
    `label_smoothing` (one-sided), `drift_weight` (epsilon * D(x)^2), `penalties` (extra D
    terms, e.g. R1 or LeCam) -- or a whole `objective` object, which replaces those options;
    `n_critic` D steps per G step; `ema_decay` (null = sample from G itself) and
    `ema_batchnorm` (`own` | `copy`: where the EMA copy's batch-norm statistics come from,
    `_update_ema`);
    `gradient_clip_val` (per net, on unscaled gradients); `seed` of the iteration noise;
    `nan_check_every_n_steps`; `monitor`.

    Logs, on the steps the loggers write, `train/loss_d`, `train/loss_g`, `train/d_real`,
    `train/d_fake` (D's outputs: probabilities for bce/minimax), each penalty (`train/gp`),
    `train/grad_norm_d`, `train/grad_norm_g` (before clipping), and the family's terms
    (`train/loss_g_<name>`, with `train/loss_g_adv`); `val/step` after each validation. A
    non-finite loss stops training with a GenlabError naming the step; no checkpoint is
    written after it. Collapse signs are counted and reported (`health()`).
    """

    ddp_find_unused_parameters = True  # G and D step separately (on_fit_start)
    _tensor_lists: _NetTensors | None = None  # `_nets_tensors`
    # whether each D step draws new fakes (the GAN) or all reuse one G pass (translation)
    fresh_fakes = True

    def __init__(
        self,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        scheduler_g: SchedulerFactory | None = None,
        scheduler_d: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        loss: str = "bce",
        label_smoothing: float = 0.0,
        gp_weight: float = 10.0,
        drift_weight: float = 0.0,
        penalties: Mapping[str, Penalty] | None = None,
        objective: AdversarialObjective | None = None,
        augment: nn.Module | None = None,
        adv_weight: float = 1.0,
        n_critic: int = 1,
        ema_decay: float | None = 0.999,
        ema_batchnorm: str = "own",
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        seed: int = 0,
        nan_check_every_n_steps: int | None = None,
        monitor: str = "val/step",
        monitor_mode: str = "max",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if n_critic < 1:
            raise GenlabError(f"model.n_critic={n_critic} must be at least 1.")
        if scheduler_interval not in ("step", "epoch"):
            raise GenlabError(
                f"model.scheduler_interval={scheduler_interval!r}: use step or epoch."
            )
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise GenlabError(
                f"model.ema_decay={ema_decay} must be in [0, 1), or null for no EMA."
            )
        if adv_weight < 0:
            raise GenlabError(f"model.adv_weight={adv_weight} must be >= 0.")
        if ema_batchnorm not in ("own", "copy"):
            raise GenlabError(
                f"model.ema_batchnorm={ema_batchnorm!r}: use own (the EMA copy's batch-norm "
                "statistics are those of its own activations) or copy (G's, copied)."
            )
        self.generator, self.discriminator = generator, discriminator
        # the game: an object given whole, or the one the options name (genlab.losses)
        self.objective = objective or make_objective(
            loss,
            label_smoothing=label_smoothing,
            gp_weight=gp_weight,
            drift_weight=drift_weight,
            penalties=list((penalties or {}).values()),
        )
        self._gp_weight = float(gp_weight)
        # what D sees of every image, real or fake, in training (DiffAugment, ADA): a module
        # `augment(x, generator=...)`, differentiable so G's gradient passes through it
        self.augment = augment
        # EMA of G's weights (Karras et al. 2018; Yazici et al. 2019): samples and evaluation.
        self.generator_ema = (
            copy.deepcopy(generator).requires_grad_(False) if ema_decay is not None else None
        )
        self.optimizer_g_factory, self.optimizer_d_factory = optimizer_g, optimizer_d
        self.scheduler_g_factory, self.scheduler_d_factory = scheduler_g, scheduler_d
        self.scheduler_interval = scheduler_interval
        self.adv_weight, self.n_critic = float(adv_weight), n_critic
        self.ema_decay, self.ema_batchnorm = ema_decay, ema_batchnorm
        self.gradient_clip_val, self.gradient_clip_algorithm = (
            gradient_clip_val,
            gradient_clip_algorithm,
        )
        self.seed = seed
        self.nan_check_every_n_steps = nan_check_every_n_steps
        self.monitor, self.monitor_mode = monitor, monitor_mode
        # collapse signs counted on the logging steps of the current epoch (on the device):
        # [logged steps, D saturated, G gradient vanished, D gradient vanished, loss exploded]
        self._signs: torch.Tensor | None = None
        self._grad_norms: dict[str, torch.Tensor] = {}
        self._health: dict[str, Any] = {}
        self.register_load_state_dict_post_hook(_forget_tensor_lists)

    # --- the game, read back ----------------------------------------------------------------
    @property
    def loss(self) -> str:
        """The game's name (`bce`, `hinge`, `wgan_gp`, ...)."""
        return self.objective.kind

    @property
    def label_smoothing(self) -> float:
        return self.objective.label_smoothing

    @property
    def gp_weight(self) -> float:
        p = self.objective.penalty("gp")
        return p.weight if p is not None else self._gp_weight

    @property
    def drift_weight(self) -> float:
        p = self.objective.penalty("drift")
        return p.weight if p is not None else 0.0

    @property
    def adversarial(self) -> bool:
        """Whether D takes part (adv_weight > 0)."""
        return self.adv_weight > 0

    @property
    def _log(self) -> logging.Logger:
        """The family's logger (genlab.models.gan for the GAN): messages say whose they are."""
        return logging.getLogger(type(self).__module__)

    @property
    def sampling_generator(self) -> nn.Module:
        """The G used for samples and evaluation: the EMA copy when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    # --- what a family provides -------------------------------------------------------------
    def prepare_batch(self, batch: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def make_fake(self, cond: Any, n: int, noise: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def critic(self, cond: Any) -> Critic:
        raise NotImplementedError

    def training_critic(self, cond: Any, noise: torch.Generator) -> Critic:
        """D as the training steps see it: behind the augmentation when there is one (the same
        kind of transform for real and fake images, drawn from the iteration's noise)."""
        critic = self.critic(cond)
        if self.augment is None:
            return critic
        return lambda x: critic(self.augment(x, generator=noise))

    def discriminator_loss(
        self,
        critic: Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        cond: Any,
        noise: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss and what to log: the objective's, which a family may extend (e.g. a
        matching-aware D also judges real images with mismatched conditions)."""
        return self.objective.discriminator_loss(critic, real, fake, noise)

    def extra_generator_terms(
        self, fake: torch.Tensor, real: torch.Tensor, cond: Any
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """The family's own generator terms {name: (weight, batch mean)}; none for a GAN."""
        return {}

    def eval_scalars(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # --- the loop ------------------------------------------------------------------------
    def _noise(self, salt: int = 0) -> torch.Generator:
        """A generator seeded by (seed, step, rank): the noise of an iteration does not depend
        on what ran before it, so a resumed run draws exactly the noise of an uninterrupted one
        and DDP ranks draw different noise."""
        key = (self.seed * 1_000_003 + self.global_step) * 1_009 + self.global_rank * 31 + salt
        return torch.Generator(device=self.device).manual_seed(key & 0x7FFF_FFFF_FFFF_FFFF)

    def _step_uncounted(self, optimizer: Any) -> None:
        """Step a LightningOptimizer's optimizer without advancing `global_step` (module doc)."""
        self.trainer.strategy.optimizer_step(optimizer.optimizer, _no_closure, model=self)

    def use_steps_per_batch(self, k: int) -> None:
        """`perf.steps_per_batch=k`: the data hands over k batches at once and each Lightning
        batch runs k iterations, one on each of its k parts in order (module doc)."""
        if k < 1:
            raise GenlabError(f"perf.steps_per_batch={k} must be at least 1.")
        self.steps_per_batch = k

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self.steps_per_batch == 1:
            self.train_iteration(batch)
            return
        max_steps = self.trainer.max_steps
        for part in split_batch(batch, self.steps_per_batch):
            if 0 < max_steps <= self.global_step:
                break  # stop at max_steps exactly, in the middle of the group
            self._row_step = self.global_step  # the iteration's rows carry its step
            try:
                self.train_iteration(part)
            finally:
                self._row_step = None

    def train_iteration(self, batch: Any) -> None:
        """One iteration (module doc) on one batch: D steps, the G step (the counted step),
        EMA, schedulers, the non-finite record, and its scalars on a logging step."""
        logs = self.logs_now("train")  # before the G step moves global_step
        real, cond = self.prepare_batch(batch)
        b = len(real)
        opt_g, opt_d = self.optimizers()  # type: ignore[misc]
        noise = self._noise()
        critic = self.training_critic(cond, noise)
        # one G pass shared by every D step and the G step, or fresh fakes per D step
        fake = None if self.fresh_fakes else self.make_fake(cond, b, noise)
        loss_d = real.new_zeros((), dtype=torch.float32)
        d_logs: dict[str, torch.Tensor] = {}
        if self.adversarial:
            for _ in range(self.n_critic):
                if fake is not None and not self.fresh_fakes:
                    fake_d = fake.detach()
                elif self.n_critic == 1:  # the fakes of the one D step are reused by G
                    fake = self.make_fake(cond, b, noise)
                    fake_d = fake.detach()
                else:
                    with torch.no_grad():
                        fake_d = self.make_fake(cond, b, noise)
                loss_d, d_logs = self.discriminator_loss(critic, real, fake_d, cond, noise)
                if self.augment is not None and hasattr(self.augment, "observe"):
                    self.augment.observe(d_logs["real_scores"])  # ADA: how sure D is of reals
                opt_d.zero_grad(set_to_none=True)
                self.manual_backward(loss_d)
                self._step_uncounted(opt_d)
            opt_d.zero_grad(set_to_none=True)  # so the G step provably leaves D's .grad at None

        with frozen(self.discriminator, self._nets_tensors().d_params):
            if fake is None:
                fake = self.make_fake(cond, b, noise)
            terms = self.generator_terms(fake, real, cond, critic=critic)
            loss_g = terms.pop("loss")
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()  # the one counted step of this iteration

        self._update_ema()
        self._track_ema_statistics(cond, b, noise)
        if self.scheduler_interval == "step":
            self._step_schedulers()
        self.track_finite(self.global_step - 1, {"loss_d": loss_d, "loss_g": loss_g})
        if logs:
            self._log_iteration(b, loss_d, loss_g, d_logs, terms)

    def generator_terms(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        cond: Any,
        *,
        critic: Critic | None = None,
    ) -> dict[str, torch.Tensor]:
        """G's loss and its parts, batch means: `adv` (the objective's term through D, when D
        takes part), the family's terms, and `loss` = adv_weight * adv + sum of weight * term.
        D is frozen by the caller during training; `critic` is D as training sees it
        (augmented), else D itself."""
        terms: dict[str, torch.Tensor] = {}
        loss = fake.new_zeros((), dtype=torch.float32)
        if self.adversarial:
            terms["adv"] = self.objective.generator_loss(critic or self.critic(cond), fake)
            loss = self.adv_weight * terms["adv"]
        for name, (weight, value) in self.extra_generator_terms(fake, real, cond).items():
            terms[name] = value
            loss = loss + weight * value
        terms["loss"] = loss
        return terms

    def _log_iteration(
        self,
        b: int,
        loss_d: torch.Tensor,
        loss_g: torch.Tensor,
        d_logs: dict[str, torch.Tensor],
        terms: dict[str, torch.Tensor],
    ) -> None:
        scalars = {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}
        if self.adversarial:
            scalars["d_real"] = self.objective.readable(d_logs["real_scores"].detach()).mean()
            scalars["d_fake"] = self.objective.readable(d_logs["fake_scores"].detach()).mean()
            for p in self.objective.penalties:
                scalars[p.name] = d_logs[p.name].detach()
            if self.augment is not None and hasattr(self.augment, "scalars"):
                scalars.update(self.augment.scalars())  # ADA: its p and last r_t
        if len(terms) > 1 or (terms and "adv" not in terms):
            scalars.update({f"loss_g_{k}": v.detach() for k, v in terms.items()})
        self.log_scalars("train", scalars, batch_size=b)
        if self.adversarial:
            self._count_collapse_signs(scalars)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called by the precision plugin after AMP's unscale: these are the true gradients.
        if self.logs_now("train"):  # the gradient list and norm only on logging steps
            net = "d" if optimizer is self.trainer.optimizers[1] else "g"
            grads = [p.grad for g in optimizer.param_groups for p in g["params"]]
            grads = [g for g in grads if g is not None]
            if grads:
                norm = torch.nn.utils.get_total_norm(grads)
                self.log_scalars("train", {f"grad_norm_{net}": norm}, batch_size=1)
                self._grad_norms[net] = norm.detach().float()
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )

    @torch.no_grad()
    def _update_ema(self) -> None:
        """EMA copy <- lerp towards G's parameters: one foreach call over lists built once
        (`_nets_tensors`), the same values as a per-tensor `lerp_` loop, bit for bit
        (tests/test_gan_step_cost.py). Its buffers (batch-norm running statistics):

        - `ema_batchnorm=own` (default): `_track_ema_statistics` runs the EMA copy on the
          iteration's inputs, so its running statistics average its own activations, as G's
          average G's. Averaged weights give activations of another scale than G's current
          ones: with G's statistics the EMA copy normalises by the wrong mean and variance
          (StackGAN's Stage-II EMA samples collapsed to one blur that way).
        - `copy`: G's buffers copied here, as StyleGAN's EMA does (its G has no batch norm);
          no extra forward pass."""
        if self.generator_ema is None:
            return
        t = self.global_step  # G updates so far; warm-up so early weights fade fast
        decay = min(self.ema_decay, (1.0 + t) / (10.0 + t))
        lists = self._nets_tensors()
        torch._foreach_lerp_(lists.ema_params, lists.g_params, 1.0 - decay)
        if lists.ema_buffers and self.ema_batchnorm == "copy":
            torch._foreach_copy_(lists.ema_buffers, lists.g_buffers)

    @torch.no_grad()
    def _track_ema_statistics(self, cond: Any, n: int, noise: torch.Generator) -> None:
        """`ema_batchnorm=own`: the EMA copy generates from the iteration's condition and
        noise (`make_fake`, no gradient, training mode), which moves its batch-norm running
        statistics as G's forward pass moved G's. One more forward pass of G per iteration,
        only when G has buffers; seeded like the iteration, so a resumed run repeats it."""
        if self.generator_ema is None or self.ema_batchnorm != "own":
            return
        if not self._nets_tensors().ema_buffers:
            return
        with self._generating_with(self.generator_ema):
            self.make_fake(cond, n, noise)

    @contextmanager
    def _generating_with(self, net: nn.Module) -> Iterator[None]:
        """`make_fake` (which draws with `self.generator`) draws with `net` inside the block."""
        own = self._modules["generator"]
        self._modules["generator"] = net
        try:
            yield
        finally:
            self._modules["generator"] = own

    def _nets_tensors(self) -> _NetTensors:
        """G's, its EMA copy's and D's parameters and buffers as lists, built once: walking
        the module tree every iteration costs more host time than the update itself on a
        GPU. Rebuilt when a net is replaced, after a device/dtype/memory-format conversion
        (`_apply`, which replaces buffers) and after `load_state_dict`."""
        nets = (self.generator, self.generator_ema, self.discriminator)
        cached = self._tensor_lists
        if cached is None or any(a is not b for a, b in zip(cached.nets, nets, strict=True)):
            cached = self._tensor_lists = _NetTensors.of(*nets)
        return cached

    def invalidate_tensor_lists(self) -> None:
        """Forget the cached parameter and buffer lists (`_nets_tensors`): a family that adds
        or replaces parameters or buffers of its nets in place calls it."""
        self._tensor_lists = None

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # Every device, dtype and memory-format conversion (.to, .cuda, .half, ...) goes
        # through nn.Module._apply, which puts new tensors in place of the buffers (and of
        # the parameters under torch.__future__'s overwrite switch): the cached lists would
        # then point at the old ones. A private hook of torch's; test_gan_step_cost.py fails
        # loudly if conversions stop passing through it.
        self._tensor_lists = None
        return super()._apply(fn, *args, **kwargs)

    def _step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for s in schedulers if isinstance(schedulers, list) else [schedulers]:
            s.step()

    def on_train_epoch_end(self) -> None:
        if self.scheduler_interval == "epoch":
            self._step_schedulers()
        super().on_train_epoch_end()  # stops on a non-finite loss
        self._report_collapse_signs()

    def on_fit_start(self) -> None:
        # D's step leaves G unused and G's step freezes D, so DDP must look for unused
        # parameters (Lightning #20328). The DDP trainer presets ask for it (their strategy is
        # ${genlab.ddp_strategy:...}, which reads `ddp_find_unused_parameters`); a strategy
        # given by hand is checked here, on the wrapped model, before the first step.
        wrapped = self.trainer.strategy.model
        if isinstance(wrapped, DistributedDataParallel) and not wrapped.find_unused_parameters:
            raise GenlabError(
                "GAN training under DDP needs DDP to look for unused parameters (the D step "
                "leaves G unused and the G step freezes D), but trainer.strategy does not: use "
                "trainer.strategy=ddp_find_unused_parameters_true (trainer=ddp and "
                "trainer=ddp_sim choose it for GANs)."
            )

    # --- trainer options -------------------------------------------------------------------
    def adopt_trainer_options(self, options: Mapping[str, Any]) -> list[str]:
        """Lightning cannot clip or accumulate under manual optimization: the loop clips each
        net's unscaled gradients itself (`trainer.gradient_clip_val` becomes
        `model.gradient_clip_val`), and refuses gradient accumulation (one G step per batch)."""
        accumulate = options.get("accumulate_grad_batches") or 1
        if accumulate != 1:
            raise GenlabError(
                f"trainer.accumulate_grad_batches={accumulate}: the GAN loop takes one D and one "
                "G step per batch (manual optimization), so gradients are not accumulated. Use "
                "a larger data.batch_size instead, and leave trainer.accumulate_grad_batches=1."
            )
        if not options.get("gradient_clip_val"):
            return []
        self.gradient_clip_val = float(options["gradient_clip_val"])
        self.gradient_clip_algorithm = options.get("gradient_clip_algorithm") or "norm"
        self._log.info(
            "GAN: trainer.gradient_clip_val=%s (%s) is applied by the model, to G's and D's "
            "unscaled gradients separately",
            self.gradient_clip_val,
            self.gradient_clip_algorithm,
        )
        return ["gradient_clip_val", "gradient_clip_algorithm"]

    # --- divergence and collapse ------------------------------------------------------------
    def divergence_advice(self) -> str:
        return (
            "Lower the learning rates (model.optimizer_g.lr, model.optimizer_d.lr), add "
            "model.gradient_clip_val=1.0, or try model.loss=hinge / spectral norm on D."
        )

    def _count_collapse_signs(self, scalars: dict[str, torch.Tensor]) -> None:
        """Count, without a device sync, the signs of a GAN that stopped learning on this
        logging step: D saturated (D(x) > 0.99 and D(G(z)) < 0.01 for the probability-valued
        losses: G's gradient through D vanishes), a gradient norm ~0, a loss beyond 1e6."""
        one = torch.ones((), device=self.device)
        saturated = (
            (scalars["d_real"] > 0.99) & (scalars["d_fake"] < 0.01)
            if self.objective.probability_valued
            else one < 0
        )
        g_norm, d_norm = self._grad_norms.get("g"), self._grad_norms.get("d")
        signs = torch.stack(
            [
                one,
                saturated.float(),
                (g_norm < 1e-6).float() if g_norm is not None else one * 0,
                (d_norm < 1e-8).float() if d_norm is not None else one * 0,
                ((scalars["loss_g"].abs() > 1e6) | (scalars["loss_d"].abs() > 1e6)).float(),
            ]
        )
        self._signs = signs if self._signs is None else self._signs + signs

    def _report_collapse_signs(self) -> None:
        """At an epoch end: warn when a sign was seen on at least half of the epoch's logged
        steps (at least 3 of them), and keep the counts for summary.json (`health()`)."""
        if self._signs is None:
            return
        logged, *counts = (int(v) for v in self._signs.tolist())
        self._signs = None
        names = ("d_saturated", "g_grad_vanished", "d_grad_vanished", "loss_exploded")
        total = self._health.setdefault("logged_steps", 0) + logged
        self._health["logged_steps"] = total
        for name, count in zip(names, counts, strict=True):
            if count:
                self._health[name] = self._health.get(name, 0) + count
            if logged >= 3 and count * 2 >= logged:
                self._health.setdefault("warnings", []).append(
                    {"epoch": self.current_epoch, "sign": name, "steps": count, "of": logged}
                )
                self._log.warning(
                    "GAN health, epoch %d: %s on %d of %d logged steps. %s",
                    self.current_epoch,
                    name,
                    count,
                    logged,
                    COLLAPSE_HINTS[name],
                )

    def health(self) -> dict[str, Any]:
        """Counts of collapse signs over the logged training steps (see `_count_collapse_signs`)
        and the epochs where they dominated; recorded in summary.json."""
        return dict(self._health)

    # --- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def _eval_step(self, batch: Any, batch_idx: int, stage: str) -> None:
        scalars = self.eval_scalars(batch, batch_idx)
        n = len(batch[0]) if isinstance(batch, (tuple, list)) else 1
        self.log_scalars(stage, scalars, batch_size=n)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        # the default `monitor`: with no generation metric configured, "best" = most recent
        self.log("val/step", float(self.global_step), sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def configure_optimizers(self) -> Any:
        opt_g = self.optimizer_g_factory(params=self.generator.parameters())
        opt_d = self.optimizer_d_factory(params=self.discriminator.parameters())
        schedulers = []
        for factory, opt in ((self.scheduler_g_factory, opt_g), (self.scheduler_d_factory, opt_d)):
            if factory is not None:
                schedulers.append(
                    {"scheduler": factory(optimizer=opt), "interval": self.scheduler_interval}
                )
        return [opt_g, opt_d], schedulers
