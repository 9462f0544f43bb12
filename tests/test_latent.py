"""Latent manipulation: interpolation geometry, attribute arithmetic, the CLI and library."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import run_cli, tiles, trained
from hydra.utils import instantiate
from PIL import Image

from genlab.analysis.latent_space import (
    apply_attribute,
    attribute_mask,
    attribute_vector,
    lerp,
    slerp,
    write_interpolations,
)
from genlab.utils.checkpoint import load_model
from genlab.utils.errors import GenlabError


def test_lerp_and_slerp_geometry():
    z0, z1 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])
    line = lerp(z0, z1, 5)
    assert torch.allclose(line[0], z0) and torch.allclose(line[-1], z1)
    assert torch.allclose(line[2], (z0 + z1) / 2)
    arc = slerp(z0, z1, 5)
    assert torch.allclose(arc[0], z0, atol=1e-6) and torch.allclose(arc[-1], z1, atol=1e-6)
    # norms interpolate linearly (2 -> 4); the midpoint direction bisects the angle
    assert torch.allclose(arc.norm(dim=1), torch.linspace(2, 4, 5), atol=1e-5)
    assert torch.allclose(
        arc[2] / arc[2].norm(), torch.tensor([1.0, 1.0]) / math.sqrt(2), atol=1e-6
    )
    # parallel codes fall back to the straight line
    assert torch.allclose(slerp(z0, 3 * z0, 4), lerp(z0, 3 * z0, 4))


def test_attribute_vector_is_difference_of_group_means():
    codes = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 0.0], [0.0, 4.0], [9.0, 9.0]])
    has = torch.tensor([True, True, False, False, False])
    assert torch.allclose(attribute_vector(codes, has), torch.tensor([2.0 - 3.0, 1.0 - 13 / 3]))
    # n_exemplars averages only the first n of each group (DCGAN used 3)
    assert torch.allclose(attribute_vector(codes, has, n_exemplars=1), torch.tensor([1.0, 0.0]))
    edited = apply_attribute(codes[2:4], torch.tensor([1.0, -1.0]), [0.0, 2.0])
    assert edited.shape == (2, 2, 2)
    assert torch.allclose(edited[1, 1], torch.tensor([2.0, 2.0]))
    with pytest.raises(GenlabError, match="both groups"):
        attribute_vector(codes, torch.ones(5, dtype=torch.bool))


def test_attribute_masks_by_class_and_by_name():
    name, has = attribute_mask(torch.tensor([1, 7, 7, 3]), 7, None)
    assert name == "class7" and has.tolist() == [False, True, True, False]
    attrs = torch.tensor([[0, 1], [1, 0]])
    name, has = attribute_mask(attrs, "Smiling", ["Eyeglasses", "Smiling"])
    assert name == "Smiling" and has.tolist() == [True, False]
    with pytest.raises(GenlabError, match="Eyeglasses, Smiling"):
        attribute_mask(attrs, "Bald", ["Eyeglasses", "Smiling"])
    with pytest.raises(GenlabError, match="class index"):
        attribute_mask(torch.tensor([1, 2]), "Smiling", None)


def test_interpolation_from_data_and_from_the_prior(tmp_path):
    """Read back: with source=data the end tiles are the real test images (spread evenly over
    the split: the first half at the left, the second at the right) and the first and last
    decoded tiles are their reconstructions; with source=prior the ends decode the seeded
    prior draws. Recomputed here from the dataset and the model."""
    ckpt = trained("vae")["last_ckpt"]
    model, run_cfg = load_model(ckpt)
    datamodule = instantiate(run_cfg.data)
    datamodule.setup()
    test = datamodule.dataset("test")
    eight_bit = 1 / 255 + 1e-6
    for source in ("data", "prior"):
        out = tmp_path / source
        out.mkdir()
        result = write_interpolations(
            model, out, data=test, source=source, pairs=3, steps=5, seed=0
        )
        assert result["source"] == source and result["pairs"] == 3
        width = 5 + 2 if source == "data" else 5  # real images at both ends of each row
        for mode in ("linear", "spherical"):
            grid = tiles(out / f"interpolate_{mode}.png", 3, width)
            with torch.no_grad():
                if source == "data":
                    index = torch.linspace(0, len(test) - 1, 6).long().tolist()
                    real = torch.stack([test[i][0][0] for i in index])  # (6, 28, 28)
                    assert (grid[:, 0] - real[:3]).abs().max() <= eight_bit
                    assert (grid[:, -1] - real[3:]).abs().max() <= eight_bit
                    codes = model.encode_latent(real[:, None])
                    ends = model.decode(codes)[:, 0]
                    assert (grid[:, 1] - ends[:3]).abs().max() <= eight_bit
                    assert (grid[:, -2] - ends[3:]).abs().max() <= eight_bit
                else:
                    gen = torch.Generator().manual_seed(0)
                    z0 = torch.randn(3, model.latent_dim, generator=gen)
                    z1 = torch.randn(3, model.latent_dim, generator=gen)
                    assert (grid[:, 0] - model.decode(z0)[:, 0]).abs().max() <= eight_bit
                    assert (grid[:, -1] - model.decode(z1)[:, 0]).abs().max() <= eight_bit
                    middle = model.decode(
                        (z0 + z1) / 2 if mode == "linear" else slerp(z0[0], z1[0], 5)[2:3]
                    )[:, 0]
                    rows = slice(None) if mode == "linear" else slice(0, 1)
                    assert (grid[rows, 2] - middle).abs().max() <= eight_bit


def test_attribute_cli_on_class_labels(tmp_path):
    ckpt = trained("vae")["last_ckpt"]
    run_cli(
        f"ckpt_path={ckpt}",
        "op=attribute",
        "attribute=7",
        "source_class=1",
        "n_inputs=4",
        "n_exemplars=20",
        "scales=[0,1,2]",
        "device=cpu",
        cwd=tmp_path,
        module="genlab.latent",
    )
    [out] = Path(ckpt).parents[1].glob("latent/*/")
    result = json.loads((out / "latent.json").read_text())
    assert result["attribute"] == "class7_from_class1" and result["n_with"] > 0
    # rows: the input then its code + s * vector for each of the 3 scales
    assert Image.open(out / "attribute_class7_from_class1.png").size == (4 * 30 + 2, 4 * 30 + 2)
    vector = torch.load(out / "attribute_class7_from_class1.pt", weights_only=True)
    assert vector.shape == (20,) and result["vector_norm"] == pytest.approx(float(vector.norm()))
    # recomputed from the encoded test split: mean code of the first 20 sevens minus that of
    # the first 20 ones; the grid's inputs are ones spread over the split, then their edits
    model, run_cfg = load_model(ckpt)
    datamodule = instantiate(run_cfg.data)
    datamodule.setup()
    test = datamodule.dataset("test")
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([int(test[i][1]) for i in range(len(test))])
    with torch.no_grad():
        codes = model.encode_latent(x)
    want = codes[y == 7][:20].mean(0) - codes[y == 1][:20].mean(0)
    assert torch.allclose(vector, want, atol=1e-5)
    assert result["n_with"] == int((y == 7).sum()) and result["n_without"] == int((y == 1).sum())
    ones = torch.nonzero(y == 1).flatten()
    inputs = ones[torch.linspace(0, len(ones) - 1, 4).long()]
    grid = tiles(out / "attribute_class7_from_class1.png", 4, 4)
    assert (grid[:, 0] - x[inputs, 0]).abs().max() <= 1 / 255 + 1e-6
    with torch.no_grad():
        edited = model.decode(codes[inputs] + 2.0 * want)[:, 0]
    assert (grid[:, 3] - edited).abs().max() <= 1 / 255 + 1e-5
