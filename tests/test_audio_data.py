"""Spoken-digit data as users have it: FSDD's and Speech Commands' layouts written here as
real WAV files (Python's wave module and scipy.io.wavfile, several sample formats), read
back sample for sample; bad files named together in one message; the eSpeak NG set the same
bytes from the same seed. Broken variants each test was seen failing on are named in its
docstring."""

from __future__ import annotations

import struct
import sys
import wave

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from genlab.data.spoken_digits import (
    FreeSpokenDigits,
    SpeechCommandsDigits,
    clips_of,
    fix_length,
    speakers_of,
)
from genlab.data.wav_files import read_wav
from genlab.utils.errors import GenlabError

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def tone(freq: float, n: int, rate: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def write_pcm16(path, x: np.ndarray, rate: int, channels: int = 1) -> np.ndarray:
    """Write with Python's wave module; returns the exact values a reader must give back."""
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return pcm.astype(np.float64) / 32768.0


def fsdd_folder(root, digits=(0, 3, 7), speakers=("jackson", "theo"), takes=4, rate=8000):
    """{digit}_{speaker}_{index}.wav with a tone per file whose frequency encodes the file."""
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    for d in digits:
        for s, spk in enumerate(speakers):
            for i in range(takes):
                freq = 200 + 100 * d + 20 * s + 5 * i
                truth[(d, spk, i)] = write_pcm16(
                    root / f"{d}_{spk}_{i}.wav", tone(freq, 800 + 10 * i, rate), rate
                )
    return truth


def test_fsdd_layout_is_read_sample_for_sample(tmp_path):
    """Every file lands in the split its index says (FSDD: index < test_indices is test), with
    its digit, its speaker and its samples (16-bit values to 1/32767), centred in the
    zero-padded clip. Seen failing with `<=` for the test rule (takes 0-2 in test), with the
    digit read from the index field, and with padding at the end instead of the centre."""
    truth = fsdd_folder(tmp_path / "fsdd")
    dm = FreeSpokenDigits(
        data_dir=str(tmp_path), folder="fsdd", length=1000, test_indices=2, val_fraction=0.25
    )
    dm.setup()
    assert dm.speaker_names == ("jackson", "theo")
    assert dm.modality.shape == (1, 1000) and dm.modality.rate == 8000
    assert dm.condition.kind == "class" and dm.condition.names[7] == "seven"
    sizes = {s: len(dm.dataset(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 9, "val": 3, "test": 12}
    for split in ("train", "val", "test"):
        x, y = clips_of(dm.dataset(split))
        spk = speakers_of(dm.dataset(split))
        assert x.shape[1:] == (1, 1000)
        for clip, digit, s in zip(x, y.tolist(), spk.tolist(), strict=True):
            # find the file by its tone: its samples sit centred in the clip
            name = dm.speaker_names[s]
            matches = []
            for i in range(4):
                want = truth.get((digit, name, i))
                n = len(want)
                start = (1000 - n) // 2
                if np.abs(clip[0, start : start + n].numpy() - want).max() < 1e-4:
                    matches.append(i)
                    assert (
                        clip[0, :start].abs().max() == 0 and clip[0, start + n :].abs().max() == 0
                    )
            assert len(matches) == 1, (split, digit, name)
            assert (matches[0] < 2) == (split == "test")


def test_formats_resampling_and_cropping(tmp_path):
    """The same tone written as 8-, 16-, 24- and 32-bit PCM and 32/64-bit float (scipy) reads
    back to the written values; a 16 kHz tone read at 8 kHz is the same tone at half the
    samples (amplitude and phase to 1%, polyphase filtering); a long clip is cropped around
    its centre. Seen failing with 24-bit samples read without sign extension and with
    resampling by taking every other sample of a tone above the new Nyquist rate (aliasing:
    the 5 kHz tone survived)."""
    rate = 8000
    x = tone(440, 400, rate, amp=0.6)
    forms = {
        "u8": (np.round(x * 128 + 128).clip(0, 255).astype(np.uint8), lambda a: (a - 128) / 128),
        "i16": (np.round(x * 32767).astype(np.int16), lambda a: a / 32768),
        "i32": (np.round(x * 2**31 * 0.99).astype(np.int32), lambda a: a / 2**31),
        "f32": (x.astype(np.float32), lambda a: a),
        "f64": (x.astype(np.float64), lambda a: a),
    }
    for name, (data, back) in forms.items():
        path = tmp_path / f"{name}.wav"
        wavfile.write(path, rate, data)
        got = read_wav(path).samples[0]
        assert np.abs(got - back(data.astype(np.float64))).max() < 1e-6, name
    # 24-bit: three bytes per sample, written by hand (scipy writes no 24-bit)
    v = np.round(x * (2**23 - 1)).astype(np.int64)
    raw = b"".join(int(s & 0xFFFFFF).to_bytes(3, "little") for s in v)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 3, 3, 24)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(raw))
        + raw
    )
    (tmp_path / "i24.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    got = read_wav(tmp_path / "i24.wav").samples[0]
    assert np.abs(got - v / 2**23).max() < 1e-6

    # resampling: 16 kHz -> 8 kHz keeps a 440 Hz tone and removes a 5 kHz one
    folder = tmp_path / "res"
    folder.mkdir()
    n = 16000
    write_pcm16(folder / "1_a_0.wav", tone(440, n, 16000, 0.5), 16000)
    write_pcm16(folder / "2_a_1.wav", tone(5000, n, 16000, 0.5), 16000)
    dm = FreeSpokenDigits(
        data_dir=str(tmp_path), folder="res", length=8000, test_indices=1, val_fraction=0.0
    )
    dm.setup()
    low = clips_of(dm.dataset("test"))[0][0]
    want = tone(440, 8000, 8000, 0.5)
    inner = slice(200, 7800)  # away from the filter's edges
    assert np.abs(low[0, inner].numpy() - want[inner]).max() < 0.01
    high = clips_of(dm.dataset("train"))[0][0, 0]
    assert high[inner].abs().max() < 0.02  # above 4 kHz: filtered out, not aliased to 3 kHz

    # cropping keeps the centre; `start` keeps the beginning
    assert np.array_equal(fix_length(np.arange(10.0), 4, "center"), [3, 4, 5, 6])
    assert np.array_equal(fix_length(np.arange(10.0), 4, "start"), [0, 1, 2, 3])
    assert np.array_equal(fix_length(np.arange(1.0, 3.0), 5, "center"), [0, 1, 2, 0, 0])


def test_sc09_layout_splits_by_its_lists(tmp_path):
    """Speech Commands' layout: the digit folders (other words ignored), the split of every
    file by validation_list.txt / testing_list.txt, the speaker from the name before
    `_nohash_`, 16 kHz files resampled to the configured 8 kHz. Seen failing with the lists
    read relative to the word folder (every file in training)."""
    root = tmp_path / "speech_commands_v0.02"
    val, test = [], []
    expected = {}
    for d, word in enumerate(WORDS):
        (root / word).mkdir(parents=True)
        for k, spk in enumerate(("0a2b400e", "bb05582b", "c1d39ce8")):
            name = f"{spk}_nohash_{k}.wav"
            write_pcm16(root / word / name, tone(300 + 30 * d, 16000, 16000, 0.3), 16000)
            split = ("train", "val", "test")[k]
            expected[(d, spk)] = split
            (val if split == "val" else test if split == "test" else []).append(f"{word}/{name}")
    (root / "left").mkdir()
    write_pcm16(root / "left" / "0a2b400e_nohash_0.wav", tone(100, 16000, 16000), 16000)
    (root / "validation_list.txt").write_text("\n".join(val + ["left/0a2b400e_nohash_0.wav"]))
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    dm = SpeechCommandsDigits(data_dir=str(tmp_path), sample_rate=8000, length=8000)
    dm.setup()
    assert dm.modality.shape == (1, 8000)
    for split in ("train", "val", "test"):
        x, y = clips_of(dm.dataset(split))
        spk = speakers_of(dm.dataset(split))
        assert len(x) == 10
        for digit, s in zip(y.tolist(), spk.tolist(), strict=True):
            assert expected[(digit, dm.speaker_names[s])] == split
        # one second at 16 kHz resampled to 8 kHz: the whole tone, 8000 samples
        assert float(x[0, 0, 100:7900].abs().max()) == pytest.approx(0.3, abs=0.01)


def bad_file_folder(root) -> dict[str, str]:
    """One good file and one of each kind of bad file; name -> a word its reason must hold."""
    root.mkdir(parents=True)
    write_pcm16(root / "0_ok_0.wav", tone(300, 500, 8000), 8000)
    write_pcm16(root / "0_ok_1.wav", tone(300, 500, 8000), 8000)
    (root / "1_text_0.wav").write_text("this is not a wave file\n")
    (root / "2_empty_0.wav").write_bytes(b"")
    write_pcm16(root / "3_stereo_0.wav", np.zeros(1000), 8000, channels=2)
    # a data chunk that claims far more bytes than the file holds
    good = (root / "0_ok_0.wav").read_bytes()
    at = good.index(b"data")
    (root / "4_truncated_0.wav").write_bytes(
        good[: at + 4] + struct.pack("<I", 2_000_000_000) + good[at + 8 : at + 108]
    )
    # zero samples
    write_pcm16(root / "5_nosamples_0.wav", np.zeros(0), 8000)
    # a sample rate of 0 Hz
    hdr = bytearray(good)
    fmt_at = good.index(b"fmt ") + 8
    hdr[fmt_at + 4 : fmt_at + 8] = struct.pack("<I", 0)
    (root / "6_rate_0.wav").write_bytes(bytes(hdr))
    return {
        "1_text_0.wav": "not a RIFF/WAVE",
        "2_empty_0.wav": "empty",
        "3_stereo_0.wav": "2 channels",
        "4_truncated_0.wav": "claims 2,000,000,000 bytes",
        "5_nosamples_0.wav": "no samples",
        "6_rate_0.wav": "sample rate of 0 Hz",
    }


def test_bad_files_are_named_together_before_training(tmp_path):
    """Every bad file of the folder in ONE GenlabError, each with what is wrong (not WAV,
    empty, stereo, a chunk larger than the file, no samples, 0 Hz), the good ones not named;
    an oversized file refused before reading; misnamed files named. Seen failing with the
    chunk-size check removed (the truncated file read as its 50 remaining samples, unnamed)
    and with the first bad file raising alone."""
    reasons = bad_file_folder(tmp_path / "bad")
    dm = FreeSpokenDigits(data_dir=str(tmp_path), folder="bad", length=600, test_indices=1)
    with pytest.raises(GenlabError) as err:
        dm.setup()
    msg = str(err.value)
    assert "6 of the 8 WAV files" in msg
    for name, why in reasons.items():
        line = next(ln for ln in msg.splitlines() if name in ln)
        assert why in line, (name, line)
    assert "0_ok_0.wav" not in msg
    # an oversized file is refused before it is read
    big = FreeSpokenDigits(data_dir=str(tmp_path), folder="bad", max_file_bytes=100)
    with pytest.raises(GenlabError, match="above the limit of 100 bytes"):
        big.setup()
    # misnamed WAV files in FSDD's layout are named too
    write_pcm16(tmp_path / "bad" / "hello.wav", np.zeros(10), 8000)
    with pytest.raises(GenlabError, match=r"hello\.wav"):
        FreeSpokenDigits(data_dir=str(tmp_path), folder="bad").setup()
    with pytest.raises(GenlabError, match="does not exist"):
        FreeSpokenDigits(data_dir=str(tmp_path), folder="nowhere").setup()


def test_downmix_averages_channels(tmp_path):
    """downmix=true: a stereo file with L = tone, R = -tone/2 reads as their mean."""
    root = tmp_path / "st"
    root.mkdir()
    left = tone(300, 400, 8000, 0.8)
    both = np.stack([left, -left / 2], axis=1).reshape(-1)
    back = write_pcm16(root / "0_a_0.wav", both, 8000, channels=2).reshape(-1, 2).mean(1)
    write_pcm16(root / "0_a_1.wav", left, 8000)
    dm = FreeSpokenDigits(
        data_dir=str(tmp_path),
        folder="st",
        length=400,
        test_indices=1,
        downmix=True,
        val_fraction=0.0,
    )
    dm.setup()
    x, _ = clips_of(dm.dataset("test"))
    assert np.abs(x[0, 0].numpy() - back).max() < 1e-4


# --- the synthesised set -----------------------------------------------------------------------


def test_synthesised_set_is_the_same_bytes_from_its_seed(tmp_path):
    """Two syntheses with one seed: the same files, byte for byte (each made by a fresh child
    process); another seed: other bytes; every file a 16-bit mono WAV of speech-like length
    at the asked rate. Seen failing with the synthesis run in this process instead of a
    child (libespeak-ng's state carries over: every file of the second set differed)."""
    pytest.importorskip("espeakng_loader")
    from genlab.data.espeak_synth import ensure_synthesized

    sets = [
        ensure_synthesized(tmp_path / name, speakers=2, takes=2, sample_rate=8000, seed=seed)
        for name, seed in (("a", 3), ("b", 3), ("c", 4))
    ]
    names = sorted(p.name for p in sets[0].iterdir())
    assert len(names) == 2 * 2 * 10 + 1  # and synthesis.json
    assert names == sorted(p.name for p in sets[1].iterdir())
    same = [(sets[0] / n).read_bytes() == (sets[1] / n).read_bytes() for n in names]
    other = [(sets[0] / n).read_bytes() == (sets[2] / n).read_bytes() for n in names]
    assert all(same)
    assert not any(o for n, o in zip(names, other, strict=True) if n.endswith(".wav"))
    for n in names:
        if n.endswith(".wav"):
            wav = read_wav(sets[0] / n)
            assert wav.rate == 8000 and wav.channels == 1
            assert 0.2 < wav.samples.shape[1] / 8000 < 1.5, n  # a spoken word
            assert 0.3 < np.abs(wav.samples).max() <= 1.0
    # a folder that holds another set is not overwritten
    with pytest.raises(GenlabError, match="does not hold the synthesised digits"):
        ensure_synthesized(sets[0], speakers=3, takes=2, sample_rate=8000, seed=3)


def test_missing_library_is_one_clear_paragraph(tmp_path, monkeypatch):
    """Without espeakng-loader (its import blocked), the datamodule stops with genlab's
    paragraph naming the package, the platforms it has wheels for and the recorded
    alternatives, before any folder is made."""
    from genlab.data.spoken_digits import SynthesizedDigits

    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    dm = SynthesizedDigits(data_dir=str(tmp_path), speakers=1, takes=2)
    with pytest.raises(GenlabError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert msg.startswith("the package espeakng-loader is not installed")
    assert "Linux x86-64" in msg and "data=fsdd" in msg and "data=sc09" in msg
    assert not any(tmp_path.iterdir())


def test_items_are_waveforms_in_range(tmp_path):
    """Batches are (x, y): float (B, 1, L) in [-1, 1], int64 digits, from the resumable
    loader of the base class."""
    fsdd_folder(tmp_path / "f", takes=3)
    dm = FreeSpokenDigits(
        data_dir=str(tmp_path), folder="f", length=512, test_indices=1, batch_size=4
    )
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 512) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.abs().max()) <= 1.0
