"""WAV files someone else may have made, read as data: the RIFF header parsed by hand with
every size checked against the file's real size before anything is allocated, only PCM
(8/16/24/32-bit) and IEEE float (32/64-bit) sample formats (also in WAVE_FORMAT_EXTENSIBLE),
a size limit on the file, opened without blocking (a FIFO named .wav would hang the reader).
Writing is 16-bit PCM through Python's `wave` module. Resampling is polyphase filtering
(scipy.signal.resample_poly: a Kaiser-windowed sinc low-pass at the lower Nyquist rate).
"""

from __future__ import annotations

import math
import os
import stat
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlab.utils.errors import GenlabError

# 64 MB: six minutes of 16-bit stereo at 44.1 kHz; spoken digits are a few kilobytes each
DEFAULT_MAX_WAV_BYTES = 64 * 1024 * 1024
PCM, IEEE_FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
MAX_RATE = 768_000
MAX_CHANNELS = 64


class WavRefused(OSError):
    """A WAV file genlab does not read: why, in words."""


@dataclass(frozen=True)
class Wav:
    """Samples (channels, frames) as float32 in [-1, 1] and the sample rate in Hz."""

    samples: np.ndarray
    rate: int

    @property
    def channels(self) -> int:
        return self.samples.shape[0]


def _read_bounded(path: str, max_bytes: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise WavRefused(f"cannot be opened ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise WavRefused("not a regular file (a FIFO, device or socket): not read")
        if st.st_size > max_bytes:
            raise WavRefused(
                f"{st.st_size:,} bytes, above the limit of {max_bytes:,} bytes "
                "(data.max_file_bytes): refused before reading"
            )
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while being read
        raise WavRefused(f"more than {max_bytes:,} bytes (data.max_file_bytes)")
    return data


def parse_wav(data: bytes) -> Wav:
    """A WAV file's bytes -> Wav; WavRefused saying what is wrong with the header."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        what = "empty" if not data else "not a RIFF/WAVE file"
        raise WavRefused(f"{what} (no 'RIFF....WAVE' header)")
    riff_size = struct.unpack_from("<I", data, 4)[0]
    # the RIFF size counts what follows its field; a larger claim is a truncated file
    end = len(data)
    if riff_size + 8 < end:
        end = riff_size + 8  # trailing bytes after the RIFF chunk are not part of it
    fmt = None
    samples = None
    pos = 12
    while pos + 8 <= end:
        chunk_id = data[pos : pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if size > end - body:
            if chunk_id == b"data" and fmt is not None:
                raise WavRefused(
                    f"its data chunk claims {size:,} bytes but only {end - body:,} follow "
                    "(a truncated or damaged file)"
                )
            raise WavRefused(
                f"chunk {chunk_id!r} at byte {pos} claims {size:,} bytes but only "
                f"{end - body:,} follow (a truncated or damaged file)"
            )
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body : body + size])
        elif chunk_id == b"data":
            if fmt is None:
                raise WavRefused("its data chunk comes before the 'fmt ' chunk")
            samples = _decode(data[body : body + size], *fmt)
            break
        pos = body + size + (size & 1)  # chunks are padded to an even size
    if fmt is None:
        raise WavRefused("no 'fmt ' chunk (not a WAV file, or damaged)")
    if samples is None:
        raise WavRefused("no data chunk (no samples)")
    if samples.shape[1] == 0:
        raise WavRefused("empty: the data chunk holds no samples")
    return Wav(samples, fmt[2])


def _parse_fmt(body: bytes) -> tuple[int, int, int, int]:
    """(format, bits, rate, channels) from a 'fmt ' chunk, checked for sense."""
    if len(body) < 16:
        raise WavRefused(f"its 'fmt ' chunk has {len(body)} bytes, fewer than the 16 required")
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == EXTENSIBLE:
        if len(body) < 40:
            raise WavRefused("WAVE_FORMAT_EXTENSIBLE header shorter than 40 bytes")
        tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID's first two bytes
    if tag not in (PCM, IEEE_FLOAT):
        raise WavRefused(
            f"sample format {tag} (compressed or unknown): genlab reads PCM (1) and IEEE "
            "float (3) WAV files; convert it, e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav`"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise WavRefused(f"{channels} channels in its header (1 to {MAX_CHANNELS} make sense)")
    if not 1 <= rate <= MAX_RATE:
        raise WavRefused(
            f"a sample rate of {rate} Hz in its header (1 to {MAX_RATE:,} make sense)"
        )
    allowed = (8, 16, 24, 32) if tag == PCM else (32, 64)
    if bits not in allowed:
        kind = "PCM" if tag == PCM else "float"
        raise WavRefused(f"{bits}-bit {kind} samples (genlab reads {allowed} bits)")
    if block_align != channels * bits // 8:
        raise WavRefused(
            f"a block size of {block_align} bytes for {channels} channels of {bits} bits "
            f"(should be {channels * bits // 8}): a damaged header"
        )
    return tag, bits, rate, channels


def _decode(raw: bytes, tag: int, bits: int, rate: int, channels: int) -> np.ndarray:
    width = bits // 8
    frames = len(raw) // (width * channels)
    raw = raw[: frames * width * channels]
    if tag == IEEE_FLOAT:
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
        if not np.isfinite(x).all():
            raise WavRefused("float samples that are NaN or infinite")
        x = np.clip(x, -1.0, 1.0)
    elif bits == 8:  # unsigned, 128 = silence
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    else:
        dtype = "<i2" if bits == 16 else "<i4"
        x = np.frombuffer(raw, dtype=dtype).astype(np.float32) / float(2 ** (bits - 1))
    return np.ascontiguousarray(x.reshape(frames, channels).T)  # (channels, frames)


def read_wav(path: str | Path, *, max_bytes: int = DEFAULT_MAX_WAV_BYTES) -> Wav:
    """The WAV file at `path`; WavRefused (an OSError) saying why it cannot be read."""
    return parse_wav(_read_bounded(str(path), max_bytes))


def write_wav(path: str | Path, x: torch.Tensor | np.ndarray, rate: int) -> Path:
    """Write samples (L,) or (channels, L) in [-1, 1] (clipped) as 16-bit PCM."""
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    pcm = np.round(np.clip(a, -1.0, 1.0) * 32767.0).astype("<i2")
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[0])
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(np.ascontiguousarray(pcm.T).tobytes())
    return path


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Samples (..., L) from rate_in to rate_out Hz by polyphase filtering
    (up/down by the reduced ratio); unchanged when the rates are equal."""
    if rate_in == rate_out:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // g, int(rate_in) // g
    if max(up, down) > 10_000:
        raise GenlabError(
            f"resampling from {rate_in} Hz to {rate_out} Hz needs a filter of ratio "
            f"{up}/{down}: choose a rate with a simpler ratio (data.sample_rate)."
        )
    return resample_poly(x, up, down, axis=-1).astype(np.float32)
