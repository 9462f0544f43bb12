"""Spoken digits made offline with eSpeak NG, cached in the Free Spoken Digit Dataset's layout
(`{digit}_{speaker}_{index}.wav`, 16-bit mono) so the same datamodule reads them and FSDD.

The `espeakng-loader` package (PyPI) ships libespeak-ng and its voice data; this module calls
the library's C API through ctypes (espeak_Initialize in synchronous mode, a synth callback
that collects the 22,050 Hz samples, espeak_SetVoiceByName with a language and a voice
variant, espeak_SetParameter for rate and pitch), so nothing is installed on the system.
Speakers differ by accent, voice variant, base pitch, pitch range and speaking rate; each
take of a word jitters pitch and rate, scales the gain, pads some silence in front and adds
a little white noise (a fixed SNR range). Everything is drawn from numpy's PCG64 seeded by
`seed`.

libespeak-ng keeps state from one utterance to the next inside a process (seen here: the same
word spoken twice in one process gives different bytes, a fresh process the same bytes), so
a set is always synthesised by a fresh child process (this file run as a script),
which makes it a function of its parameters: the same seed gives the same files, byte for
byte, on the same platform. The folder is written under a temporary name and renamed when
complete, with `synthesis.json` recording the parameters; a folder whose record matches is
reused.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genlab.utils.errors import GenlabError

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# the platforms espeakng-loader 0.2.4 publishes wheels for (no Linux arm64 wheel, no sdist)
WHEEL_PLATFORMS = (
    "Linux x86-64 (manylinux2014, glibc 2.17+), macOS x86-64 (10.12+) and arm64 (11+), "
    "Windows x86-64 and arm64"
)
REQUIREMENT = "espeakng-loader>=0.2.4"
ESPEAK_RATE = 22050
RECORD = "synthesis.json"
FORMAT_VERSION = 1
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "Andy", "Annie", "adam", "aunty", "benjamin", "caleb",
    "david", "ed", "edward", "grandma", "grandpa", "ian", "john", "linda", "max", "norbert",
    "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "zac",
)  # fmt: skip
# the child process loads this file by its path: `-m genlab.data.espeak_synth` would import
# genlab.data's package (Lightning, torchvision: seconds) for nothing
CHILD = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('genlab_espeak_child', sys.argv[1])\n"
    "module = sys.modules['genlab_espeak_child'] = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module.main(sys.argv[2:])\n"
)
AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE_PARAM, ESPEAK_PITCH_PARAM, ESPEAK_RANGE_PARAM = 1, 3, 4


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: eSpeak voice `language+variant`, pitch 0-99, pitch range 0-99,
    rate in words per minute."""

    voice: str
    pitch: int
    pitch_range: int
    rate: int


def make_speakers(n: int, seed: int) -> list[Speaker]:
    """n speakers drawn from `seed`: distinct (accent, variant) pairs, pitch 25-75, pitch range
    30-80, rate 130-200 words per minute."""
    rng = np.random.Generator(np.random.PCG64([seed, 1]))
    pairs = [(a, v) for a in ACCENTS for v in VARIANTS]
    order = rng.permutation(len(pairs))[:n]
    out = []
    for i in order:
        accent, variant = pairs[int(i)]
        out.append(
            Speaker(
                voice=f"{accent}+{variant}",
                pitch=int(rng.integers(25, 76)),
                pitch_range=int(rng.integers(30, 81)),
                rate=int(rng.integers(130, 201)),
            )
        )
    return out


def _load_library() -> tuple[ctypes.CDLL, str]:
    """libespeak-ng and its data folder from the espeakng-loader package, or a GenlabError."""
    advice = (
        f"The offline spoken digits are synthesised with eSpeak NG from the `espeakng-loader` "
        f"package, whose wheels exist for {WHEEL_PLATFORMS}; this machine is "
        f"{platform.system()} {platform.machine()}. Install it (pip install '{REQUIREMENT}'), "
        "or use recorded digits instead: data=fsdd (the Free Spoken Digit Dataset) or "
        "data=sc09 (Speech Commands' digits)."
    )
    try:
        import espeakng_loader
    except ImportError:
        raise GenlabError(f"the package espeakng-loader is not installed. {advice}") from None
    path = espeakng_loader.get_library_path()
    try:
        lib = ctypes.CDLL(path)
        data = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as exc:
        raise GenlabError(
            f"libespeak-ng could not be loaded from {path} ({exc}). {advice}"
        ) from None
    return lib, data


class ESpeak:
    """The eSpeak NG library in synchronous mode: `say(word, speaker)` -> int16 samples at
    22,050 Hz. One per process (the library is a global state)."""

    CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def __init__(self, rand_seed: int = 0) -> None:
        lib, data = _load_library()
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
        if rate != ESPEAK_RATE:
            raise GenlabError(
                f"eSpeak NG did not start (espeak_Initialize returned {rate}) with its data "
                f"folder {data}: reinstall espeakng-loader (pip install --force-reinstall "
                f"'{REQUIREMENT}')."
            )
        if hasattr(lib, "espeak_ng_SetRandSeed"):  # eSpeak NG 1.52+
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_ng_SetRandSeed(rand_seed)
        self.lib = lib
        self._chunks: list[np.ndarray] = []
        self._callback = self.CALLBACK(self._collect)  # kept alive as long as the library uses it
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, n: int, events: Any) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # go on

    def say(self, text: str, *, voice: str, pitch: int, pitch_range: int, rate: int) -> np.ndarray:
        """int16 samples (L,) of `text` spoken by `voice` at 22,050 Hz."""
        lib = self.lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise GenlabError(f"eSpeak NG has no voice {voice!r} in its data folder.")
        lib.espeak_SetParameter(ESPEAK_RATE_PARAM, int(rate), 0)
        lib.espeak_SetParameter(ESPEAK_PITCH_PARAM, int(pitch), 0)
        lib.espeak_SetParameter(ESPEAK_RANGE_PARAM, int(pitch_range), 0)
        self._chunks = []
        raw = text.encode()
        err = lib.espeak_Synth(
            raw, len(raw) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None
        )
        if err != 0:
            raise GenlabError(f"eSpeak NG failed to speak {text!r} with {voice} (error {err}).")
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)


def synthesize(
    out_dir: str | Path,
    *,
    speakers: int,
    takes: int,
    sample_rate: int,
    seed: int,
    snr_db: tuple[float, float] = (25.0, 40.0),
) -> list[Path]:
    """Speak every digit `takes` times with each of `speakers` speakers into out_dir as
    `{digit}_{speaker}_{take}.wav` (16-bit mono at `sample_rate`). Call it in a fresh process
    (see the module docstring); `ensure_synthesized` does."""
    from scipy.signal import resample_poly

    g = math.gcd(ESPEAK_RATE, int(sample_rate))
    up, down = int(sample_rate) // g, ESPEAK_RATE // g
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = ESpeak(rand_seed=seed)
    rng = np.random.Generator(np.random.PCG64([seed, 2]))
    written = []
    for s, spk in enumerate(make_speakers(speakers, seed)):
        name = f"s{s:02d}"
        for take in range(takes):
            for digit, word in enumerate(WORDS):
                pitch = int(np.clip(spk.pitch + rng.integers(-8, 9), 0, 99))
                rate = int(np.clip(spk.rate * rng.uniform(0.88, 1.12), 80, 450))
                raw = engine.say(
                    word, voice=spk.voice, pitch=pitch, pitch_range=spk.pitch_range, rate=rate
                )
                x = resample_poly(raw.astype(np.float64) / 32768.0, up, down)
                x = np.concatenate([np.zeros(int(rng.integers(0, sample_rate // 20))), x])
                peak = float(np.abs(x).max()) or 1.0
                x = x * (rng.uniform(0.4, 0.95) / peak)
                power = float(np.mean(x**2)) or 1e-8
                snr = rng.uniform(*snr_db)
                x = x + rng.normal(0.0, np.sqrt(power / 10 ** (snr / 10)), size=x.shape)
                path = out_dir / f"{digit}_{name}_{take}.wav"
                write_pcm16(path, x, sample_rate)
                written.append(path)
    return written


def write_pcm16(path: Path, x: np.ndarray, rate: int) -> None:
    """Mono samples in [-1, 1] (clipped) as a 16-bit PCM WAV file."""
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())


def ensure_synthesized(
    folder: str | Path,
    *,
    speakers: int,
    takes: int,
    sample_rate: int,
    seed: int,
    timeout_s: float = 1800.0,
) -> Path:
    """The synthesised set in `folder`, made by a fresh child process unless `folder` already
    holds a complete set with the same parameters (its synthesis.json)."""
    folder = Path(folder)
    params = {
        "format": FORMAT_VERSION,
        "speakers": int(speakers),
        "takes": int(takes),
        "sample_rate": int(sample_rate),
        "seed": int(seed),
    }
    if _matches(folder, params):
        return folder
    if folder.exists():
        raise GenlabError(
            f"{folder} exists but does not hold the synthesised digits asked for "
            f"({json.dumps(params)}; its {RECORD} differs or is missing): remove the folder "
            "or choose another data.folder."
        )
    _load_library()  # a clear message here rather than from the child
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide the data from other users
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, __file__, str(tmp), json.dumps(params)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise GenlabError(
                f"synthesising the spoken digits into {folder} failed (exit "
                f"{proc.returncode}): {' / '.join(tail)}"
            )
        (tmp / RECORD).write_text(json.dumps(params, indent=1) + "\n")
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _matches(folder: Path, params: dict[str, int]) -> bool:
    record = folder / RECORD
    if not record.is_file() or record.stat().st_size > 4096:
        return False
    try:
        stored = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    return stored == params


def main(argv: list[str] | None = None) -> None:
    """The child process: `main([OUT_DIR, PARAMS_JSON])` synthesises the set into OUT_DIR."""
    out_dir, params = (argv or sys.argv[1:])[:2]
    p = json.loads(params)
    synthesize(
        out_dir,
        speakers=p["speakers"],
        takes=p["takes"],
        sample_rate=p["sample_rate"],
        seed=p["seed"],
    )


if __name__ == "__main__":
    main()
