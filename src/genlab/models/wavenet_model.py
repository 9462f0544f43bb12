"""WaveNet as a genlab model: maximum likelihood over μ-law classes, sample by sample.

Loss: the cross-entropy of every sample's μ-law class given the samples before it (and the
digit, and in vocoder mode the clip's log-mel spectrogram), averaged over samples and clips,
in nats (`*/loss`); `*/nll_bits_per_sample` is the same divided by ln 2, the number the model
is judged by. It is an exact likelihood of the 8-bit μ-law clip, so it compares directly with
any other model of the same classes (the unigram baseline of genlab.metrics.audio_metrics,
for one).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from genlab.losses.mu_law import mu_law_decode, mu_law_encode
from genlab.models.genlab_module import OptimizerFactory, SchedulerFactory, StepModule
from genlab.nets.spectrogram import LogMel
from genlab.utils.errors import GenlabError


class WaveNetModel(StepModule):
    """`net`: a genlab.nets.wavenet.WaveNet. `sample_rate` and `length` are the data's
    (clips are (B, 1, length) in [-1, 1]); `n_fft` sizes the log-mel spectrogram of the
    vocoder mode (net.local_channels mel bands, net.local_hop samples per frame).

    Capabilities (for the callbacks, eval tasks and genlab.sample):
    - `sample(n, *, y=None, generator=None, temperature=1.0, length=None, mel=None,
      fast=True)` -> (n, 1, length) waveforms in [-1, 1], generated sample by sample (fast:
      cached activations; `fast=False`: the naive loop); a digit-conditioned model without
      `y` speaks the digits 0, 1, ..., 9, 0, ... (`default_labels`).
    - `log_likelihood(x, y=None)` -> log p(x) of each clip's μ-law classes, nats (B,).
    - `nll_bits_per_sample(x, y=None)` -> -log2 p(x) / length per clip (B,).
    - `num_classes`, `default_labels(n)` (genlab.models.genlab_module.GenlabModule).
    """

    def __init__(
        self,
        *,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        sample_rate: int | None = 8000,
        length: int | None = 4096,
        n_fft: int = 256,
        monitor: str = "val/nll_bits_per_sample",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        if sample_rate is None or length is None:
            raise GenlabError(
                "model=wavenet generates waveforms, and this data config has no sample_rate "
                "and length (it is not audio): add data=spoken_digits (synthesised offline), "
                "data=fsdd or data=sc09, or use experiment=wavenet_digits."
            )
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.sample_rate, self.length = int(sample_rate), int(length)
        self.num_classes = int(getattr(net, "num_classes", 0) or 0)
        self.monitor, self.monitor_mode = monitor, monitor_mode
        local = int(getattr(net, "local_channels", 0) or 0)
        self.mel = (
            LogMel(rate=sample_rate, n_mels=local, n_fft=n_fft, hop=net.local_hop)
            if local
            else None
        )

    # --- likelihood -------------------------------------------------------------------------
    def _labels(self, y: torch.Tensor | None, n: int, *, scoring: bool) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        if y is None:
            if scoring:
                raise GenlabError(
                    "this WaveNet is conditioned on the digit: scoring clips needs their "
                    "labels (y)."
                )
            return self.default_labels(n)
        return torch.as_tensor(y, device=self.device).long().reshape(-1)

    def log_probs(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(q_t | q_<t, ...) of every sample of clips (B, 1, L): (B, L) nats."""
        q = mu_law_encode(x[:, 0])  # (b, l) classes
        local = self.mel(x[:, 0]) if self.mel is not None else None
        out = self.net(q, y=self._labels(y, len(x), scoring=True), local=local)
        return self.net.log_prob(out, q)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) of each clip's μ-law classes in nats: (B,)."""
        return self.log_probs(x, y).sum(dim=1)

    def nll_bits_per_sample(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """-log2 p(x) / L per clip (B,)."""
        return -self.log_probs(x, y).mean(dim=1) / math.log(2)

    # --- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        length: int | None = None,
        mel: torch.Tensor | None = None,
        fast: bool = True,
    ) -> torch.Tensor:
        """n clips (n, 1, length) in [-1, 1] (see the class docstring)."""
        length = int(length or self.length)
        if self.mel is not None and mel is None:
            raise GenlabError(
                "this WaveNet is a vocoder (locally conditioned on a log-mel spectrogram): "
                "pass mel= (e.g. model.mel(x[:, 0]) of real clips) to sample."
            )
        q = self.net.generate(
            n,
            length,
            y=self._labels(y, n, scoring=False),
            local=mel,
            generator=generator,
            temperature=temperature,
            fast=fast,
        )
        return mu_law_decode(q)[:, None].to(self.dtype)

    # --- training -----------------------------------------------------------------------------
    def step(self, batch: tuple[torch.Tensor, Any], stage: str) -> torch.Tensor:
        x, y = batch  # (b, 1, l) in [-1, 1], (b,) digits
        loss = -self.log_probs(x, y).mean()  # nats per sample
        if self.logs_now(stage):
            scalars = {"loss": loss, "nll_bits_per_sample": loss.detach() / math.log(2)}
            bar = ("loss",) if stage == "train" else ("nll_bits_per_sample",)
            self.log_scalars(stage, scalars, batch_size=len(x), prog_bar=bar)
        return loss
