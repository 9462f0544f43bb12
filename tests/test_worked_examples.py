"""The worked examples of docs/architecture.md#adding-a-model-family beyond images: a waveform
family and a text-conditioned image family, each defined here and nowhere else (its data, its
model, its configs in a config directory of its own), trained by `genlab.train`, drawn by the
default callbacks and sampled by `genlab.sample` -- touching no callback, evaluation or CLI
file. The waveform family's grid is spectrograms with a WAV per sample; the text family's
samples carry their captions."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, run_dirs
from torch import nn
from torch.utils.data import TensorDataset

from genlab.data.datamodules import SampleDataModule
from genlab.data.modality import Condition, Modality, waveform
from genlab.models.genlab_module import StepModule

TESTS = Path(__file__).resolve().parent
ENV = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
QUICK = [
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "test=false",
    "logger=csv",
    "extras.print_config=false",
    "~callbacks.rich_progress_bar",
    "callbacks.sample_grid.n=6",
    "callbacks.sample_grid.n_per_row=3",
]


# --- a waveform family --------------------------------------------------------------------------
class Tones(SampleDataModule):
    """Sine tones of three pitches (the class) at random phases: 8 kHz, 256 samples."""

    name = "tones"
    pitches = (250.0, 500.0, 1000.0)

    def __init__(self, *, n: int = 96, rate: int = 8000, length: int = 256, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n, self.rate, self.length = n, rate, length

    @property
    def modality(self) -> Modality:
        return waveform(self.length, self.rate)

    @property
    def condition(self) -> Condition:
        return Condition("class", (), 3, names=tuple(f"{p:g} Hz" for p in self.pitches))

    def load_splits(self):
        gen = torch.Generator().manual_seed(0)
        y = torch.arange(self.n) % 3
        phase = torch.rand(self.n, 1, generator=gen) * 2 * torch.pi
        t = torch.arange(self.length) / self.rate
        freq = torch.tensor(self.pitches)[y][:, None]
        x = 0.5 * torch.sin(2 * torch.pi * freq * t + phase)[:, None]  # (n, 1, length)
        data = TensorDataset(x, y)
        return {"train": data, "val": data, "test": data}


class ToneModel(StepModule):
    """A learned waveform per class, with a little noise when sampled (CanSample)."""

    num_classes = 3

    def __init__(self, *, length: int, optimizer, monitor: str, monitor_mode: str) -> None:
        super().__init__()
        self.templates = nn.Parameter(torch.zeros(3, 1, length))
        self.optimizer_factory = optimizer
        self.monitor, self.monitor_mode = monitor, monitor_mode

    def sample(self, n, *, generator=None, temperature=1.0, y=None):
        y = self.default_labels(n) if y is None else y.to(self.device)
        noise = torch.randn(n, *self.templates.shape[1:], generator=generator, device=self.device)
        return (self.templates[y] + 0.01 * temperature * noise).clamp(-1, 1)

    def step(self, batch, stage):
        x, y = batch
        loss = F.mse_loss(self.templates[y], x)
        if self.logs_now(stage):
            self.log_scalars(stage, {"loss": loss}, batch_size=len(x))
        return loss


# --- a text-conditioned image family ------------------------------------------------------------
class CaptionModel(StepModule):
    """Caption tokens -> an image: the mean embedding of the caption's words, decoded linearly
    (CanSample given captions, CanGenerate)."""

    def __init__(
        self, *, vocab_size: int, image_size: int, optimizer, monitor: str, monitor_mode: str
    ) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, 32, mode="mean", padding_idx=0)
        self.decode_net = nn.Linear(32, image_size * image_size)
        self.side = image_size
        self.optimizer_factory = optimizer
        self.monitor, self.monitor_mode = monitor, monitor_mode

    def generate(self, y, *, generator=None, samples=1):
        logits = self.decode_net(self.embed(y.to(self.device)))
        return torch.sigmoid(logits).view(-1, 1, self.side, self.side)

    def sample(self, n, *, generator=None, temperature=1.0, y=None):
        if y is None:
            from genlab.utils.errors import GenlabError

            raise GenlabError("this model draws images of captions: give text=... (or y).")
        return self.generate(y)

    def step(self, batch, stage):
        x, y = batch
        loss = F.binary_cross_entropy(self.generate(y), x)
        if self.logs_now(stage):
            self.log_scalars(stage, {"loss": loss}, batch_size=len(x))
        return loss


def own_configs(root: Path) -> Path:
    """The families' configs, in a config directory of the user's own."""
    conf = root / "my_conf"
    (conf / "model").mkdir(parents=True)
    (conf / "data").mkdir()
    (conf / "data" / "tones.yaml").write_text(
        "_target_: test_worked_examples.Tones\nbatch_size: 16\n"
    )
    (conf / "model" / "tones.yaml").write_text(
        "defaults:\n  - override /data@_global_.data: tones\n  - _self_\n"
        "_target_: test_worked_examples.ToneModel\nlength: 256\n"
        "optimizer: {_target_: torch.optim.Adam, _partial_: true, lr: 0.05}\n"
        "monitor: val/loss\nmonitor_mode: min\n"
    )
    (conf / "model" / "captions.yaml").write_text(
        "defaults:\n  - override /data@_global_.data: captioned_digits\n  - _self_\n"
        "_target_: test_worked_examples.CaptionModel\nvocab_size: 128\nimage_size: 32\n"
        "optimizer: {_target_: torch.optim.Adam, _partial_: true, lr: 0.01}\n"
        "monitor: val/loss\nmonitor_mode: min\n"
    )
    return conf


@pytest.mark.slow
def test_a_waveform_family_in_its_own_files(tmp_path):
    conf = own_configs(tmp_path)
    run_cli(f"hydra.searchpath=[file://{conf}]", "model=tones", *QUICK, cwd=tmp_path, env=ENV)
    (run,) = run_dirs(tmp_path)
    images = run / "images"
    assert (images / "samples_e0000.png").is_file()  # the spectrograms
    wavs = sorted(images.glob("samples_e0000_*.wav"))
    assert len(wavs) == 6
    with wave.open(str(wavs[0])) as w:
        assert (w.getframerate(), w.getnframes(), w.getnchannels()) == (8000, 256, 1)
    proc = run_cli(
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        "trusted_targets=[test_worked_examples.*]",
        f"hydra.searchpath=[file://{conf}]",
        "classes=[2]",
        "n_per_row=2",
        "device=cpu",
        cwd=tmp_path,
        module="genlab.sample",
        env=ENV,
    )
    (out,) = run.glob("samples/*/")
    assert len(list(out.glob("samples_*.wav"))) == 2, proc.stdout
    assert (out / "samples.png").is_file()


@pytest.mark.slow
def test_a_text_conditioned_image_family_in_its_own_files(tmp_path):
    conf = own_configs(tmp_path)
    small = [
        "data.image_size=32",
        "data.n_train=200",
        "data.n_val=40",
        "data.n_test=40",
        "data.n_heldout=20",
        "data.batch_size=16",
    ]
    run_cli(
        f"hydra.searchpath=[file://{conf}]",
        "model=captions",
        *QUICK,
        *small,
        cwd=tmp_path,
        env=ENV,
    )
    (run,) = run_dirs(tmp_path)
    table = (run / "images" / "samples_e0000.md").read_text()  # each sample's caption
    assert table.count("| ") >= 6 * 3 and "digit" in table
    caption = "the digit 3 is at the top left"
    run_cli(
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        "trusted_targets=[test_worked_examples.*]",
        f"hydra.searchpath=[file://{conf}]",
        f"text='{caption}'",
        "n_per_row=2",
        "device=cpu",
        cwd=tmp_path,
        module="genlab.sample",
        env=ENV,
    )
    (out,) = run.glob("samples/*/")
    assert caption in (out / "samples.md").read_text()
    assert (out / "samples.png").is_file()
