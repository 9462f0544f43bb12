"""Waveforms: one 16-bit WAV file per sample, a PNG of their log-spectrograms in a grid (the
preview, made with torch.stft), W&B Audio of the same samples (as WAV files)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from genlab.data.modality import Modality
from genlab.data.wav_files import write_wav
from genlab.nets.spectrogram import db_scale, stft_power

# a dark-to-bright colour ramp (black, purple, red, orange, pale yellow) for the spectrograms
RAMP = torch.tensor(
    [
        [0.0, 0.0, 0.02],
        [0.33, 0.06, 0.43],
        [0.73, 0.21, 0.33],
        [0.98, 0.55, 0.04],
        [0.99, 1.0, 0.64],
    ]
)


def rate_of(modality: Modality) -> int:
    return int(modality.rate or 16000)


def spectrogram_image(x: torch.Tensor, rate: int) -> torch.Tensor:
    """One waveform (C, L) -> a (3, F, T) image in [0, 1]: power in dB (80 dB below the clip's
    peak is black), low frequencies at the bottom, 32 ms Hann windows with 75% overlap."""
    n_fft = 1 << max(4, round(rate * 0.032).bit_length() - 1)
    n_fft = min(n_fft, 1 << max(4, (x.shape[-1] - 1).bit_length() - 1))
    power = stft_power(x.float().mean(0), n_fft=n_fft, hop=n_fft // 4)  # (F, T)
    level = db_scale(power).flip(0)  # rows: high frequencies first
    pos = level * (len(RAMP) - 1)
    lo = pos.floor().long().clamp(max=len(RAMP) - 2)
    frac = (pos - lo)[..., None]
    rgb = RAMP[lo] * (1 - frac) + RAMP[lo + 1] * frac  # (F, T, 3)
    return rgb.permute(2, 0, 1).contiguous()


def preview(x: torch.Tensor, *, modality: Modality, n_per_row: int = 8) -> torch.Tensor:
    """(B, C, L) in [-1, 1] -> one grid of spectrograms (3, H, W), 2 px padding."""
    x = x.detach().float().cpu()
    images = torch.stack([spectrogram_image(clip, rate_of(modality)) for clip in x])
    return make_grid(images, nrow=n_per_row, padding=2, pad_value=1.0)


def save(
    x: torch.Tensor,
    stem: Path,
    *,
    modality: Modality,
    n_per_row: int = 8,
    captions: list[str] | None = None,
) -> list[Path]:
    """`stem.png` (the spectrograms) and `stem_<i>.wav` for each sample (16-bit PCM)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_suffix(".png")
    save_image(preview(x, modality=modality, n_per_row=n_per_row), png)
    width = max(2, len(str(len(x) - 1)))
    wavs = [
        write_wav(
            stem.parent / f"{stem.name}_{i:0{width}d}.wav", clip.clamp(-1, 1), rate_of(modality)
        )
        for i, clip in enumerate(x.detach().float().cpu())
    ]
    return [png, *wavs]


def media(x: torch.Tensor, *, modality: Modality, captions: list[str] | None = None) -> list[Any]:
    """One wandb.Audio per sample. wandb encodes raw arrays only with the soundfile package,
    so each clip is handed over as a WAV file written here (a temporary folder removed when
    the process ends; W&B copies the files when they are logged)."""
    import wandb

    folder = Path(_media_folder())
    names = captions or [None] * len(x)
    out = []
    for i, clip in enumerate(x.detach().float().clamp(-1, 1).cpu()):
        fd, path = tempfile.mkstemp(suffix=".wav", dir=folder)
        os.close(fd)
        write_wav(path, clip, rate_of(modality))
        out.append(wandb.Audio(path, caption=names[i]))
    return out


_MEDIA: list[str] = []


def _media_folder() -> str:
    if not _MEDIA:
        _MEDIA.append(tempfile.mkdtemp(prefix="genlab-audio-"))
        atexit.register(shutil.rmtree, _MEDIA[0], True)
    return _MEDIA[0]
