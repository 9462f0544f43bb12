"""Closed forms of the audio metrics and spectrograms: the unigram baseline's bits, the mel
filterbank's triangles, a tone's spectrogram peak in the STFT and in the writer's image.
Broken variants each test was seen failing on are named in its docstring."""

from __future__ import annotations

import math

import torch

from genlab.data.modality import waveform
from genlab.losses.mu_law import mu_law_decode
from genlab.metrics.audio_metrics import unigram_nll_bits
from genlab.nets.spectrogram import hz_to_mel, log_mel, mel_filterbank, stft_power
from genlab.writers.waveform_writer import preview, spectrogram_image


def test_unigram_baseline_closed_forms():
    """Training clips holding every μ-law level equally often: any test clip costs exactly 8
    bits a sample. Per digit (add-one smoothing over 256 classes, n samples of one level):
    a test sample of that level costs -log2((n+1)/(n+256)), another level -log2(1/(n+256));
    without labels the two digits' levels pool. Seen failing with the smoothing left out of
    the denominator and with the labels ignored."""
    levels = mu_law_decode(torch.arange(256)).repeat(3, 1)[:, None]  # (3, 1, 256)
    test = torch.rand(4, 1, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert unigram_nll_bits(levels, test) == 8.0
    n = 50
    train = torch.stack(
        [mu_law_decode(torch.full((n,), 10)), mu_law_decode(torch.full((n,), 200))]
    )
    ty = torch.tensor([0, 1])
    same = mu_law_decode(torch.full((1, 7), 10))
    other = mu_law_decode(torch.full((1, 7), 200))
    got = unigram_nll_bits(train, same, train_y=ty, test_y=torch.tensor([0]))
    assert math.isclose(got, -math.log2((n + 1) / (n + 256)), rel_tol=1e-12)
    got = unigram_nll_bits(train, other, train_y=ty, test_y=torch.tensor([0]))
    assert math.isclose(got, -math.log2(1 / (n + 256)), rel_tol=1e-12)
    pooled = unigram_nll_bits(train, other)
    assert math.isclose(pooled, -math.log2((n + 1) / (2 * n + 256)), rel_tol=1e-12)


def test_mel_filterbank_and_stft_peaks():
    """Each mel filter is a triangle peaking at 1 on its centre frequency (centres equally
    spaced in mel); a tone at an FFT bin's frequency puts the STFT's power peak in that bin
    and the log-mel peak in the filter around it; shapes are (mels, L // hop + 1). Seen
    failing with the mel scale's 700 Hz written as 1000 (centres moved)."""
    rate, n_fft = 8000, 256
    bank = mel_filterbank(n_mels=20, n_fft=n_fft, rate=rate)
    freqs = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = hz_to_mel(freqs)
    step = float(hz_to_mel(rate / 2.0)) / 21
    for m in range(20):
        peak = int(bank[m].argmax())
        assert abs(float(mels[peak]) - (m + 1) * step) <= float(mels[peak + 1] - mels[peak]), m
        assert float(bank[m].max()) > 0.8 and float(bank[m].min()) == 0
    k = 40  # a tone exactly on bin 40: 1250 Hz
    t = torch.arange(4096) / rate
    x = 0.5 * torch.sin(2 * math.pi * (k * rate / n_fft) * t)
    power = stft_power(x, n_fft=n_fft, hop=64)
    assert power.shape == (n_fft // 2 + 1, 4096 // 64 + 1)
    assert int(power[:, 10:-10].mean(1).argmax()) == k
    lm = log_mel(x[None], rate=rate, n_mels=20, n_fft=n_fft, hop=64)
    assert lm.shape == (1, 20, 65)
    assert int(lm[0, :, 10:-10].mean(1).argmax()) == int(bank[:, k].argmax())


def test_writer_spectrogram_shows_the_tone_where_it_is():
    """The preview draws each clip's spectrogram with low frequencies at the bottom: a
    1 kHz tone's brightest row sits at 1000/4000 of the height from the bottom (8 kHz), a
    3 kHz tone's higher; the grid holds one panel per clip. Seen failing without the flip
    (the tone drawn from the top)."""
    rate = 8000
    t = torch.arange(4096) / rate
    clips = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in (1000.0, 3000.0)])[:, None]
    rows = []
    for clip, f in zip(clips, (1000.0, 3000.0), strict=True):
        img = spectrogram_image(clip, rate)  # (3, F, T)
        brightness = img.sum(0)[:, 5:-5].mean(1)
        row = int(brightness.argmax())
        height = img.shape[1]
        assert abs((height - 1 - row) / (height - 1) - f / (rate / 2)) < 0.02, (f, row)
        rows.append(row)
    assert rows[1] < rows[0]
    grid = preview(clips, modality=waveform(4096, rate), n_per_row=2)
    one = spectrogram_image(clips[0], rate)
    assert grid.shape == (3, one.shape[1] + 4, 2 * one.shape[2] + 6)
