"""The contracts that are not image-only: what a sample is (Modality), what it is conditioned
on (Condition), the writer of each modality, and evaluation tasks refused for data they do not
work on, before anything runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg
from hydra.utils import instantiate
from PIL import Image
from torch.utils.data import TensorDataset

from genlab.data.datamodules import SampleDataModule
from genlab.data.modality import Condition, Modality, image, tokens, video, voxels, waveform
from genlab.evaluation.runner import check_modalities
from genlab.utils.errors import GenlabError
from genlab.writers import writer_for


class Sounds(SampleDataModule):
    """Two-class sine waves: a real datamodule of another modality than images."""

    name = "sounds"

    @property
    def modality(self) -> Modality:
        return waveform(64, rate=8000)

    @property
    def condition(self) -> Condition:
        return Condition("class", (), 2, names=("low", "high"))

    def load_splits(self):
        t = torch.arange(64) / 8000
        x = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (200.0, 1000.0)] * 4)[:, None]
        y = torch.tensor([0, 1] * 4)
        data = TensorDataset(x, y)
        return {"train": data, "val": data, "test": data}


def test_modalities_check_their_shapes_and_channels():
    assert image(3, 32).shape == (3, 32, 32) and image(1, 28).channels == 1
    assert video(10, 1, 64, fps=4).channels == 1 and video(10, 1, 64).rate == 4
    assert waveform(8000, 8000).low == -1.0 and voxels(32).shape == (1, 32, 32, 32)
    assert tokens(12, 50).high == 49 and tokens(12, 50).channels == 0
    with pytest.raises(ValueError, match="a video sample has 4 axes"):
        Modality("video", (3, 32, 32))
    with pytest.raises(ValueError, match="modality kind 'audio'"):
        Modality("audio", (1, 10))


def test_conditions_describe_a_batch():
    vocab = ("<pad>", "the", "digit", "3", "is", "left")
    captions = Condition("tokens", (5,), vocab=vocab)
    assert captions.describe(torch.tensor([[1, 2, 3, 0, 0], [3, 4, 5, 0, 0]])) == [
        "the digit 3",
        "3 is left",
    ]
    classes = Condition("class", (), 3, names=("a", "b"))
    assert classes.describe(torch.tensor([1, 0, 2])) == ["b", "a", "2"]
    attrs = Condition("attributes", (2,), 2, names=("smiling", "young"))
    assert attrs.describe(torch.tensor([[1, 0]])) == ["smiling=1, young=0"]


def test_the_image_writer_writes_the_pixels_it_previews(tmp_path):
    x = torch.rand(6, 1, 8, 8)
    writer = writer_for(image(1, 8))
    (png,) = writer.save(x, tmp_path / "grid", modality=image(1, 8), n_per_row=3)
    assert png == tmp_path / "grid.png"
    preview = writer.preview(x, modality=image(1, 8), n_per_row=3)
    assert preview.shape == (3, 2 * 8 + 3 * 2, 3 * 8 + 4 * 2)  # 2 rows, 3 columns, padding 2
    on_disk = np.asarray(Image.open(png).convert("L"), dtype=np.int16)
    want = preview[0].mul(255).add(0.5).clamp(0, 255).to(torch.uint8).numpy().astype(np.int16)
    assert np.abs(on_disk - want).max() <= 1
    # a single sample is written as it is, no border (external FID tools read these files)
    (one,) = writer.save(x[:1], tmp_path / "one", modality=image(1, 8), n_per_row=1)
    assert Image.open(one).size == (8, 8)


def test_a_datamodule_of_another_modality_declares_it_and_gives_no_grid_conditions():
    dm = Sounds(batch_size=4)
    dm.setup()
    assert dm.modality.kind == "waveform" and dm.condition.kind == "class"
    assert dm.grid_conditions(4) is None  # classes: the model draws each in turn
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 64) and y.shape == (4,)
    with pytest.raises(GenlabError, match="data=sounds is conditioned on class, not on text"):
        dm.encode_condition("a low tone")


def test_image_tasks_are_refused_for_waveforms_before_anything_runs(tmp_path: Path):
    cfg = make_cfg(
        tmp_path, "ckpt_path=x.ckpt", "tasks=[test,report,generation]", config_name="eval"
    )
    tasks = {name: instantiate(task) for name, task in cfg.tasks.items()}
    with pytest.raises(GenlabError) as err:
        check_modalities(tasks, Sounds())
    text = str(err.value)
    assert "waveform samples" in text and "report works on image" in text
    assert "generation works on image" in text and "test works on image" not in text
    check_modalities(tasks, instantiate(make_cfg(tmp_path, config_name="train").data))


def test_a_checkpoint_naming_moved_classes_still_loads_its_config(tmp_path, caplog):
    """Checkpoints of genlab before the move of corruptions (models.corruption ->
    data.corruptions) and StageSnapshots: their stored config is rewritten to the new paths,
    with a log line naming each change, and passes the target check."""
    from genlab.utils.checkpoint import CONFIG_KEY, run_config

    old = {
        "model": {
            "_target_": "genlab.models.AutoEncoder",
            "corruption": {"g": {"_target_": "genlab.models.corruption.GaussianNoise"}},
        },
        "callbacks": {"s": {"_target_": "genlab.callbacks.progressive.StageSnapshots"}},
    }
    with caplog.at_level("INFO"):
        cfg = run_config({CONFIG_KEY: old, "state_dict": {}}, tmp_path / "old.ckpt")
    assert cfg.model.corruption.g._target_ == "genlab.data.corruptions.GaussianNoise"
    assert cfg.callbacks.s._target_ == "genlab.callbacks.StageSnapshots"
    assert "genlab.models.corruption.GaussianNoise -> genlab.data.corruptions" in caplog.text


@pytest.mark.parametrize("kind", ["bce", "minimax", "hinge", "ls", "wgan_gp"])
def test_an_objectives_parts_add_up_to_its_discriminator_terms(kind):
    """real_part + fake_part = the D term of every game (with smoothing where it applies): the
    parts compose D losses with more pairings (a matching-aware D)."""
    from genlab.losses.gan_objectives import objective

    smooth = 0.1 if kind in ("bce", "minimax", "ls") else 0.0
    game = objective(kind, label_smoothing=smooth)
    real, fake = torch.randn(6), torch.randn(6)
    both = game.real_part(real) + game.fake_part(fake)
    assert torch.allclose(both, game.d_terms(real, fake), atol=1e-6)
