"""Spectrograms of waveforms with torch.stft: the magnitude STFT, a mel filterbank (HTK's mel
scale, triangles of unit height) and log-mel spectrograms. Used by WaveNet's local
conditioning (vocoder mode), the spectrogram classifier of the audio metrics and the
waveform writer's previews; no audio library needed."""

from __future__ import annotations

import torch
from torch import nn


def stft_power(x: torch.Tensor, *, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT|² of waveforms (..., L) with a Hann window, frames centred (reflect padding where
    the clip is long enough, zeros otherwise): (..., n_fft // 2 + 1, L // hop + 1)."""
    lead, length = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, length).float()
    pad = n_fft // 2
    mode = "reflect" if length > pad else "constant"
    flat = nn.functional.pad(flat[:, None], (pad, pad), mode=mode)[:, 0]
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(flat, n_fft, hop, window=window, center=False, return_complex=True)
    return spec.abs().square().reshape(*lead, *spec.shape[-2:])


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(*, n_mels: int, n_fft: int, rate: float, f_min: float = 0.0) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters equally spaced on the mel scale from f_min
    to the Nyquist frequency; each filter peaks at 1 at its centre frequency."""
    freqs = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(hz_to_mel(f_min), hz_to_mel(rate / 2), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lo) / (mid - lo)
    down = (hi - freqs) / (hi - mid)
    return torch.minimum(up, down).clamp(min=0).float()


def log_mel(
    x: torch.Tensor, *, rate: float, n_mels: int = 40, n_fft: int = 256, hop: int = 64
) -> torch.Tensor:
    """log(mel power + 1e-5) of waveforms (..., L): (..., n_mels, L // hop + 1)."""
    bank = mel_filterbank(n_mels=n_mels, n_fft=n_fft, rate=rate).to(x.device)
    return torch.log(
        torch.einsum("mf,...ft->...mt", bank, stft_power(x, n_fft=n_fft, hop=hop)) + 1e-5
    )


class LogMel(nn.Module):
    """`log_mel` as a module with a fixed filterbank (a buffer, not saved in checkpoints)."""

    def __init__(self, *, rate: float, n_mels: int = 40, n_fft: int = 256, hop: int = 64) -> None:
        super().__init__()
        if n_fft < 4 or hop < 1 or n_mels < 1:
            raise ValueError(f"n_fft={n_fft}, hop={hop}, n_mels={n_mels}")
        self.rate, self.n_mels, self.n_fft, self.hop = rate, n_mels, n_fft, hop
        bank = mel_filterbank(n_mels=n_mels, n_fft=n_fft, rate=rate)
        self.register_buffer("bank", bank, persistent=False)

    def frames(self, length: int) -> int:
        """Frames of a clip of `length` samples."""
        return length // self.hop + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (..., L) -> (..., n_mels, L // hop + 1)
        power = stft_power(x, n_fft=self.n_fft, hop=self.hop)
        return torch.log(torch.einsum("mf,...ft->...mt", self.bank, power) + 1e-5)


def db_scale(power: torch.Tensor, *, floor_db: float = 80.0) -> torch.Tensor:
    """Power -> [0, 1]: decibels relative to the largest value, floored `floor_db` below it."""
    db = 10 * torch.log10(power.clamp(min=1e-12))
    top = db.amax(dim=(-2, -1), keepdim=True)
    return ((db - top + floor_db) / floor_db).clamp(0, 1)
