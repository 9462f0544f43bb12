"""Spoken digits as waveforms: the Free Spoken Digit Dataset's layout, Speech Commands' ten
digit words (SC09), and an offline set synthesised with eSpeak NG in FSDD's layout.

Every batch is (x, y): x float (B, 1, length) in [-1, 1] at `sample_rate` Hz (the waveform
modality), y the digit (B,) int64 (the class condition, names "zero".."nine"). Each split's
dataset also holds the speaker of every clip (`dataset.speakers`, indices into the
datamodule's `speaker_names`).

Files are read as untrusted data (genlab.data.wav_files): bounded sizes, headers checked
against the file, PCM/float only. Every clip is resampled to `sample_rate` (polyphase), mixed
to mono only when `downmix=true` (otherwise a multi-channel file is an error), and cropped
or zero-padded to `length` samples (`align`: keep the centre or the start). All clips are read
when the datamodule is set up, before training: a bad file is named then, with every other
bad file, in one message. Clips are held in memory as 16-bit integers.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from genlab.data.datamodules import Indexed, SampleDataModule
from genlab.data.espeak_synth import WORDS, ensure_synthesized
from genlab.data.modality import Condition, Modality, waveform
from genlab.data.untrusted_files import check_links_option, list_files
from genlab.data.wav_files import DEFAULT_MAX_WAV_BYTES, WavRefused, read_wav, resample
from genlab.utils.errors import GenlabError

ALIGN = ("center", "start")
NORMALIZE = (None, "peak")
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$", re.IGNORECASE)
LIST_FILE_MAX_BYTES = 16 * 1024 * 1024
SHOWN = 8


class Clips(Dataset):
    """Fixed-length clips held as int16 (N, L) with digit labels and speaker indices; items
    are (float (1, L) in [-1, 1], digit)."""

    def __init__(self, clips: torch.Tensor, labels: torch.Tensor, speakers: torch.Tensor):
        assert clips.dtype == torch.int16 and clips.ndim == 2, clips.shape
        self.clips, self.labels, self.speakers = clips, labels, speakers

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.clips[i].float().div_(32767.0)[None], self.labels[i]


def fix_length(x: np.ndarray, length: int, align: str) -> np.ndarray:
    """Crop or zero-pad (L,) to `length`: around the centre (`center`) or from the start."""
    n = len(x)
    if n >= length:
        start = (n - length) // 2 if align == "center" else 0
        return x[start : start + length]
    before = (length - n) // 2 if align == "center" else 0
    return np.pad(x, (before, length - n - before))


def show_problems(problems: list[str]) -> str:
    shown = "\n  ".join(problems[:SHOWN])
    more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return f"\n  {shown}{more}\n"


class SpokenDigits(SampleDataModule):
    """The shared part: options, reading and fixing clips, modality and condition.
    Subclasses find the files and split them (`find_files`)."""

    name = "spoken_digits"

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        length: int = 4096,
        align: str = "center",
        normalize: str | None = None,
        downmix: bool = False,
        max_file_bytes: int = DEFAULT_MAX_WAV_BYTES,
        outside_links: str = "error",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if align not in ALIGN or normalize not in NORMALIZE:
            raise GenlabError(
                f"data.align={align!r} / data.normalize={normalize!r}: align is one of "
                f"{', '.join(ALIGN)}, normalize null or peak."
            )
        if not 100 <= sample_rate <= 192_000 or length < 16:
            raise GenlabError(
                f"data.sample_rate={sample_rate} / data.length={length}: the rate must be "
                "100 to 192,000 Hz and clips at least 16 samples long."
            )
        if max_file_bytes < 44:
            raise GenlabError(f"data.max_file_bytes={max_file_bytes} is below a WAV header.")
        self.sample_rate, self.length, self.align = int(sample_rate), int(length), align
        self.normalize, self.downmix = normalize, downmix
        self.max_file_bytes = int(max_file_bytes)
        self.outside_links = check_links_option(outside_links, "data.outside_links")
        self.speaker_names: tuple[str, ...] = ()
        self.num_classes = len(WORDS)

    @property
    def modality(self) -> Modality:
        return waveform(self.length, self.sample_rate)

    @property
    def condition(self) -> Condition:
        return Condition("class", (), len(WORDS), names=WORDS)

    # --- reading ------------------------------------------------------------------------------
    def read_clip(self, path: str) -> np.ndarray:
        """One file -> float32 (length,) at sample_rate; WavRefused saying what is wrong."""
        wav = read_wav(path, max_bytes=self.max_file_bytes)
        x = wav.samples
        if wav.channels != 1:
            if not self.downmix:
                raise WavRefused(
                    f"{wav.channels} channels: spoken digits are mono; set data.downmix=true "
                    "to average the channels, or convert the file"
                )
            x = x.mean(axis=0, keepdims=True)
        x = resample(x[0], wav.rate, self.sample_rate)
        x = fix_length(x, self.length, self.align)
        if self.normalize == "peak":
            peak = float(np.abs(x).max())
            if peak > 0:
                x = x * (0.99 / peak)
        return np.clip(x, -1.0, 1.0)

    def read_clips(
        self, files: list[tuple[str, int, str]], root: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(path, digit, speaker) triples -> int16 clips (N, length), digits (N,), speaker
        indices (N,) into `speaker_names` (which this sets); every unreadable file in one
        GenlabError."""
        speakers = sorted({s for _, _, s in files})
        index = {s: i for i, s in enumerate(speakers)}
        self.speaker_names = tuple(speakers)
        clips = np.zeros((len(files), self.length), dtype=np.int16)
        problems = []
        for i, (path, _, _) in enumerate(files):
            try:
                clips[i] = np.round(self.read_clip(path) * 32767.0).astype(np.int16)
            except (WavRefused, OSError, ValueError, MemoryError) as exc:
                problems.append(f"{path}: {exc}")
        if problems:
            raise GenlabError(
                f"{len(problems)} of the {len(files):,} WAV files of data={self.name} under "
                f"{root} cannot be read:{show_problems(problems)}Fix or remove these files "
                "(genlab reads PCM or float WAV files of one channel)."
            )
        digits = torch.tensor([d for _, d, _ in files], dtype=torch.long)
        spk = torch.tensor([index[s] for _, _, s in files], dtype=torch.long)
        return torch.from_numpy(clips), digits, spk

    def root_folder(self, folder: str, how: str) -> str:
        """data_dir/folder as a real path, or a GenlabError saying how to get the data."""
        root = os.path.realpath(os.path.join(self.data_dir, folder))
        if not os.path.isdir(root):
            raise GenlabError(f"data={self.name}: the folder {root} does not exist. {how}")
        return root

    def split(self, clips: Clips, test: torch.Tensor, val: torch.Tensor | None) -> dict:
        """{'train', 'val', 'test'}: test and (if given) val by mask; otherwise val is
        `val_fraction` of the rest, permuted by split_seed."""
        idx = torch.arange(len(clips))
        if val is None:
            rest, val_part = self.split_off(Indexed(clips, idx[~test]), self.val_fraction)
            return {"train": rest, "val": val_part, "test": Indexed(clips, idx[test])}
        train = ~test & ~val
        return {
            "train": Indexed(clips, idx[train]),
            "val": Indexed(clips, idx[val]),
            "test": Indexed(clips, idx[test]),
        }


class FreeSpokenDigits(SpokenDigits):
    """The Free Spoken Digit Dataset's layout: WAV files `{digit}_{speaker}_{index}.wav` in one
    folder (data_dir/`folder`; FSDD's own are 8 kHz mono). The test split is what FSDD's
    README recommends, the recordings with index 0 to `test_indices` - 1 (0-4: 10% of its 50
    takes); val is `val_fraction` of the others (by split_seed)."""

    name = "fsdd"
    how = (
        "Get the Free Spoken Digit Dataset (git clone "
        "https://github.com/Jakobovski/free-spoken-digit-dataset into data_dir) or set "
        "data.folder to the folder of its recordings; data=spoken_digits makes a similar set "
        "offline."
    )

    def __init__(
        self,
        *,
        folder: str = "free-spoken-digit-dataset/recordings",
        test_indices: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if test_indices < 1:
            raise GenlabError(f"data.test_indices={test_indices} must be at least 1.")
        self.folder, self.test_indices = folder, test_indices

    def find_files(self, root: str) -> tuple[list[tuple[str, int, str]], list[int]]:
        """(path, digit, speaker) of every WAV file and its take index; misnamed files are
        one GenlabError."""
        paths = list_files(
            root,
            (".wav",),
            root=root,
            outside_links=self.outside_links,
            option="data.outside_links",
        )
        files, takes, bad = [], [], []
        for p in paths:
            m = FSDD_NAME.match(os.path.basename(p))
            if m is None:
                bad.append(p)
                continue
            files.append((p, int(m.group(1)), m.group(2)))
            takes.append(int(m.group(3)))
        if bad:
            raise GenlabError(
                f"data={self.name}: {len(bad)} WAV files under {root} are not named "
                f"{{digit}}_{{speaker}}_{{index}}.wav (FSDD's layout):{show_problems(bad)}"
                "Rename them or move them out of the folder."
            )
        if not files:
            raise GenlabError(f"data={self.name}: no WAV files in {root}. {self.how}")
        return files, takes

    def load_splits(self) -> dict[str, Dataset]:
        root = self.root_folder(self.folder, self.how)
        files, takes = self.find_files(root)
        clips = Clips(*self.read_clips(files, root))
        test = torch.tensor(takes) < self.test_indices
        if not bool(test.any()) or bool(test.all()):
            raise GenlabError(
                f"data={self.name}: with data.test_indices={self.test_indices} the files under "
                f"{root} (take indices {min(takes)}..{max(takes)}) leave the "
                f"{'test' if not bool(test.any()) else 'training'} split empty: choose "
                "data.test_indices between them."
            )
        return self.split(clips, test, None)


class SynthesizedDigits(FreeSpokenDigits):
    """Spoken digits synthesised with eSpeak NG (genlab.data.espeak_synth) once, cached in
    FSDD's layout under data_dir/`folder` (by default a name made of the parameters), then
    read as FSDD is: `speakers` speakers x `takes` takes of each digit, at `sample_rate`.
    The same `synth_seed` gives the same files. Needs the espeakng-loader package."""

    name = "spoken_digits"

    def __init__(
        self,
        *,
        speakers: int = 10,
        takes: int = 20,
        synth_seed: int = 0,
        folder: str | None = None,
        test_indices: int | None = None,
        **kwargs: Any,
    ) -> None:
        # null: a tenth of the takes (FSDD's share), at least one
        test_indices = test_indices or max(1, takes // 10)
        super().__init__(folder=folder or "", test_indices=test_indices, **kwargs)
        if not 1 <= speakers <= 200 or not 2 <= takes <= 1000:
            raise GenlabError(
                f"data.speakers={speakers} / data.takes={takes}: 1 to 200 speakers and 2 to "
                "1,000 takes of each digit."
            )
        self.speakers, self.takes, self.synth_seed = speakers, takes, synth_seed
        self.folder = folder or (
            f"spoken_digits_espeak/{self.sample_rate}hz_{speakers}spk_{takes}takes_"
            f"seed{synth_seed}"
        )

    def synthesize(self) -> str:
        path = os.path.join(self.data_dir, self.folder)
        ensure_synthesized(
            path,
            speakers=self.speakers,
            takes=self.takes,
            sample_rate=self.sample_rate,
            seed=self.synth_seed,
        )
        return path

    def prepare_data(self) -> None:
        self.synthesize()

    def load_splits(self) -> dict[str, Dataset]:
        self.synthesize()  # made by prepare_data already, unless setup is called alone
        return super().load_splits()


class SpeechCommandsDigits(SpokenDigits):
    """Speech Commands' ten digit words (SC09): folders `zero` .. `nine` of one-second 16 kHz
    WAV files under data_dir/`folder`, split by the dataset's `validation_list.txt` and
    `testing_list.txt` (lines `word/file.wav`; everything else is training). The speaker is the
    file name's part before `_nohash_`. Other folders (other words, _background_noise_) are
    not read."""

    name = "sc09"
    how = (
        "Get Speech Commands v0.02 (speech_commands_v0.02.tar.gz from TensorFlow's datasets; "
        "extract it into data_dir/speech_commands_v0.02) or set data.folder to its folder."
    )

    def __init__(self, *, folder: str = "speech_commands_v0.02", **kwargs: Any) -> None:
        kwargs.setdefault("sample_rate", 16000)
        kwargs.setdefault("length", 16000)
        super().__init__(**kwargs)
        self.folder = folder

    def read_list(self, path: str) -> set[str]:
        """The `word/file.wav` lines of a split list (bounded; a missing list is an error)."""
        if not os.path.isfile(path):
            raise GenlabError(
                f"data={self.name}: {path} is missing; Speech Commands splits by its "
                f"validation_list.txt and testing_list.txt. {self.how}"
            )
        size = os.path.getsize(path)
        if size > LIST_FILE_MAX_BYTES:
            raise GenlabError(
                f"{path} has {size:,} bytes, more than a split list of Speech Commands "
                f"({LIST_FILE_MAX_BYTES:,} at most): not read. Replace it with the dataset's."
            )
        with open(path, "rb") as f:
            text = f.read(LIST_FILE_MAX_BYTES).decode("utf-8", errors="replace")
        return {line.strip().replace("\\", "/") for line in text.splitlines() if line.strip()}

    def load_splits(self) -> dict[str, Dataset]:
        root = self.root_folder(self.folder, self.how)
        val_list = self.read_list(os.path.join(root, "validation_list.txt"))
        test_list = self.read_list(os.path.join(root, "testing_list.txt"))
        files, names = [], []
        missing = [w for w in WORDS if not os.path.isdir(os.path.join(root, w))]
        if missing:
            raise GenlabError(
                f"data={self.name}: {root} has no folder {', '.join(missing)} (SC09 needs "
                f"zero .. nine). {self.how}"
            )
        for digit, word in enumerate(WORDS):
            folder = os.path.join(root, word)
            for p in list_files(
                folder,
                (".wav",),
                root=root,
                outside_links=self.outside_links,
                option="data.outside_links",
            ):
                name = os.path.basename(p)
                files.append((p, digit, name.split("_nohash_")[0]))
                names.append(f"{word}/{name}")
        if not files:
            raise GenlabError(f"data={self.name}: no WAV files under {root}. {self.how}")
        clips = Clips(*self.read_clips(files, root))
        test = torch.tensor([n in test_list for n in names])
        val = torch.tensor([n in val_list and n not in test_list for n in names])
        return self.split(clips, test, val)


def speakers_of(data: Dataset) -> torch.Tensor:
    """The speaker index of every item of a split (an Indexed view of Clips, or Clips)."""
    if isinstance(data, Clips):
        return data.speakers
    if isinstance(data, Indexed):
        return speakers_of(data.base)[torch.as_tensor(data.indices, dtype=torch.long)]
    raise TypeError(f"no speakers in {type(data).__name__}")


def clips_of(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(float clips (N, 1, L) in [-1, 1], digits (N,)) of a split, without a DataLoader."""
    if isinstance(data, Clips):
        return data.clips.float().div_(32767.0)[:, None], data.labels
    if isinstance(data, Indexed):
        x, y = clips_of(data.base)
        idx = torch.as_tensor(data.indices, dtype=torch.long)
        return x[idx], y[idx]
    raise TypeError(f"no clips in {type(data).__name__}")
