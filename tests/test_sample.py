"""Sampling: the genlab.sample CLI (grid and individual files), temperature, per-class grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, trained
from PIL import Image

from genlab.analysis.samples import write_samples
from genlab.models import AutoEncoder
from genlab.nets import MLPDecoder, MLPEncoder
from genlab.utils.checkpoint import load_model
from genlab.utils.errors import GenlabError


def test_sample_cli_writes_grid_and_individual_files(tmp_path):
    ckpt = trained("vae")["last_ckpt"]
    run_cli(
        f"ckpt_path={ckpt}",
        "n=12",
        "n_per_row=4",
        "save_individual=true",
        "temperature=0.7",
        "device=cpu",
        cwd=tmp_path,
        module="genlab.sample",
    )
    [out] = Path(ckpt).parents[1].glob("samples/*/")
    grid = Image.open(out / "samples.png")
    assert grid.size == (4 * 30 + 2, 3 * 30 + 2)  # 4 x 3 tiles of 28 px, 2 px padding
    files = sorted((out / "images").glob("*.png"))
    assert len(files) == 12 and Image.open(files[0]).size == (28, 28)
    summary = json.loads((out / "samples.json").read_text())
    assert summary["n_files"] == 12 and summary["temperature"] == 0.7
    # the files are the decoded prior draws z ~ N(0, 0.7^2 I) of the CLI's seed (0),
    # recomputed here from the checkpoint; at temperature 1 they differ by far more than the
    # 8-bit rounding (0.078 measured on this barely trained VAE)
    model, _ = load_model(ckpt)
    z = torch.randn(12, model.latent_dim, generator=torch.Generator().manual_seed(0))
    written = torch.stack(
        [torch.from_numpy(np.array(Image.open(f))[..., 0]).float() / 255 for f in files]
    )  # (12, 28, 28): save_image writes grey images as RGB
    with torch.no_grad():
        cool, hot = model.decode(0.7 * z)[:, 0], model.decode(z)[:, 0]
    assert (written - cool).abs().max() <= 1 / 255 + 1e-6
    assert (written - hot).abs().max() > 8 / 255


def test_temperature_scales_the_prior_draw():
    model, _ = load_model(trained("vae")["last_ckpt"])
    with torch.no_grad():
        hot = model.sample(5, generator=torch.Generator().manual_seed(3), temperature=0.5)
        z = torch.randn(5, model.latent_dim, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(hot, model.decode(0.5 * z), atol=1e-6)
        assert hot.min() >= 0 and hot.max() <= 1
    with pytest.raises(GenlabError, match="temperature"):
        write_samples(model, Path("unused"), n=2, temperature=0.0)


def test_conditional_samples_one_row_per_class(tmp_path):
    model, _ = load_model(trained("cvae")["last_ckpt"])
    summary = write_samples(
        model, tmp_path, n=20, n_per_row=3, save_individual=True, classes=[1, 7]
    )
    assert summary["classes"] == [1, 7]
    assert Image.open(tmp_path / "samples.png").size == (3 * 30 + 2, 2 * 30 + 2)
    names = sorted(p.name for p in (tmp_path / "images").glob("*.png"))
    assert len(names) == 20 and names[0].endswith("_c1.png") and names[1].endswith("_c7.png")
    # the label changes the sample: same z, different class
    z = model.sample_latent(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ones = model.decode(z, torch.full((4,), 1))
        sevens = model.decode(z, torch.full((4,), 7))
    assert (ones - sevens).abs().mean() > 1e-3
    with pytest.raises(GenlabError, match="not classes"):
        write_samples(model, tmp_path, n=2, classes=[10])


def test_models_that_cannot_sample_are_refused(tmp_path):
    enc = MLPEncoder(channels=1, image_size=8, out_dim=4, hidden_dims=[8])
    dec = MLPDecoder(channels=1, image_size=8, in_dim=4, hidden_dims=[8])
    ae = AutoEncoder(encoder=enc, decoder=dec, optimizer=torch.optim.Adam)
    with pytest.raises(GenlabError, match="cannot sample"):
        write_samples(ae, tmp_path, n=4)


def test_samples_json_counts_what_was_drawn(tmp_path):
    """classes=[3,5,8] with 10 per row draws 30 images for the grid, whatever n says; n more
    are drawn only for the individual files."""
    model, _ = load_model(trained("cvae")["last_ckpt"])
    grid_only = write_samples(model, tmp_path / "grid", n=64, n_per_row=10, classes=[3, 5, 8])
    assert grid_only["n"] == grid_only["n_grid"] == 30 and "n_files" not in grid_only
    assert json.loads((tmp_path / "grid" / "samples.json").read_text()) == grid_only
    assert Image.open(tmp_path / "grid" / "samples.png").size == (10 * 30 + 2, 3 * 30 + 2)
    both = write_samples(
        model, tmp_path / "both", n=7, n_per_row=10, classes=[3, 5, 8], save_individual=True
    )
    assert (both["n"], both["n_grid"], both["n_files"]) == (37, 30, 7)
    assert len(list((tmp_path / "both" / "images").glob("*.png"))) == 7
