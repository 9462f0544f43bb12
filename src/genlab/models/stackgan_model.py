"""StackGAN (Zhang et al., ICCV 2017): from a caption to a picture, in one or two stages, on
the one adversarial loop (genlab.models.adversarial).

A text encoder turns the caption's tokens into phi_t; conditioning augmentation (CA) draws
c ~ N(mu(phi_t), Sigma(phi_t)); Stage-I's G draws a low-resolution image from (z, c); Stage-II's
G (its own CA, reading phi_t again) refines it to the data's resolution. Each stage has a
matching-aware D (genlab.nets.stackgan): a real image with its own caption is real; a real
image with another image's caption and a generated image with its caption are fake, weighted
as the authors' code, `real + (wrong + fake) / 2` (`wrong_weight`), each pairing's term being
the game's real or fake part (`objective.real_part / fake_part`), so every `loss` works.

Stages (`stage`):
- `1`: Stage-I alone, at `low_size` (the data's size by default; a smaller `low_size` trains
  the Stage-I of a two-stage pipeline, its samples upsampled to the data's size);
- `2`: the paper's Stage-II on a trained Stage-I: `stage1_ckpt` (a `stage=1` run with the
  same `low_size`) gives the text encoder, Stage-I's CA and G, which are frozen (no gradient,
  eval mode); Stage-II's G and D train, D's text encoder starting from Stage-I D's;
- `joint`: both stages from scratch at once (StackGAN++, Zhang et al. 2018): G's loss is the
  sum of both Ds' adversarial terms, D's the sum of both matching-aware losses.

G's loss adds the CA's KL to N(0, I), `kl_weight` * KL (lambda = 1 in the paper, KL summed
over the condition's dims: `kl_reduction=sum`; the authors' code uses 2.0 with the mean over
dims, `kl_reduction=mean`). Ablations: `ca=false` (c = mu(phi_t), no KL) and
`matching_aware=false` (the plain conditional D: real + fake only).

Noise: z, the CAs' draws and the mismatched pairing all come from the iteration's seeded
generator, so a resumed run draws exactly what an uninterrupted one does. Images: data in
[0, 1], nets in [-1, 1]; `sample` and `generate` return [0, 1] at the data's size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab.losses.gan_objectives import per_image
from genlab.models.adversarial import AdversarialModule, Critic
from genlab.nets.stackgan import (
    ConditioningAugmentation,
    StackDiscriminator,
    StackGenerator,
    StackOutput,
    mismatch_index,
)
from genlab.utils.checkpoint import check_fits, checkpoint_for
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

STAGES = ("1", "2", "joint")
KL_REDUCTIONS = ("sum", "mean")
NetFactory = Callable[..., nn.Module]


@dataclass
class _Pending:
    """The last fakes made in this iteration, with what the loss needs beside them."""

    fake: torch.Tensor
    out: StackOutput
    noise: torch.Generator


class StackGAN(AdversarialModule):
    """Captions (B, L) int64 -> images, trained by the adversarial loop; see the module doc.

    Nets come as factories (`_partial_: true` in config) that the model sizes:
    `text_encoder(vocab_size=, out_dim=embed_dim)` (called twice: G's and D's own),
    `stage1_generator(latent_dim=, cond_dim=, channels=, image_size=low_size)`,
    `stage1_discriminator(channels=, image_size=low_size, embed_dim=, cond_dim=)` and, for two
    stages, `stage2_generator(cond_dim=, channels=, low_size=, scale=)` and
    `stage2_discriminator(channels=, image_size=, embed_dim=, cond_dim=)`.

    Options beyond the loop's (`loss`, `n_critic`, `ema_decay`, `augment`, clipping,
    schedulers, `seed`): `stage` (1 | 2 | joint), `image_size` and `channels` (the data's),
    `low_size` (Stage-I's resolution; Stage-II's scale is image_size / low_size: 2, 4 or 8),
    `vocab_size` (at least the data's vocabulary), `latent_dim`, `embed_dim` (phi_t),
    `cond_dim` (c), `ca`, `kl_weight`, `kl_reduction`, `matching_aware`, `wrong_weight`,
    `stage1_ckpt`.

    Logs the loop's scalars (`train/loss_g_adv`, `train/loss_g_kl`; `train/loss_g_adv_stage1`
    when joint), `train/d_wrong` (D's reading of real images with mismatched captions;
    `train/d1_real`, `d1_fake`, `d1_wrong` for Stage-I's D when joint), and under `val/`,
    `test/` D's losses and readings on the sampling G's images of the split's captions.
    """

    fresh_fakes = True

    def __init__(
        self,
        *,
        text_encoder: NetFactory,
        stage1_generator: NetFactory,
        stage1_discriminator: NetFactory,
        stage2_generator: NetFactory | None = None,
        stage2_discriminator: NetFactory | None = None,
        image_size: int,
        channels: int,
        vocab_size: int,
        stage: int | str = 1,
        low_size: int | None = None,
        latent_dim: int = 100,
        embed_dim: int = 128,
        cond_dim: int = 128,
        ca: bool = True,
        kl_weight: float = 1.0,
        kl_reduction: str = "sum",
        matching_aware: bool = True,
        wrong_weight: float = 0.5,
        stage1_ckpt: str | None = None,
        **loop: Any,
    ) -> None:
        stage = str(stage)
        low_size = int(low_size or image_size)
        check_options(
            stage=stage,
            image_size=image_size,
            low_size=low_size,
            kl_weight=kl_weight,
            kl_reduction=kl_reduction,
            wrong_weight=wrong_weight,
            stage1_ckpt=stage1_ckpt,
            has_stage2_nets=stage2_generator is not None and stage2_discriminator is not None,
        )
        two = stage in ("2", "joint")
        scale = image_size // low_size

        def ca_net() -> ConditioningAugmentation:
            return ConditioningAugmentation(embed_dim=embed_dim, cond_dim=cond_dim, augment=ca)

        generator = StackGenerator(
            text_encoder=text_encoder(vocab_size=vocab_size, out_dim=embed_dim),
            ca1=ca_net(),
            stage1=stage1_generator(
                latent_dim=latent_dim, cond_dim=cond_dim, channels=channels, image_size=low_size
            ),
            ca2=ca_net() if two else None,
            stage2=(
                stage2_generator(  # type: ignore[misc]
                    cond_dim=cond_dim, channels=channels, low_size=low_size, scale=scale
                )
                if two
                else None
            ),
            freeze_stage1=stage == "2",
        )
        sizes = {"channels": channels, "embed_dim": embed_dim, "cond_dim": cond_dim}
        discriminator = StackDiscriminator(
            text_encoder=text_encoder(vocab_size=vocab_size, out_dim=embed_dim),
            stage1=(stage1_discriminator(image_size=low_size, **sizes) if stage != "2" else None),
            stage2=(
                stage2_discriminator(image_size=image_size, **sizes)  # type: ignore[misc]
                if two
                else None
            ),
        )
        super().__init__(generator=generator, discriminator=discriminator, **loop)
        self.stage, self.image_size, self.channels = stage, int(image_size), int(channels)
        self.low_size, self.scale, self.vocab_size = low_size, scale, int(vocab_size)
        self.latent_dim, self.embed_dim, self.cond_dim = latent_dim, embed_dim, cond_dim
        self.ca, self.kl_weight, self.kl_reduction = bool(ca), float(kl_weight), kl_reduction
        self.matching_aware, self.wrong_weight = bool(matching_aware), float(wrong_weight)
        self.stage1_ckpt = stage1_ckpt
        self._pending: _Pending | None = None

    # --- sizes and levels -------------------------------------------------------------------
    @property
    def two_stages(self) -> bool:
        return self.stage in ("2", "joint")

    @property
    def final_level(self) -> str:
        """The D that judges the model's output: Stage-II's with two stages."""
        return "stage2" if self.two_stages else "stage1"

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        """Images at the data's size -> Stage-I's (antialiased bilinear)."""
        if x.shape[-1] == self.low_size:
            return x
        size = (self.low_size, self.low_size)
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)

    def _to_data_size(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-I's images -> the data's size (bilinear), for a Stage-I alone below it."""
        if x.shape[-1] == self.image_size:
            return x
        size = (self.image_size, self.image_size)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    # --- drawing --------------------------------------------------------------------------
    def _latent(
        self, n: int, generator: torch.Generator | None, temperature: float = 1.0
    ) -> torch.Tensor:
        where = generator.device if generator is not None else self.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=where)
        return z.to(self.device) * temperature

    def _draw(
        self,
        net: nn.Module,
        tokens: torch.Tensor,
        generator: torch.Generator | None,
        temperature: float = 1.0,
    ) -> StackOutput:
        return net(tokens, self._latent(len(tokens), generator, temperature), generator=generator)

    def _captions(self, y: Any, n: int | None = None) -> torch.Tensor:
        """User-given caption tokens, checked (shape, dtype, ids within the vocabulary)."""
        if y is None:
            raise GenlabError(
                "StackGAN draws images from captions and was given none: pass caption tokens "
                'as y (genlab.sample text="the digit 3 is at the top left", or source=data '
                "for the test split's captions). Generation metrics of a text-to-image model "
                "need captions too: use tasks=[captions] in genlab.eval."
            )
        if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.dtype != torch.long:
            got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y)
            raise GenlabError(
                f"StackGAN takes captions as int64 token ids (n, length), got {got}: encode "
                "text with the data's vocabulary (datamodule.encode_condition)."
            )
        if n is not None and len(y) != n:
            raise GenlabError(f"StackGAN.sample(n={n}) was given {len(y)} captions: give n.")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.vocab_size):
            raise GenlabError(
                f"caption token ids in [{int(y.min())}, {int(y.max())}] do not fit this "
                f"model's vocabulary of {self.vocab_size} (model.vocab_size): the captions "
                "were tokenised with another vocabulary."
            )
        return y.to(self.device)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """CanSample: n images (n, C, H, W) in [0, 1] at the data's size from the captions `y`
        (n, L) (required) by the sampling G; `temperature` scales z."""
        tokens = self._captions(y, n)
        out = self._draw(self.sampling_generator, tokens, generator, temperature)
        return self._as_images(out.high if out.high is not None else out.low)

    @torch.no_grad()
    def generate(
        self, y: torch.Tensor, *, generator: torch.Generator | None = None, samples: int = 1
    ) -> torch.Tensor:
        """CanGenerate: captions (B, L) -> images (B, C, H, W) in [0, 1]; with `samples` > 1,
        (samples, B, C, H, W), each a fresh draw of z and c."""
        tokens = self._captions(y)
        draws = [self.sample(len(tokens), generator=generator, y=tokens) for _ in range(samples)]
        return draws[0] if samples == 1 else torch.stack(draws)

    @torch.no_grad()
    def generate_stages(
        self, y: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Captions (B, L) -> {'stage1': Stage-I's images, 'stage2': Stage-II's (two stages
        only)}, each (B, C, H, W) in [0, 1] at the data's size, from one draw."""
        out = self._draw(self.sampling_generator, self._captions(y), generator)
        stages = {"stage1": self._as_images(out.low)}
        if out.high is not None:
            stages["stage2"] = self._as_images(out.high)
        return stages

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        return ((self._to_data_size(x.float()) + 1.0) / 2.0).clamp(0.0, 1.0)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.generate(y)

    # --- checks before training -------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            self._check_data(dm)
        if stage == "fit" and self.stage == "2" and not self.stage1_ckpt:
            self.load_stage1(None)  # refused now, naming model.stage1_ckpt

    def on_fit_start(self) -> None:
        # Stage-II's start, read before the first step; a resumed run's checkpoint holds
        # Stage-I's weights, so it does not read stage1_ckpt, which may have moved since
        # (GenlabModule.fit_resumed).
        super().on_fit_start()
        if self.stage == "2" and not self.fit_resumed:
            self.load_stage1(self.stage1_ckpt)

    def _check_data(self, dm: Any) -> None:
        condition = getattr(dm, "condition", None)
        if condition is None or condition.kind != "tokens":
            kind = condition.kind if condition is not None else "nothing"
            raise GenlabError(
                f"StackGAN draws images from captions, and data={getattr(dm, 'name', dm)} is "
                f"conditioned on {kind}: use captioned data (data=captioned_digits, "
                "cub_captions or flowers_captions)."
            )
        if len(condition.vocab) > self.vocab_size:
            raise GenlabError(
                f"the data's caption vocabulary has {len(condition.vocab)} ids but "
                f"model.vocab_size={self.vocab_size}: set model.vocab_size="
                f"{len(condition.vocab)} or more (or raise data.min_word_count)."
            )
        want = (self.channels, self.image_size, self.image_size)
        shape = tuple(getattr(dm.modality, "shape", ()))
        if shape != want:
            raise GenlabError(
                f"the data's images are {shape} but the model makes {want}: set "
                "model.channels=${data.channels} and model.image_size=${data.image_size}."
            )

    def load_stage1(self, path: str | None) -> None:
        """Stage-II's start: the text encoder, Stage-I's CA and G of a Stage-I checkpoint (its
        EMA weights when it has them) into G and its EMA copy, and its D's text encoder into
        D's when the shapes agree. Read as weights only; a GenlabError naming
        model.stage1_ckpt when it is missing or does not fit."""
        if not path:
            raise GenlabError(
                "model.stage=2 trains Stage-II on a trained Stage-I: give model.stage1_ckpt="
                "RUN/checkpoints/last.ckpt of a model.stage=1 run with the same model.low_size "
                f"({self.low_size}), or use model.stage=joint to train both stages together."
            )
        state, model_cfg = checkpoint_for(path, option="model.stage1_ckpt")
        if model_cfg:
            target = str(model_cfg.get("_target_", ""))
            if not target.endswith(".StackGAN") or str(model_cfg.get("stage")) not in (
                "1",
                "joint",
            ):
                raise GenlabError(
                    f"model.stage1_ckpt={path!r} is a checkpoint of {target or 'no model'} "
                    f"(stage {model_cfg.get('stage')}), not of a StackGAN Stage-I: train one "
                    "with model.stage=1 (experiment=stackgan_digits model.low_size=...)."
                )
        source = "generator_ema." if any(k.startswith("generator_ema.") for k in state) else None
        source = source or "generator."
        parts = ("text_encoder.", "ca1.", "stage1.")
        own = {k: v for k, v in self.generator.state_dict().items() if k.startswith(parts)}
        given = {
            k[len(source) :]: v
            for k, v in state.items()
            if k.startswith(source) and k[len(source) :].startswith(parts)
        }
        check_fits(
            own,
            given,
            path,
            option="model.stage1_ckpt",
            what="this model's Stage-I",
            advice=f"the Stage-I run must have the same model.low_size ({self.low_size}), "
            "text encoder, embed_dim, cond_dim, latent_dim and Stage-I widths",
        )
        for net in (self.generator, self.generator_ema):
            if net is not None:
                net.load_state_dict(given, strict=False)
        d_own = self.discriminator.text_encoder.state_dict()
        d_given = {
            k[len("discriminator.text_encoder.") :]: v
            for k, v in state.items()
            if k.startswith("discriminator.text_encoder.")
        }
        if d_given.keys() == d_own.keys() and all(
            d_given[k].shape == v.shape for k, v in d_own.items()
        ):
            self.discriminator.text_encoder.load_state_dict(d_given)
        log.info("StackGAN: Stage-I (%s weights) read from %s", source.rstrip("."), path)

    # --- the family's part of the loop -----------------------------------------------------
    def prepare_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, tokens = batch
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens)
            raise GenlabError(
                f"StackGAN trains on (image, caption tokens) batches; this data gives {got} "
                "as the condition. Use captioned data (data=captioned_digits, cub_captions)."
            )
        real = x * 2.0 - 1.0  # (b, c, h, w) in [-1, 1]
        if self.stage == "1":
            real = self._down(real)
        return real, tokens

    def make_fake(self, cond: torch.Tensor, n: int, noise: torch.Generator) -> torch.Tensor:
        out = self._draw(self.generator, cond, noise)
        fake = out.high if out.high is not None else out.low
        self._pending = _Pending(fake, out, noise)
        return fake

    def _pending_for(self, fake: torch.Tensor) -> _Pending:
        """The make_fake call `fake` (or its detached copy) came from: the loop always uses
        the fakes of its latest call."""
        p = self._pending
        if p is None or p.fake.data_ptr() != fake.data_ptr():
            raise RuntimeError("StackGAN: fakes that did not come from the latest make_fake")
        return p

    def critic(self, cond: torch.Tensor) -> Critic:
        return self._critic_at(self.final_level, cond)

    def _critic_at(self, level: str, cond: torch.Tensor) -> Critic:
        return lambda x: self.discriminator(x, cond, level)  # (b,)

    def _training_critic_at(
        self, level: str, cond: torch.Tensor, noise: torch.Generator
    ) -> Critic:
        critic = self._critic_at(level, cond)
        if self.augment is None:
            return critic
        return lambda x: critic(self.augment(x, generator=noise))

    def discriminator_loss(
        self,
        critic: Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        cond: torch.Tensor,
        noise: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The matching-aware D's loss on the three pairings (module doc), per trained D."""
        wrong = cond[mismatch_index(len(cond), generator=noise)]  # another item's caption
        loss, logs = self.matching_loss(
            critic, self._training_critic_at(self.final_level, wrong, noise), real, fake, noise
        )
        if self.stage == "joint":
            low_fake = self._pending_for(fake).out.low.detach()
            loss1, logs1 = self.matching_loss(
                self._training_critic_at("stage1", cond, noise),
                self._training_critic_at("stage1", wrong, noise),
                self._down(real),
                low_fake,
                noise,
            )
            loss = loss + loss1
            logs.update({f"stage1_{k}": v for k, v in logs1.items()})
        return loss, logs

    def matching_loss(
        self,
        critic: Critic,
        wrong_critic: Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        noise: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One D's loss: the game's real part on (real image, its caption), its fake part on
        (real image, another caption) with weight `wrong_weight` and on (fake, its caption)
        with 1 - `wrong_weight`; without `matching_aware`, real + fake (the wrong pairing is
        not shown to D). Plus the objective's penalties on (real, fake)."""
        obj = self.objective
        real_s, fake_s = critic(real).float(), critic(fake).float()
        loss = per_image(obj.real_part(real_s)).mean()
        fake_term = per_image(obj.fake_part(fake_s)).mean()
        logs = {"real_scores": real_s, "fake_scores": fake_s}
        if self.matching_aware:
            wrong_s = wrong_critic(real).float()
            wrong_term = per_image(obj.fake_part(wrong_s)).mean()
            loss = loss + self.wrong_weight * wrong_term + (1.0 - self.wrong_weight) * fake_term
            logs["wrong_scores"] = wrong_s
        else:
            loss = loss + fake_term
        for p in obj.penalties:
            added, logs[p.name] = p.term(critic, real, fake, real_s, fake_s, noise)
            loss = loss + added
        return loss, logs

    def extra_generator_terms(
        self, fake: torch.Tensor, real: torch.Tensor, cond: torch.Tensor
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """CA's KL to N(0, I) (batch mean; summed or averaged over the condition's dims), and
        when joint, Stage-I D's adversarial term on Stage-I's images."""
        p = self._pending_for(fake)
        kl = p.out.kl.float().mean()
        if self.kl_reduction == "mean":
            kl = kl / self.cond_dim
        terms = {"kl": (self.kl_weight, kl)}
        if self.stage == "joint" and self.adversarial:
            critic1 = self._training_critic_at("stage1", cond, p.noise)
            terms["adv_stage1"] = (
                self.adv_weight,
                self.objective.generator_loss(critic1, p.out.low),
            )
        return terms

    def _log_iteration(
        self,
        b: int,
        loss_d: torch.Tensor,
        loss_g: torch.Tensor,
        d_logs: dict[str, torch.Tensor],
        terms: dict[str, torch.Tensor],
    ) -> None:
        super()._log_iteration(b, loss_d, loss_g, d_logs, terms)
        read = self.objective.readable
        extra = {}
        if "wrong_scores" in d_logs:
            extra["d_wrong"] = read(d_logs["wrong_scores"].detach()).mean()
        for name in ("real", "fake", "wrong"):
            if f"stage1_{name}_scores" in d_logs:
                extra[f"d1_{name}"] = read(d_logs[f"stage1_{name}_scores"].detach()).mean()
        if extra:
            self.log_scalars("train", extra, batch_size=b)

    def divergence_advice(self) -> str:
        return (
            "Lower the learning rates (model.optimizer_g.lr, model.optimizer_d.lr), add "
            "model.gradient_clip_val=1.0, or try model.loss=hinge."
        )

    # --- evaluation -------------------------------------------------------------------------
    def eval_scalars(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """D's losses and readings (`d_real`, `d_fake`, `d_wrong`) on the split's images and
        captions and the sampling G's images of those captions (seeded per batch)."""
        real, cond = self.prepare_batch(batch)
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 7_919 + batch_idx)
        out = self._draw(self.sampling_generator, cond, gen)
        fake = out.high if out.high is not None else out.low
        d = self._critic_at(self.final_level, cond)
        scalars = self.objective.evaluate(d(real).float(), d(fake).float())
        if len(cond) > 1:
            wrong = cond[mismatch_index(len(cond), generator=gen)]
            wrong_s = self._critic_at(self.final_level, wrong)(real).float()
            scalars["d_wrong"] = self.objective.readable(wrong_s).mean()
        scalars["kl"] = out.kl.float().mean()
        return scalars


def check_options(
    *,
    stage: str,
    image_size: int,
    low_size: int,
    kl_weight: float,
    kl_reduction: str,
    wrong_weight: float,
    stage1_ckpt: str | None,
    has_stage2_nets: bool,
) -> None:
    """The model's options that can be judged before any net is built."""
    if stage not in STAGES:
        raise GenlabError(
            f"model.stage={stage!r}: use 1 (Stage-I), 2 (Stage-II on a trained Stage-I, "
            "model.stage1_ckpt) or joint (both at once, as StackGAN++)."
        )
    if low_size > image_size or image_size % low_size:
        raise GenlabError(
            f"model.low_size={low_size} must divide model.image_size={image_size} (Stage-I's "
            "resolution, at most the data's)."
        )
    if stage != "1" and image_size // low_size not in (2, 4, 8):
        raise GenlabError(
            f"model.stage={stage} refines Stage-I's images by model.image_size / "
            f"model.low_size = {image_size}/{low_size}: make it 2, 4 (the paper: 64 -> 256) "
            "or 8."
        )
    if stage != "1" and not has_stage2_nets:
        raise GenlabError(
            f"model.stage={stage} needs model.stage2_generator and model.stage2_discriminator."
        )
    if kl_weight < 0:
        raise GenlabError(f"model.kl_weight={kl_weight} must be >= 0.")
    if kl_reduction not in KL_REDUCTIONS:
        raise GenlabError(
            f"model.kl_reduction={kl_reduction!r}: sum (the paper's KL) or mean (over the "
            "condition's dims, as the authors' code)."
        )
    if not 0.0 <= wrong_weight < 1.0:
        raise GenlabError(
            f"model.wrong_weight={wrong_weight} must be in [0, 1): the share of D's fake term "
            "given to real images with mismatched captions (0.5 in the authors' code)."
        )
    if stage1_ckpt and stage != "2":
        raise GenlabError(
            f"model.stage1_ckpt is read by model.stage=2 only (this run: stage {stage}): "
            "leave it null, or set model.stage=2."
        )
