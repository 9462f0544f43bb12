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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch.strategies import DDPStrategy
from torch import nn

from genlab.losses.adversarial import (
    KINDS,
    SMOOTHABLE,
    d_output,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
)
from genlab.models.base import GenlabModule
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


def _no_closure() -> None:
    return None


class GAN(GenlabModule):
    """Generator G: z -> image in [-1, 1]; discriminator D: image -> score (B,).

    Options: `loss` in `bce` (non-saturating, default) | `minimax` | `hinge` | `ls` | `wgan_gp`
    (with `gp_weight`); `n_critic` D steps per G step; `label_smoothing` (one-sided: the real
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
        self.label_smoothing, self.ema_decay = label_smoothing, ema_decay
        self.gradient_clip_val, self.gradient_clip_algorithm = (
            gradient_clip_val,
            gradient_clip_algorithm,
        )
        self.num_classes, self.seed = num_classes, seed
        self.conditional = num_classes > 0  # the sample/latent CLIs pass labels when True
        self.nan_check_every_n_steps = nan_check_every_n_steps
        self.monitor, self.monitor_mode = monitor, monitor_mode
        # first non-finite iteration: (step, loss_d, loss_g), step -1 while all is well
        self._nonfinite: torch.Tensor | None = None

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

    def default_labels(self, n: int) -> torch.Tensor | None:
        """Classes 0, 1, ..., 0, 1, ... for conditional sampling without labels (None if not)."""
        if not self.num_classes:
            return None
        return torch.arange(n, device=self.device) % self.num_classes

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (n, latent_dim) -> images (n, C, H, W) in [0, 1] from the sampling G."""
        if self.num_classes and y is None:
            y = self.default_labels(len(z))
        x = self.sampling_generator(z.to(self.device), self._labels(y))
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.decode(self.sample_latent(n, generator=generator, temperature=temperature), y)

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
                loss = (net(z, labels).float() - target).pow(2).flatten(1).mean(1).sum()
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

    def _d_scores(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.discriminator(x, y).float()  # (b,)

    def _step_uncounted(self, optimizer: Any) -> None:
        """Step a LightningOptimizer's optimizer without advancing `global_step` (module doc)."""
        self.trainer.strategy.optimizer_step(optimizer.optimizer, _no_closure, model=self)

    # --- training -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        # D's step leaves G unused and G's step freezes D, so DDP must look for unused
        # parameters (Lightning #20328); done here so every DDP trainer preset works.
        if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get(
            "find_unused_parameters"
        ):
            strategy._ddp_kwargs["find_unused_parameters"] = True
            log.info("GAN under DDP: find_unused_parameters=True (G and D step separately)")
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
        self._track_finite(loss_d.detach(), loss_g.detach())

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

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called by the precision plugin after AMP's unscale: these are the true gradients.
        net = "d" if optimizer is self.trainer.optimizers[1] else "g"
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads and self.logs_now("train"):
            norm = torch.nn.utils.get_total_norm(grads)
            self.log_scalars("train", {f"grad_norm_{net}": norm}, batch_size=1)
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
        self._raise_if_nonfinite()

    # --- divergence -----------------------------------------------------------------------
    def _track_finite(self, loss_d: torch.Tensor, loss_g: torch.Tensor) -> None:
        """Remember the first iteration with a non-finite loss, on the device (no sync)."""
        rec = torch.stack(
            [
                torch.tensor(float(self.global_step - 1), device=loss_d.device),
                loss_d.float(),
                loss_g.float(),
            ]
        )
        if self._nonfinite is None:
            self._nonfinite = torch.full_like(rec, -1.0)
        bad = ~torch.isfinite(rec[1:]).all() & (self._nonfinite[0] < 0)
        self._nonfinite = torch.where(bad, rec, self._nonfinite)

    def _raise_if_nonfinite(self) -> None:
        if self._nonfinite is None:
            return
        step, loss_d, loss_g = self._nonfinite.tolist()
        if step < 0:
            return
        parts = [f"train/loss_d={loss_d}", f"train/loss_g={loss_g}"]
        raise GenlabError(
            f"GAN training diverged: at step {int(step)} (0-based GAN iteration) the loss became "
            f"non-finite ({', '.join(parts)}). Training stopped and no checkpoint was written "
            "after that step, so checkpoints/last.ckpt is the last good state. Lower the "
            "learning rates (model.optimizer_g.lr, model.optimizer_d.lr), add "
            "model.gradient_clip_val=1.0, or try model.loss=hinge / spectral norm on D."
        )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = self.nan_check_every_n_steps
        if n and self.global_step % n == 0:
            self._raise_if_nonfinite()

    def on_train_end(self) -> None:
        self._raise_if_nonfinite()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._raise_if_nonfinite()  # never overwrite a good checkpoint with diverged weights

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
