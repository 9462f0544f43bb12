"""The captions the grid callbacks send to the loggers say what the rows are, and name the
epoch and step of the state drawn the same way for every grid drawn at that step."""

from __future__ import annotations

import pytest
from conftest import FAST, TINY_GAN, make_cfg

import genlab.callbacks.images as images
import genlab.callbacks.latent_interpolation as latent_interpolation
import genlab.callbacks.prior_interpolation as prior_interpolation
from genlab.train import train


@pytest.fixture
def captions(monkeypatch) -> dict[str, list[str]]:
    """Every caption a grid callback hands to the loggers, by log key, in order."""
    seen: dict[str, list[str]] = {}
    for module, name in (
        (images, "log_media"),
        (latent_interpolation, "log_image"),
        (prior_interpolation, "log_image"),
    ):
        real = getattr(module, name)

        def record(trainer, key, *args, _real=real, **kwargs):
            seen.setdefault(key, []).append(kwargs.get("caption"))
            return _real(trainer, key, *args, **kwargs)

        monkeypatch.setattr(module, name, record)
    return seen


def test_latent_interpolation_captions_say_what_the_rows_are(tmp_path, captions):
    train(make_cfg(tmp_path, *FAST, "trainer.max_epochs=1", "test=false"))
    assert captions["val/interpolation_linear"] == [
        "linear (lerp) interpolation, one row per pair of fixed validation images (4 rows): "
        "the first image, 8 decodings along the path between the two codes, the second image "
        "(epoch 0, step 4)"
    ]
    (spherical,) = captions["val/interpolation_spherical"]
    assert spherical.startswith("spherical (slerp) interpolation, one row per pair")


def test_prior_interpolation_names_the_epoch_its_samples_name(tmp_path, captions):
    """One epoch of 4 steps; the samples are drawn at its validation, the interpolation (no
    epoch grids) at the end of training, of the same state: both say epoch 0, step 4 (the
    interpolation said epoch 1, Lightning's epoch count after the last epoch)."""
    train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY_GAN,
            "callbacks=gan",
            "trainer.max_epochs=1",
            "callbacks.prior_interpolation.every_n_epochs=0",
            "test=false",
        )
    )
    (samples,) = captions["val/samples"]
    (walk,) = captions["val/prior_interpolation_spherical"]
    assert samples.endswith("(epoch 0, step 4)")
    assert walk == (
        "spherical (slerp) interpolation, one row per pair of fixed prior draws (seed 1, 6 "
        "rows): 10 decodings from the first draw to the second (epoch 0, step 4)"
    )
    assert (tmp_path / "run" / "images" / "prior_interpolation_spherical_s00000004.png").is_file()
