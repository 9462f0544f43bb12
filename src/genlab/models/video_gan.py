"""Adversarial video prediction on the one adversarial loop (genlab.models.adversarial).

G is a deterministic frame-by-frame predictor (the ConvLSTM encoder-forecaster or the LSTM
encoder-predictor, by config: `model/generator=convlstm | lstm_predictor`), rolled out on its
own predictions from the context frames; D is a temporal discriminator (3D convolutions over
time, genlab.nets.video_predictors.TemporalDiscriminator) that judges whole clips: the context
followed by the predicted frames against the context followed by the true ones, so it sees
whether the motion continues the context, not only whether each frame looks like a digit.
G's loss is `adv_weight` x the game's term through D (frozen in that step, by the loop) plus
`recon_weight` x the squared error per frame (summed over its pixels, as the deterministic
models' `mse`): with `adv_weight=0` it is the deterministic predictor trained with MSE (D is
never stepped), the non-adversarial twin at the same steps, EMA and evaluation.

The family's pieces: `prepare_batch` -> (the true future, the context) in [0, 1];
`make_fake` -> G's predicted future in [0, 1] (deterministic: one G pass per iteration, reused
by the D steps and the G step, `fresh_fakes = False`); `critic` -> D on [context, frames];
`extra_generator_terms` -> `recon`; `eval_scalars` -> the sampling G's (the EMA copy's)
predictions scored as every video model's (MSE, PSNR, SSIM, sharpness per frame beside the
copy-last-frame and mean-frame baselines) and D's view of them. Teacher forcing does not
apply: D must judge what G does at test time, its own free-running predictions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genlab.metrics.video_metrics import frame_mse
from genlab.models.adversarial import AdversarialModule, Critic
from genlab.models.video_prediction import (
    PredictsOneFuture,
    check_future_frames,
    prediction_scalars,
    rollout,
)
from genlab.utils.errors import GenlabError


class VideoGAN(PredictsOneFuture, AdversarialModule):
    """A predictor G (`generator`: `encode_context`, `step`; genlab.nets.convlstm
    .ConvLSTMPredictor or genlab.nets.video_predictors.LSTMPredictor) judged by a clip
    discriminator D (`discriminator`: clips (B, T, C, H, W) in [0, 1] -> scores (B,)).

    Options beyond the loop's (genlab.models.adversarial.AdversarialModule: `loss`,
    `adv_weight`, `n_critic`, `label_smoothing`, `ema_decay`, clipping, schedulers, `seed`):
    `recon_weight` (of the squared error per frame, summed over pixels), `future_frames` (the
    horizon: the data's). Capabilities as every video model: `predict`, `generate` (from the
    sampling G). Logs the loop's scalars with `train/loss_g_recon`, and under val/test the
    video metrics (`mse_per_frame`, `psnr`, `ssim`, `sharpness`, per step and for the
    baselines) and, when D takes part, `loss_d`, `d_real`, `d_fake` on the same clips.
    """

    fresh_fakes = False  # G is deterministic: one rollout per iteration serves every step

    def __init__(
        self,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        recon_weight: float = 1.0,
        future_frames: int = 10,
        **loop: Any,
    ) -> None:
        if recon_weight < 0:
            raise GenlabError(f"model.recon_weight={recon_weight} must be >= 0.")
        if not recon_weight and not loop.get("adv_weight", 1.0):
            raise GenlabError(
                "model.adv_weight and model.recon_weight are both 0: the predictor would have "
                "nothing to learn from."
            )
        for name in ("encode_context", "step"):
            if not callable(getattr(generator, name, None)):
                raise GenlabError(
                    f"model.generator ({type(generator).__name__}) has no `{name}`: the video "
                    "GAN rolls out a frame-by-frame predictor (model/generator=convlstm or "
                    "lstm_predictor)."
                )
        super().__init__(generator=generator, discriminator=discriminator, **loop)
        self.recon_weight = float(recon_weight)
        self.future_frames = check_future_frames(future_frames)

    # --- capability -------------------------------------------------------------------------
    def prediction_net(self) -> nn.Module:
        return self.sampling_generator  # the EMA copy when there is one

    # --- the family's part of the loop -----------------------------------------------------
    def prepare_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch  # x: future (b, t_f, c, h, w), y: context (b, t_c, c, h, w)
        if x.shape[1] != self.future_frames:
            raise GenlabError(
                f"the data gives {x.shape[1]} frames to predict but model.future_frames="
                f"{self.future_frames}: leave model.future_frames at ${{data.future_frames}}."
            )
        return x, y

    def make_fake(self, cond: torch.Tensor, n: int, noise: torch.Generator) -> torch.Tensor:
        # self.generator: the loop may swap in the EMA copy (its batch-norm statistics)
        return torch.sigmoid(rollout(self.generator, cond, self.future_frames))

    def critic(self, cond: torch.Tensor) -> Critic:
        """D on whole clips: the context (B, T_c, C, H, W) followed by the frames to judge
        (B, T_f, C, H, W) -> scores (B,)."""
        return lambda frames: self.discriminator(torch.cat([cond.to(frames.dtype), frames], 1))

    def extra_generator_terms(
        self, fake: torch.Tensor, real: torch.Tensor, cond: torch.Tensor
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """`recon`: the squared error per frame (summed over its pixels), averaged over frames
        and clips; always logged, a term of G's loss when `recon_weight` > 0."""
        return {"recon": (self.recon_weight, frame_mse(fake, real).mean())}

    def divergence_advice(self) -> str:
        return (
            "Lower the learning rates (model.optimizer_g.lr, model.optimizer_d.lr), add "
            "model.gradient_clip_val=1.0, or lower model.adv_weight."
        )

    # --- evaluation -------------------------------------------------------------------------
    def eval_scalars(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = self.prepare_batch(batch)
        pred = self.predict(y, x.shape[1])[0]  # (b, t_f, c, h, w) in [0, 1]
        scalars = prediction_scalars(pred, x, y)
        if self.adversarial:
            critic = self.critic(y)
            seen = self.objective.evaluate(critic(x).float(), critic(pred).float())
            scalars.update({k: seen[k] for k in ("loss_d", "d_real", "d_fake")})
        return scalars
