"""WaveGAN (genlab.nets.wavegan, genlab.models.wavegan_model) and the audio families' tools:
phase shuffle against its closed form, G's shapes and range, D frozen in the G step of this
family, the SC09 recipes composed and built on files in SC09's layout, and `genlab.sample
digit=7 n=8` writing WAV files for both audio families through the real CLI. (Exact resume
and the host-sync check: TestWaveGAN in test_family_contracts.py.) Broken variants each test
was seen failing on are named in its docstring."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import TINY_WAVENET, make_cfg, run_cli, short_trainer
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_audio_data import WORDS, tone, write_pcm16
from test_audio_training import tones_as_fsdd

from genlab.data.spoken_digits import clips_of
from genlab.data.wav_files import read_wav
from genlab.models.wavegan_model import WaveGAN
from genlab.nets.wavegan import (
    WaveGANDiscriminator,
    WaveGANGenerator,
    phase_shuffle,
    wavegan_layers,
)
from genlab.sample import one_class
from genlab.train import train
from genlab.utils.checkpoint import load_model
from genlab.utils.errors import GenlabError


def reflect(j: int, length: int) -> int:
    """The index x[j] reads under reflect padding (x[-j] = x[j], x[l-1+j] = x[l-1-j])."""
    if j < 0:
        return -j
    if j > length - 1:
        return 2 * (length - 1) - j
    return j


def test_phase_shuffle_shifts_each_clip_within_its_radius_reflected():
    """Closed form: clip i of the output is clip i of the input shifted by one k_i in
    [-n, n] (the same k for all its channels), out[t] = x[reflect(t - k_i)]; over 400 clips
    every shift in [-n, n] occurs and none outside; the same generator seed gives the same
    shifts. Seen failing with the shifts drawn from [-n, n+1] (a k of n+1 matches no allowed
    shift) and with replicate padding in place of reflection (the ends do not match)."""
    n, length = 3, 11
    x = torch.randn(400, 2, length, generator=torch.Generator().manual_seed(0))
    out = phase_shuffle(x, n, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert torch.equal(out, phase_shuffle(x, n, torch.Generator().manual_seed(1)))
    seen = []
    for i in range(len(x)):
        matches = [
            k
            for k in range(-n - 2, n + 3)
            if torch.equal(out[i], x[i][:, [reflect(t - k, length) for t in range(length)]])
        ]
        assert len(matches) == 1 and -n <= matches[0] <= n, (i, matches)
        seen.append(matches[0])
    assert set(seen) == set(range(-n, n + 1))
    assert torch.equal(phase_shuffle(x, 0), x)  # radius 0: off


def test_generator_shapes_range_and_the_lengths_it_makes():
    """G maps z (and a digit) to (B, 1, base_length * 4^n) in [-1, 1], even for z far out
    of its prior (tanh saturates); the digit changes the clip; D scores (B,); a length that
    is not base_length * 4^n is refused naming data.length. Seen failing with the output
    padding of the transposed convolutions left at 0 (clips 3 samples short per layer)."""
    for length, base in ((1024, 16), (2048, 8), (4096, 16)):
        g = WaveGANGenerator(length=length, latent_dim=8, model_size=4, base_length=base)
        d = WaveGANDiscriminator(length=length, model_size=4, base_length=base)
        z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            x = g(z)
            loud = g(z * 1000)
        assert x.shape == (3, 1, length) and loud.shape == (3, 1, length)
        assert float(x.abs().max()) <= 1 and float(loud.abs().max()) <= 1
        assert float(loud.abs().max()) > 0.5  # saturating, not silent
        assert d(x).shape == (3,)
    g = WaveGANGenerator(length=1024, latent_dim=8, model_size=4, num_classes=10)
    with torch.no_grad():
        a, b = g(z, torch.tensor([1, 2, 3])), g(z, torch.tensor([7, 7, 7]))
    assert (a - b).abs().max() > 1e-4
    assert wavegan_layers(16384, 16, 4) == 5
    with pytest.raises(GenlabError, match="16000 is not one.*4096, 16384.*set data.length"):
        WaveGANGenerator(length=16000)


def tiny_wavegan(length: int = 256, n_critic: int = 2) -> WaveGAN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = WaveGANGenerator(length=length, latent_dim=8, model_size=4, num_classes=10)
        d = WaveGANDiscriminator(length=length, model_size=4, num_classes=10)
    adam = functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.9))
    return WaveGAN(
        generator=g,
        discriminator=d,
        sample_rate=8000,
        length=length,
        num_classes=10,
        loss="wgan_gp",
        n_critic=n_critic,
        optimizer_g=adam,
        optimizer_d=adam,
    )


class WatchSteps(L.Callback):
    """At each optimizer step, what D's parameters look like."""

    def __init__(self) -> None:
        self.g_steps = self.d_steps = 0
        self.problems: list[str] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        d_params = list(pl_module.discriminator.parameters())
        if optimizer is trainer.optimizers[0]:  # G's step
            self.g_steps += 1
            if any(p.requires_grad for p in d_params):
                self.problems.append(f"G step {self.g_steps}: D requires grad")
            if any(p.grad is not None for p in d_params):
                self.problems.append(f"G step {self.g_steps}: D holds a gradient")
            if all(p.grad is None for p in pl_module.generator.parameters()):
                self.problems.append(f"G step {self.g_steps}: G has no gradient")
        else:
            self.d_steps += 1
            if not all(p.requires_grad and p.grad is not None for p in d_params):
                self.problems.append(f"D step {self.d_steps}: D is not learning")


def test_d_is_frozen_in_the_g_step_and_steps_n_critic_times():
    """Three iterations of WaveGAN (WGAN-GP, 2 D steps each) on tones: at every G step D's
    parameters do not require grad and hold no gradient while G's do; D steps twice per
    iteration with gradients; D requires grad again after training. Seen failing with the
    loop's `frozen` replaced by a no-op (in a scratch copy: D requires grad and receives
    G's gradient). The clips stay in G's units, [-1, 1], into D and out of decode: seen
    failing with decode mapping to [0, 1] as the image GAN does."""
    t = torch.arange(256) / 8000
    x = torch.stack([0.5 * torch.sin(2 * torch.pi * (200 + 50 * i) * t) for i in range(12)])
    data = torch.utils.data.TensorDataset(x[:, None], torch.arange(12) % 10)
    watch = WatchSteps()
    trainer = short_trainer(3, watch)
    model = tiny_wavegan()
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    assert (watch.g_steps, watch.d_steps) == (3, 6)
    assert not watch.problems, watch.problems
    assert all(p.requires_grad for p in model.discriminator.parameters())
    # samples: waveforms in [-1, 1], the default digits 0, 1, ... without y
    gen = functools.partial(torch.Generator().manual_seed, 3)
    clips = model.sample(4, generator=gen())
    assert clips.shape == (4, 1, 256) and float(clips.abs().max()) <= 1
    assert torch.equal(clips, model.sample(4, generator=gen(), y=torch.arange(4)))
    # in G's units both ways: real clips reach D as they are, decode is the EMA G's output
    z = model.sample_latent(4, generator=gen())
    with torch.no_grad():
        assert torch.equal(
            model.decode(z, y=torch.arange(4)), model.generator_ema(z, torch.arange(4))
        )
    assert torch.equal(model.prepare_batch((x[:4, None], torch.arange(4)))[0], x[:4, None])


def sc09_folder(root: Path) -> None:
    """Speech Commands' layout: zero/ .. nine/ with 3 one-second 16 kHz files each (the
    third speaker's in testing_list.txt, the second's in validation_list.txt)."""
    val, test = [], []
    for d, word in enumerate(WORDS):
        (root / word).mkdir(parents=True)
        for k, spk in enumerate(("0a2b400e", "bb05582b", "c1d39ce8")):
            name = f"{spk}_nohash_0.wav"
            write_pcm16(root / word / name, tone(300 + 30 * d + 7 * k, 16000, 16000, 0.3), 16000)
            (val if k == 1 else test if k == 2 else []).append(f"{word}/{name}")
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")


@pytest.mark.parametrize("family", ["wavenet", "wavegan"])
def test_sc09_recipes_build_on_files_in_the_sc09_layout(tmp_path, family):
    """experiment=<family>_sc09 composes as a user types it and builds its model and its
    datamodule, which reads SC09's layout: 16 kHz clips of the recipe's length (WaveGAN's
    16,384 = 16,000 zero-padded), the paper-size nets, and the model takes a real batch: WaveNet
    scores it (bits per sample finite, near a uniform guess's 8 untrained), WaveGAN's D scores
    it and G makes clips of the same shape."""
    sc09_folder(tmp_path / "data" / "speech_commands_v0.02")
    cfg = make_cfg(tmp_path, f"experiment={family}_sc09", f"paths.data_dir={tmp_path / 'data'}")
    assert cfg.trainer.accelerator == "gpu"
    dm = instantiate(cfg.data)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    length = 16384 if family == "wavegan" else 16000
    assert dm.sample_rate == 16000 and x.shape[1:] == (1, length)
    # split by the list files: one clip of each word in each split
    for split in ("train", "val", "test"):
        assert sorted(clips_of(dm.dataset(split))[1].tolist()) == list(range(10))
    model = instantiate(cfg.model).eval()
    with torch.no_grad():
        if family == "wavenet":
            assert model.net.receptive_field == 3071
            bits = model.nll_bits_per_sample(x[:2, :, :2048], y[:2])
            assert bits.shape == (2,) and torch.isfinite(bits).all()
            assert 6.0 < float(bits.mean()) < 10.0
        else:
            assert model.generator.base_channels == 1024 and model.discriminator.radius == 2
            assert model.discriminator(x[:2], y[:2]).shape == (2,)
            fake = model.sample(2, y=y[:2])
            assert fake.shape == (2, 1, 16384)


TINY = {
    "wavenet": TINY_WAVENET,
    "wavegan": (
        "model=wavegan",
        "model.latent_dim=8",
        "model.generator.model_size=4",
        "model.discriminator.model_size=4",
        "model.n_critic=1",
    ),
}


@pytest.mark.parametrize("family", ["wavenet", "wavegan"])
def test_sample_cli_writes_wav_files_of_the_digit(tmp_path, family):
    """`genlab.sample ckpt_path=... digit=7 n=8` on a checkpoint of a short run on tones in
    FSDD's layout writes eight 16-bit mono WAV files at the data's 8 kHz, each the data's
    256 samples long, holding the model's own samples of the digit 7 for the CLI's seed
    (recomputed here from the checkpoint: within 16-bit rounding), and their spectrograms;
    the run's own sample grid was written as spectrograms and WAVs too.
    Seen failing with digit= ignored (a row of 8 per class: 80 WAVs) and with the wrong
    class drawn (samples.json's classes; the WAVs are not the model's sevens)."""
    summary = train(
        make_cfg(
            tmp_path,
            *TINY[family],
            *tones_as_fsdd(tmp_path),
            # the GAN recipes' callbacks: a sample grid at the end of training
            "callbacks=gan",
            "~callbacks.rich_progress_bar",
            "callbacks.sample_grid.n=2",
            "trainer=cpu",
            "logger=csv",
            "extras.print_config=false",
            "trainer.enable_model_summary=false",
            "trainer.enable_progress_bar=false",
            "trainer.max_steps=3",
            "trainer.limit_val_batches=1",
            "test=false",
        )
    )
    ckpt = summary["last_ckpt"]
    # training wrote the grid as the waveform writer writes it: spectrograms and a WAV a clip
    images = Path(summary["run_dir"]) / "images"
    assert (images / "samples_s00000003.png").exists()
    for i in range(2):
        wav = read_wav(images / f"samples_s00000003_{i:02d}.wav")
        assert (wav.rate, wav.channels, wav.samples.shape[-1]) == (8000, 1, 256)
    args = (f"ckpt_path={ckpt}", "digit=7", "n=8", "device=cpu")
    run_cli(*args, cwd=tmp_path, module="genlab.sample")
    [out] = Path(ckpt).parents[1].glob("samples/*/")
    wavs = sorted(out.glob("samples_*.wav"))
    assert [p.name for p in wavs] == [f"samples_{i:02d}.wav" for i in range(8)]
    assert json.loads((out / "samples.json").read_text())["classes"] == [7]
    assert (out / "samples.png").exists()
    model, _ = load_model(ckpt)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)  # the CLI's seed=0
        sevens = model.sample(8, generator=gen, y=torch.full((8,), 7)).float()
        others = model.sample(8, generator=torch.Generator().manual_seed(0), y=torch.arange(8))
    for i, path in enumerate(wavs):
        wav = read_wav(path)
        assert (wav.rate, wav.channels, wav.samples.shape[-1]) == (8000, 1, 256)
        assert np.abs(wav.samples[0] - sevens[i, 0].numpy()).max() < 2.0 / 32767
    assert (sevens - others.float()).abs().max() > 100 / 32767


def test_digit_is_refused_for_a_model_without_classes():
    """digit= asks a class-conditional model for one class: a model with num_classes=0 is
    refused naming the option, before anything is drawn."""
    model = tiny_wavegan()
    model.num_classes = 0
    cfg = OmegaConf.create({"digit": 7, "n": 8, "classes": None, "n_per_row": 8})
    with pytest.raises(GenlabError, match="digit=7.*not conditioned on a class"):
        one_class(cfg, model)
    assert one_class(OmegaConf.merge(cfg, {"digit": None}), model) == (None, 8)
