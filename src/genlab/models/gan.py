"""Generative adversarial networks: the original GAN, DCGAN and class-conditional GANs.

One training loop (manual optimization) for every generator/discriminator pair; the nets,
the loss and the stabilisers come from config. Each iteration (= one training batch = one
step everywhere):

1. `n_critic` discriminator steps on the real batch (label 1) and fakes G(z) (label 0);
2. one generator step through D with D frozen (`requires_grad=False`, restored in a
   `finally`), so D gets no gradient and no update;
3. the EMA copy of G (used for every sample and evaluation) moves towards G; schedulers step.

Steps: Lightning counts `global_step` once per `LightningOptimizer.step()`, so two optimizers
would count every iteration twice (max_steps, checkpoint intervals and the logged step would
all drift). The generator steps through its LightningOptimizer (counted); the discriminator
steps through `trainer.strategy.optimizer_step` -- the exact call `LightningOptimizer.step`
makes, so AMP's scaler (unscale, inf check, update), `on_before_optimizer_step` (gradient
norms, clipping) and DDP behave the same -- minus the progress counter. So `global_step` is
the number of G updates = iterations, and D's update count is `n_critic * global_step`.

Data arrive in [0, 1] and are mapped to G's Tanh range [-1, 1]; `decode` / `sample` return
[0, 1] images like every genlab model (`CanSample`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from genlab.losses.adversarial import (
    KINDS,
    SMOOTHABLE,
    d_output,
    discriminator_loss,
    epsilon_drift,
    generator_loss,
    gradient_penalty,
)
from genlab.models.base import GenlabModule
from genlab.models.protocols import SampleFromPrior
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Turn off `requires_grad` on every parameter of `module`; restore the old flags on exit,
    also when the body raises."""
    params = list(module.parameters())
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


class GAN(SampleFromPrior, GenlabModule):
    """Generator G: z -> image in [-1, 1]; discriminator D: image -> score (B,).

    Options: `loss` in `bce` (non-saturating, default) | `minimax` | `hinge` | `ls` | `wgan_gp`
    (with `gp_weight`); `drift_weight` (epsilon * D(x)^2 on real scores, Karras et al. 2018:
    0.001 with wgan_gp); `n_critic` D steps per G step; `label_smoothing` (one-sided: the real
    target becomes 1 - s); `ema_decay` (null = sample from G itself); `gradient_clip_val`
    (applied to unscaled gradients, per net); `num_classes` > 0 makes G and D conditional
    on the class label (the nets must be built with the same `num_classes`).

    Logs, on the steps the loggers write, `train/loss_d`, `train/loss_g`, `train/d_real` (D(x)),
    `train/d_fake` (D(G(z))), `train/grad_norm_d`, `train/grad_norm_g` (before clipping),
    `train/gp` for wgan_gp; the same
    losses and D outputs under `val/` and `test/` (fakes from the sampling G with seeded noise),
    and `val/step` (the GAN iteration). A non-finite loss stops training with a GenlabError
    naming the step; no checkpoint is written after it.
    """

    ddp_find_unused_parameters = True  # G and D step separately (on_fit_start)

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
        n_critic: int = 1,
        label_smoothing: float = 0.0,
        gp_weight: float = 10.0,
        drift_weight: float = 0.0,
        ema_decay: float | None = 0.999,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        latent_dim: int | None = None,
        num_classes: int = 0,
        seed: int = 0,
        nan_check_every_n_steps: int = 10,
        monitor: str = "val/step",
        monitor_mode: str = "max",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if loss not in KINDS:
            raise GenlabError(
                f"model.loss={loss!r} is not an adversarial loss: use one of {KINDS}."
            )
        if label_smoothing and loss not in SMOOTHABLE:
            raise GenlabError(
                f"model.label_smoothing={label_smoothing} has no meaning for model.loss={loss!r}; "
                f"use it with {SMOOTHABLE} or set model.label_smoothing=0."
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise GenlabError(f"model.label_smoothing={label_smoothing} must be in [0, 1).")
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
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = int(latent_dim if latent_dim is not None else generator.latent_dim)
        for name, net in (("generator", generator), ("discriminator", discriminator)):
            if getattr(net, "num_classes", 0) != num_classes:
                raise GenlabError(
                    f"model.num_classes={num_classes} but model.{name} was built with "
                    f"num_classes={getattr(net, 'num_classes', 0)}; set the nets' num_classes "
                    "to ${model.num_classes}."
                )
        # EMA of G's weights (Karras et al. 2018; Yazici et al. 2019): samples and evaluation.
        self.generator_ema = (
            copy.deepcopy(generator).requires_grad_(False) if ema_decay is not None else None
        )
        self.optimizer_g_factory, self.optimizer_d_factory = optimizer_g, optimizer_d
        self.scheduler_g_factory, self.scheduler_d_factory = scheduler_g, scheduler_d
        self.scheduler_interval = scheduler_interval
        self.loss, self.n_critic, self.gp_weight = loss, n_critic, gp_weight
        if drift_weight < 0:
            raise GenlabError(f"model.drift_weight={drift_weight} must be >= 0 (0 = off).")
        self.drift_weight = drift_weight
        self.label_smoothing, self.ema_decay = label_smoothing, ema_decay
        self.gradient_clip_val, self.gradient_clip_algorithm = (
            gradient_clip_val,
            gradient_clip_algorithm,
        )
        self.num_classes, self.seed = num_classes, seed
        self.nan_check_every_n_steps = nan_check_every_n_steps
        self.monitor, self.monitor_mode = monitor, monitor_mode
        # collapse signs counted on the logging steps of the current epoch (on the device):
        # [logged steps, D saturated, G gradient vanished, D gradient vanished, loss exploded]
        self._signs: torch.Tensor | None = None
        self._grad_norms: dict[str, torch.Tensor] = {}
        self._health: dict[str, Any] = {}

    # --- sampling (CanSample) -------------------------------------------------------------
    @property
    def sampling_generator(self) -> nn.Module:
        """The G used for samples and evaluation: the EMA copy when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    def sample_latent(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """z ~ N(0, I) scaled by `temperature`: (n, latent_dim)."""
        where = generator.device if generator is not None else self.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=where)
        return z.to(self.device) * temperature

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (n, latent_dim) -> images (n, C, H, W) in [0, 1] from the sampling G; a
        conditional G without `y` draws `default_labels`."""
        if y is None:
            y = self.default_labels(len(z))
        x = self._to_data_size(self.sampling_generator(z.to(self.device), self._labels(y)))
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(z, y)

    def invert(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        steps: int = 200,
        lr: float = 0.05,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A code z with decode(z) close to the images x (B, C, H, W) in [0, 1]: Adam on z from
        a prior draw, minimising the pixel MSE (GAN inversion, Zhu et al. 2016). The GAN's
        stand-in for an encoder, e.g. to average the codes of real exemplars of an attribute
        for latent arithmetic. Deliberately not named `encode_latent`: it costs `steps`
        forward/backward passes, so callers opt in. Returns (B, latent_dim)."""
        net = self.sampling_generator
        target = x.to(self.device).float() * 2.0 - 1.0
        labels = self._labels(y if y is not None else self.default_labels(len(x)))
        with torch.enable_grad(), frozen(net):
            z = self.sample_latent(len(x), generator=generator).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                x_hat = self._to_data_size(net(z, labels)).float()
                loss = (x_hat - target).pow(2).flatten(1).mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return z.detach()

    # --- helpers --------------------------------------------------------------------------
    def _labels(self, y: Any) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        if not isinstance(y, torch.Tensor) or y.ndim != 1:
            raise GenlabError(
                f"model.num_classes={self.num_classes} makes the GAN class-conditional, which "
                "needs one integer class label per image; this data gives "
                f"{type(y).__name__}{tuple(y.shape) if isinstance(y, torch.Tensor) else ''}. "
                "Use labelled data (e.g. data=mnist_5k) or an unconditional model (model=gan)."
            )
        return y.to(self.device).long()

    def _noise(self, salt: int = 0) -> torch.Generator:
        """A generator seeded by (seed, step, rank): the noise of an iteration does not depend
        on what ran before it, so a resumed run draws exactly the noise of an uninterrupted one
        and DDP ranks draw different noise."""
        key = (self.seed * 1_000_003 + self.global_step) * 1_009 + self.global_rank * 31 + salt
        return torch.Generator(device=self.device).manual_seed(key & 0x7FFF_FFFF_FFFF_FFFF)

    def _to_data_size(self, x: torch.Tensor) -> torch.Tensor:
        """G's output -> images at the data's size, still in [-1, 1]: the identity here; a
        progressive G at a coarse stage is upsampled (models/progressive_gan.py)."""
        return x

    def _d_scores(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.discriminator(x, y).float()  # (b,)

    def _step_uncounted(self, optimizer: Any) -> None:
        """Step a LightningOptimizer's optimizer without advancing `global_step` (module doc)."""
        self.trainer.strategy.optimizer_step(optimizer.optimizer, _no_closure, model=self)

    # --- training -------------------------------------------------------------------------
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

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if self.num_classes and dm is not None and dm.num_classes != self.num_classes:
            raise GenlabError(
                f"model.num_classes={self.num_classes} but the data ({type(dm).__name__}) has "
                f"num_classes={dm.num_classes}. Set model.num_classes={dm.num_classes}, or use "
                "an unconditional model (model=gan / model=dcgan) for data without classes."
            )

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        x = x * 2.0 - 1.0  # (b, c, h, w) in [-1, 1]
        y = self._labels(y)
        b = len(x)
        opt_g, opt_d = self.optimizers()  # type: ignore[misc]
        noise = self._noise()
        # with one D step the fakes are made once and reused by the G step
        fake = None
        for _ in range(self.n_critic):
            z = self.sample_latent(b, generator=noise)
            if self.n_critic == 1:
                fake = self.generator(z, y)
                fake_d = fake.detach()
            else:
                with torch.no_grad():
                    fake_d = self.generator(z, y)
            real_s, fake_s = self._d_scores(x, y), self._d_scores(fake_d, y)
            loss_d = discriminator_loss(
                real_s, fake_s, self.loss, real_target=1.0 - self.label_smoothing
            ).mean()
            if self.loss == "wgan_gp":
                gp = gradient_penalty(
                    lambda t: self._d_scores(t, y), x, fake_d, generator=noise
                ).mean()
                loss_d = loss_d + self.gp_weight * gp
            if self.drift_weight:
                loss_d = loss_d + self.drift_weight * epsilon_drift(real_s).mean()
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            self._step_uncounted(opt_d)
        opt_d.zero_grad(set_to_none=True)  # so the G step provably leaves D's .grad at None

        with frozen(self.discriminator):
            if fake is None:
                fake = self.generator(self.sample_latent(b, generator=noise), y)
            loss_g = generator_loss(self._d_scores(fake, y), self.loss).mean()
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()  # the one counted step of this iteration

        self._update_ema()
        if self.scheduler_interval == "step":
            self._step_schedulers()
        self.track_finite(self.global_step - 1, {"loss_d": loss_d, "loss_g": loss_g})

        if self.logs_now("train"):
            scalars = {
                "loss_d": loss_d.detach(),
                "loss_g": loss_g.detach(),
                "d_real": d_output(real_s.detach(), self.loss).mean(),
                "d_fake": d_output(fake_s.detach(), self.loss).mean(),
            }
            if self.loss == "wgan_gp":
                scalars["gp"] = gp.detach()
            self.log_scalars("train", scalars, batch_size=b)
            self._count_collapse_signs(scalars)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called by the precision plugin after AMP's unscale: these are the true gradients.
        net = "d" if optimizer is self.trainer.optimizers[1] else "g"
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads and self.logs_now("train"):
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
        if self.generator_ema is None:
            return
        t = self.global_step  # G updates so far; warm-up so early weights fade fast
        decay = min(self.ema_decay, (1.0 + t) / (10.0 + t))
        ema_p, g_p = list(self.generator_ema.parameters()), list(self.generator.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in g_p], 1.0 - decay)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            b_ema.copy_(b)

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

    # --- trainer options -------------------------------------------------------------------
    def adopt_trainer_options(self, options: Mapping[str, Any]) -> list[str]:
        """Lightning cannot clip or accumulate under manual optimization: the GAN clips each
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
        log.info(
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
            if self.loss in SMOOTHABLE
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
                log.warning(
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
        x, y = batch
        x = x * 2.0 - 1.0
        y = self._labels(y)
        b = len(x)
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 7_919 + batch_idx)
        fake = self.sampling_generator(self.sample_latent(b, generator=gen), y)
        real_s, fake_s = self._d_scores(x, y), self._d_scores(fake, y)
        scalars = {
            "loss_d": discriminator_loss(real_s, fake_s, self.loss).mean(),
            "loss_g": generator_loss(fake_s, self.loss).mean(),
            "d_real": d_output(real_s, self.loss).mean(),
            "d_fake": d_output(fake_s, self.loss).mean(),
        }
        self.log_scalars(stage, scalars, batch_size=b)

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
