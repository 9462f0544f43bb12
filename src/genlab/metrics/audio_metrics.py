"""Metrics of generated and modelled audio: likelihood in bits per sample (and the unigram
baseline it must beat), and a spectrogram classifier trained on real clips whose accuracy on
generated clips of each conditioned digit, Inception score and Fréchet distance on its
features judge generated sound (the SC09 practice of Donahue et al. 2019).

- `unigram_nll_bits`: the cross-entropy of test clips' μ-law classes under the classes'
  frequencies in the training clips (add-one smoothed; per digit when labels are given): what
  a model that ignores time achieves. WaveNet's val/test nll_bits_per_sample is the same
  quantity under its conditional distributions.
- `SpectrogramClassifier`: log-mel spectrogram -> three conv blocks -> pooled features ->
  digit logits; `train_spectrogram_classifier` fits it on real clips (seeded).
- `classifier_scores`: accuracy (overall and per conditioned digit), IS from its logits and
  FID between its features of generated and real clips (genlab.metrics.distances).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab.losses.mu_law import CLASSES, mu_law_encode
from genlab.metrics.distances import fid, inception_score
from genlab.nets.spectrogram import LogMel
from genlab.utils.errors import GenlabError


def unigram_nll_bits(
    train_x: torch.Tensor,
    test_x: torch.Tensor,
    *,
    train_y: torch.Tensor | None = None,
    test_y: torch.Tensor | None = None,
    alpha: float = 1.0,
) -> float:
    """Bits per sample of the test clips' μ-law classes under the class frequencies of the
    training clips (+alpha each); with labels, one histogram per label. Clips (N, ..., L) in
    [-1, 1]."""
    q_train = mu_law_encode(train_x).reshape(len(train_x), -1)
    q_test = mu_law_encode(test_x).reshape(len(test_x), -1)
    if (train_y is None) != (test_y is None):
        raise ValueError("give labels for both sets or for neither")
    if train_y is None:
        train_y = torch.zeros(len(q_train), dtype=torch.long)
        test_y = torch.zeros(len(q_test), dtype=torch.long)
    groups = int(max(train_y.max(), test_y.max())) + 1
    counts = torch.full((groups, CLASSES), float(alpha), dtype=torch.float64)
    idx = (train_y.long()[:, None] * CLASSES + q_train).reshape(-1)
    counts.view(-1).index_add_(0, idx, torch.ones(idx.numel(), dtype=torch.float64))
    logp = (counts / counts.sum(1, keepdim=True)).log2()  # (groups, 256)
    nll = -logp[test_y.long()[:, None], q_test]  # (m, l)
    return float(nll.mean())


class SpectrogramClassifier(nn.Module):
    """Waveforms (B, 1, L) -> digit logits (B, num_classes); `features` (B, feature_dim).

    Log-mel spectrogram (standardised per clip, so loudness does not decide), three blocks of
    3x3 conv + batch norm + ReLU + 2x2 max-pool, global average pooling, a dense feature
    layer, the class layer."""

    def __init__(
        self,
        *,
        rate: float,
        num_classes: int = 10,
        n_mels: int = 32,
        n_fft: int = 256,
        hop: int = 128,
        channels: tuple[int, ...] = (16, 32, 64),
        feature_dim: int = 64,
    ) -> None:
        super().__init__()
        self.mel = LogMel(rate=rate, n_mels=n_mels, n_fft=n_fft, hop=hop)
        blocks: list[nn.Module] = []
        c_in = 1
        for c in channels:
            blocks += [
                nn.Conv2d(c_in, c, 3, padding=1),
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.dense = nn.Linear(c_in, feature_dim)
        self.out = nn.Linear(feature_dim, num_classes)
        self.num_classes, self.feature_dim = num_classes, feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mel(x.float().mean(1))  # (b, n_mels, frames)
        m = (m - m.mean(dim=(1, 2), keepdim=True)) / (m.std(dim=(1, 2), keepdim=True) + 1e-5)
        h = self.blocks(m[:, None]).mean(dim=(2, 3))  # (b, c)
        return F.relu(self.dense(h))  # (b, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))  # (b, num_classes)


def train_spectrogram_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    rate: float,
    epochs: int = 20,
    batch_size: int = 16,
    lr: float = 1e-2,
    seed: int = 0,
    **net_options,
) -> SpectrogramClassifier:
    """A SpectrogramClassifier fitted to real clips x (N, 1, L) with digits y (N,) by Adam on
    cross-entropy, shuffled by `seed`; returned in eval mode."""
    if len(x) < 2:
        raise GenlabError(
            f"the spectrogram classifier needs real clips to learn from, got {len(x)}."
        )
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SpectrogramClassifier(rate=rate, **net_options)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2:  # batch norm needs two clips
                continue
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def classify(
    net: SpectrogramClassifier, x: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, K), features (N, d)) of clips (N, 1, L)."""
    logits, feats = [], []
    for chunk in x.split(batch_size):
        f = net.features(chunk)
        feats.append(f)
        logits.append(net.out(f))
    return torch.cat(logits), torch.cat(feats)


def classifier_scores(
    net: SpectrogramClassifier,
    fake: torch.Tensor,
    fake_y: torch.Tensor,
    real: torch.Tensor,
    *,
    is_splits: int = 1,
) -> dict[str, float]:
    """How the classifier sees generated clips `fake` (N, 1, L) conditioned on digits `fake_y`
    against real clips (M, 1, L): `accuracy` (argmax = the conditioned digit), `acc_<d>` per
    digit present, `is` (Inception score of its logits), `fid` (Fréchet distance of its
    features, fake against real)."""
    logits, f_fake = classify(net, fake)
    _, f_real = classify(net, real)
    right = logits.argmax(1) == fake_y
    scores = {"accuracy": float(right.float().mean())}
    for d in fake_y.unique().tolist():
        scores[f"acc_{d}"] = float(right[fake_y == d].float().mean())
    scores["is"] = inception_score(logits, splits=is_splits)[0]
    scores["fid"] = fid(f_real, f_fake)
    return scores


def bits(nats: float) -> float:
    """Nats -> bits."""
    return nats / math.log(2)
