"""Video prediction: given context frames, generate the frames that follow.

Two loops, each a StepModule on batches (x, y) = (frames to predict (B, T_f, C, H, W), context
(B, T_c, C, H, W)), both in [0, 1] (genlab.data.clips):

- VideoPredictor: a deterministic predictor (an LSTM encoder-predictor or a ConvLSTM
  encoder-forecaster, by config) trained frame by frame, with teacher forcing or scheduled
  sampling;
- SVGLP: stochastic video generation with a learned prior (Denton & Fergus 2018).

The adversarial variant trains on the one adversarial loop: genlab.models.video_gan, with
`rollout` below as its generator's forward pass.

Capabilities: `predict(context, n_future, *, generator=None, samples=1)` -> (samples, B,
n_future, C, H, W) in [0, 1] (a deterministic model repeats its one future `samples` times),
and CanGenerate's `generate(y, *, generator=None, samples=1)` (genlab.models.protocols): the
`future_frames` frames after the context y, (B, ...) for one sample, (samples, B, ...) for
several, which the conditional grids and genlab.sample call.

Losses are per frame: each frame's loss is summed over its pixels, then averaged over frames
and clips (`*/loss`); `*/mse_per_frame` is the same convention (genlab.metrics.video_metrics),
logged beside the copy-last-frame and mean-frame baselines on the same clips.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from genlab.distributions import DiagonalGaussian
from genlab.losses.reconstruction import KINDS, reconstruction_loss
from genlab.metrics.video_metrics import (
    BASELINES,
    best_of_k,
    per_step_diversity,
    step_metrics,
)
from genlab.models.genlab_module import OptimizerFactory, SchedulerFactory, StepModule
from genlab.nets.video_predictors import CellStates
from genlab.utils.errors import GenlabError

Params = tuple[torch.Tensor, torch.Tensor]  # a diagonal Gaussian's (mean, logvar), (B, z_dim)
# SVG-LP's recurrent states: the posterior's, the prior's, the predictor's (None: zeros)
SVGStates = tuple[CellStates | None, CellStates | None, CellStates | None]


def prediction_scalars(
    pred: torch.Tensor, truth: torch.Tensor, context: torch.Tensor, *, baselines: bool = True
) -> dict[str, torch.Tensor]:
    """Scalars of predictions (B, T, C, H, W) against the truth: `mse_per_frame`, `psnr`,
    `ssim`, `sharpness` (averaged over the horizon), `mse_step01`... (the curve over the
    horizon), and the same four for each baseline (`mse_copy_last`, `ssim_mean_frame`, ...)
    made from `context`."""
    curves = step_metrics(pred, truth)
    out = {
        "mse_per_frame": curves["mse"].mean(),
        "psnr": curves["psnr"].mean(),
        "ssim": curves["ssim"].mean(),
        "sharpness": curves["sharpness"].mean(),
    }
    out.update({f"mse_step{k + 1:02d}": v for k, v in enumerate(curves["mse"])})
    if baselines:
        for name, baseline in BASELINES.items():
            base = step_metrics(baseline(context, truth.shape[1]), truth)
            out.update({f"{metric}_{name}": v.mean() for metric, v in base.items()})
    return out


def rollout(
    net: nn.Module,
    context: torch.Tensor,
    n_future: int,
    *,
    truth: torch.Tensor | None = None,
    p_truth: float = 0.0,
) -> torch.Tensor:
    """Logits of `n_future` frames after `context` (B, T_c, C, H, W) from a frame-by-frame
    predictor `net` (`encode_context`, `step`): (B, n_future, C, H, W). Each frame is
    predicted from the one before: the last context frame, then the prediction; with `truth`
    (B, n_future, C, H, W), each clip's next input is its true frame with probability
    `p_truth` (drawn per clip and step from torch's global generator)."""
    state = net.encode_context(context)
    frame = context[:, -1]  # (b, c, h, w)
    out = []
    for k in range(n_future):
        logits, state = net.step(frame, state)
        out.append(logits)
        if k + 1 == n_future:
            break
        frame = torch.sigmoid(logits)
        if truth is not None and p_truth > 0:
            use = torch.rand(len(frame), device=frame.device) < p_truth
            frame = torch.where(use[:, None, None, None], truth[:, k], frame)
    return torch.stack(out, dim=1)


class Predicts:
    """`generate` (CanGenerate) from `predict`: the `future_frames` frames after the context."""

    future_frames: int

    def predict(
        self,
        context: torch.Tensor,
        n_future: int,
        *,
        generator: torch.Generator | None = None,
        samples: int = 1,
    ) -> torch.Tensor:
        raise NotImplementedError

    def generate(
        self, y: torch.Tensor, *, generator: torch.Generator | None = None, samples: int = 1
    ) -> torch.Tensor:
        """Context clips y (B, T_c, C, H, W) -> their futures (B, future_frames, C, H, W), or
        (samples, B, future_frames, C, H, W) for samples > 1."""
        out = self.predict(y, self.future_frames, generator=generator, samples=samples)
        return out[0] if samples == 1 else out


class PredictsOneFuture(Predicts):
    """`predict` and `forward` of a deterministic frame-by-frame predictor: the one future
    that `prediction_net()` (`encode_context`, `step`) rolls out on its own frames."""

    def prediction_net(self) -> nn.Module:
        raise NotImplementedError

    def predict(
        self,
        context: torch.Tensor,
        n_future: int,
        *,
        generator: torch.Generator | None = None,
        samples: int = 1,
    ) -> torch.Tensor:
        """Context (B, T_c, C, H, W) in [0, 1] -> futures (samples, B, n_future, C, H, W) in
        [0, 1]; deterministic: the one future repeated (`generator` is not used)."""
        future = torch.sigmoid(rollout(self.prediction_net(), context, n_future))
        return future.unsqueeze(0).expand(samples, *future.shape)

    def forward(self, context: torch.Tensor, n_future: int) -> torch.Tensor:
        return self.predict(context, n_future)[0]


def check_future_frames(future_frames: int) -> int:
    if future_frames < 1:
        raise GenlabError(
            f"model.future_frames={future_frames}: the frames `generate` predicts (the data's "
            "data.future_frames) must be at least 1."
        )
    return future_frames


class VideoPredictor(PredictsOneFuture, StepModule):
    """A deterministic next-frames predictor around `net`, which provides
    `encode_context(context) -> state` and `step(previous frame, state) -> (logits, state)`
    (genlab.nets.convlstm.ConvLSTMPredictor, genlab.nets.video_predictors.LSTMPredictor).

    The net reads the context, then predicts the future one frame at a time, each from the
    frame before it: the last context frame first, then, in training, the true previous
    frame with probability `teacher_forcing` (1: teacher forcing, 0: the model's own
    predictions, as at test time), else its own prediction. With `teacher_forcing_decay_steps`
    > 0 that probability falls linearly to 0 over that many steps (scheduled sampling, Bengio
    et al. 2015). Validation and test always feed the model its own predictions.

    `reconstruction`: `mse` (of sigmoid(logits)) or `bce` per frame, summed over pixels.
    `future_frames`: the frames `generate` predicts (the data's). Satisfies the prediction
    capabilities (`predict`, `generate`: module docstring).
    """

    def __init__(
        self,
        *,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        reconstruction: str = "mse",
        teacher_forcing: float = 0.0,
        teacher_forcing_decay_steps: int = 0,
        future_frames: int = 10,
        monitor: str = "val/mse_per_frame",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        self.future_frames = check_future_frames(future_frames)
        if reconstruction not in KINDS:
            raise GenlabError(f"model.reconstruction={reconstruction!r}: use one of {KINDS}.")
        if not 0.0 <= teacher_forcing <= 1.0 or teacher_forcing_decay_steps < 0:
            raise GenlabError(
                f"model.teacher_forcing={teacher_forcing} must be a probability in [0, 1] and "
                f"model.teacher_forcing_decay_steps={teacher_forcing_decay_steps} at least 0."
            )
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.reconstruction = reconstruction
        self.teacher_forcing = teacher_forcing
        self.teacher_forcing_decay_steps = teacher_forcing_decay_steps
        self.monitor, self.monitor_mode = monitor, monitor_mode

    def truth_probability(self) -> float:
        """The probability of feeding the true previous frame at this training step."""
        if self.teacher_forcing_decay_steps <= 0:
            return self.teacher_forcing
        left = max(0.0, 1.0 - self.global_step / self.teacher_forcing_decay_steps)
        return self.teacher_forcing * left

    def rollout(
        self,
        context: torch.Tensor,
        n_future: int,
        *,
        truth: torch.Tensor | None = None,
        p_truth: float = 0.0,
    ) -> torch.Tensor:
        """`rollout` (the function) with this model's net."""
        return rollout(self.net, context, n_future, truth=truth, p_truth=p_truth)

    # --- capability -------------------------------------------------------------------------
    def prediction_net(self) -> nn.Module:
        return self.net

    # --- training ---------------------------------------------------------------------------
    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch  # x: future (b, t_f, c, h, w), y: context (b, t_c, c, h, w)
        p = self.truth_probability() if stage == "train" else 0.0
        logits = self.rollout(y, x.shape[1], truth=x if p > 0 else None, p_truth=p)
        per_frame = reconstruction_loss(logits.flatten(0, 1), x.flatten(0, 1), self.reconstruction)
        loss = per_frame.mean()
        if self.logs_now(stage):
            scalars: dict[str, Any] = {"loss": loss}
            if stage == "train":
                scalars["teacher_forcing"] = p
            else:
                pred = torch.sigmoid(logits.detach())
                scalars.update(prediction_scalars(pred, x, y))
            self.log_scalars(stage, scalars, batch_size=len(x), prog_bar=("loss",))
        return loss


class SVGLP(Predicts, StepModule):
    """SVG-LP (Denton & Fergus 2018): frames are encoded to codes h_t (`encoder`, with skip
    connections), a posterior LSTM q(z_t | x_1:t) reads h_t, a learned prior LSTM
    p(z_t | x_1:t-1) reads h_{t-1}, a predictor LSTM maps [h_{t-1}, z_t] to the code of x_t,
    and `decoder` draws x_t from it with the skips of the last context frame (during the
    context: of the frame before). Nets: genlab.nets.video_predictors (SVGFrameEncoder,
    SVGFrameDecoder, GaussianLSTM x 2, PredictorLSTM).

    Training runs over the whole clip (context and future) with true previous frames and z_t
    from the posterior: loss per frame = reconstruction of x_t summed over pixels +
    beta * (C * H * W) * KL(q(z_t) || p(z_t)), averaged over frames and clips. That is the
    paper's objective (per-pixel mean MSE + beta KL, beta = 1e-4) times the pixel count, so
    `beta` means what it means in the paper. Prediction draws z_t from the learned prior and
    feeds the model its own frames; validation and test draw `eval_samples` futures per clip
    from a generator seeded by the batch index (the same futures every epoch) and log the
    first sample's metrics, the best of them (`*_best_of_k`) and their diversity.
    """

    def __init__(
        self,
        *,
        encoder: nn.Module,
        decoder: nn.Module,
        posterior: nn.Module,
        prior: nn.Module,
        predictor: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        g_dim: int = 128,
        z_dim: int = 10,
        beta: float = 1e-4,
        reconstruction: str = "mse",
        eval_samples: int = 5,
        future_frames: int = 10,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        self.future_frames = check_future_frames(future_frames)
        if reconstruction not in KINDS:
            raise GenlabError(f"model.reconstruction={reconstruction!r}: use one of {KINDS}.")
        if beta < 0 or eval_samples < 1:
            raise GenlabError(
                f"model.beta={beta} must be >= 0 and model.eval_samples={eval_samples} >= 1."
            )
        self.encoder, self.decoder = encoder, decoder
        self.posterior, self.prior, self.predictor = posterior, prior, predictor
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.g_dim, self.z_dim, self.beta = g_dim, z_dim, beta
        self.reconstruction, self.eval_samples = reconstruction, eval_samples
        self.monitor, self.monitor_mode = monitor, monitor_mode

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Frames (B, T, C, H, W) -> codes (B, T, g_dim), skips [(B, T, c_i, h_i, w_i)]."""
        b, t = frames.shape[:2]
        codes, skips = self.encoder(frames.flatten(0, 1))
        return codes.view(b, t, -1), [s.view(b, t, *s.shape[1:]) for s in skips]

    @staticmethod
    def gaussian(mean: torch.Tensor, logvar: torch.Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(torch.cat([mean, logvar], dim=-1))

    def elbo_terms(self, context: torch.Tensor, future: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per clip (B,), summed over the T - 1 predicted frames of the clip
        [context, future]: `recon` (nats or squared error, by `reconstruction`) and `kl`
        (nats)."""
        clip = torch.cat([context, future], dim=1)  # (b, t, c, h, w)
        t_c, t_all = context.shape[1], clip.shape[1]
        codes, skips = self.encode(clip)
        states: SVGStates = (None, None, None)
        recon, kl = clip.new_zeros(len(clip)), clip.new_zeros(len(clip))
        for t in range(1, t_all):
            skip = [s[:, min(t - 1, t_c - 1)] for s in skips]
            g, q, p, states = self.transition(codes[:, t - 1], codes[:, t], states, self._rsample)
            logits = self.decoder(g, skip)
            recon = recon + reconstruction_loss(logits, clip[:, t], self.reconstruction)
            kl = kl + self.gaussian(*q).kl(self.gaussian(*p))
        return {"recon": recon, "kl": kl}

    def _rsample(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return self.gaussian(mean, logvar).rsample()

    def transition(
        self,
        h_prev: torch.Tensor,
        h_t: torch.Tensor | None,
        states: SVGStates,
        draw: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, Params | None, Params, SVGStates]:
        """One step of the recurrence, shared by training and prediction: the prior reads the
        code h_{t-1} (B, g_dim), the posterior h_t when given (training, and the context when
        predicting); z_t = draw(mean, logvar) of the posterior when there is one, else of the
        prior; the predictor maps [h_{t-1}, z_t] to the code of x_t.
        -> (that code (B, g_dim), the posterior's (mean, logvar) or None, the prior's, the
        states (posterior, prior, predictor))."""
        s_q, s_p, s_f = states
        q: Params | None = None
        if h_t is not None:
            q_mean, q_logvar, s_q = self.posterior(h_t, s_q)
            q = (q_mean, q_logvar)
        p_mean, p_logvar, s_p = self.prior(h_prev, s_p)
        z = draw(*q) if q is not None else draw(p_mean, p_logvar)
        g, s_f = self.predictor(torch.cat([h_prev, z], dim=1), s_f)
        return g, q, (p_mean, p_logvar), (s_q, s_p, s_f)

    # --- capability -------------------------------------------------------------------------
    def predict(
        self,
        context: torch.Tensor,
        n_future: int,
        *,
        generator: torch.Generator | None = None,
        samples: int = 1,
    ) -> torch.Tensor:
        """Context (B, T_c, C, H, W) in [0, 1] -> `samples` futures (samples, B, n_future, C,
        H, W) in [0, 1], z drawn from the learned prior (from `generator` when given)."""
        b, t_c = context.shape[:2]
        ctx = context.repeat(samples, 1, 1, 1, 1)  # (s * b, t_c, c, h, w), sample-major
        codes, skips = self.encode(ctx)

        def draw(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device)
            return mean + eps.to(mean.dtype) * torch.exp(0.5 * logvar.clamp(-30.0, 20.0))

        states: SVGStates = (None, None, None)
        for t in range(1, t_c):  # the context: states advanced with posterior draws
            *_, states = self.transition(codes[:, t - 1], codes[:, t], states, draw)
        skip = [s[:, t_c - 1] for s in skips]
        h_prev = codes[:, t_c - 1]
        out = []
        for _ in range(n_future):  # the future: z_t from the learned prior
            g, _, _, states = self.transition(h_prev, None, states, draw)
            frame = torch.sigmoid(self.decoder(g, skip))  # (s * b, c, h, w)
            out.append(frame)
            h_prev = self.encoder(frame)[0]
        future = torch.stack(out, dim=1)
        return future.view(samples, b, *future.shape[1:])

    # --- training ---------------------------------------------------------------------------
    def step(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, batch_idx: int = 0
    ) -> torch.Tensor:
        x, y = batch  # x: future (b, t_f, c, h, w), y: context (b, t_c, c, h, w)
        terms = self.elbo_terms(y, x)
        pixels = x[0, 0].numel()
        frames = y.shape[1] + x.shape[1] - 1  # every frame after the first is predicted
        loss = ((terms["recon"] + self.beta * pixels * terms["kl"]) / frames).mean()
        if self.logs_now(stage):
            scalars: dict[str, Any] = {
                "loss": loss,
                "recon_per_frame": (terms["recon"].detach() / frames).mean(),
                "kl_per_frame_nats": (terms["kl"].detach() / frames).mean(),
            }
            if stage != "train":
                gen = torch.Generator(device=x.device).manual_seed(batch_idx)
                futures = self.predict(y, x.shape[1], generator=gen, samples=self.eval_samples)
                scalars.update(prediction_scalars(futures[0], x, y))
                best = prediction_scalars(best_of_k(futures, x), x, y, baselines=False)
                for name in ("mse_per_frame", "psnr", "ssim"):
                    scalars[f"{name}_best_of_k"] = best[name]
                scalars["diversity"] = per_step_diversity(futures).mean()
            self.log_scalars(stage, scalars, batch_size=len(x), prog_bar=("loss",))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "val", batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.step(batch, "test", batch_idx)
