"""`python -m genlab.reconstruct3d` end to end, as docs/3d.md tells a user to run it: a tiny
completion model trained for 4 steps, views rendered by the procedural shapes' own ray caster
and written as files in the documented format (16-bit and 8-bit depth PNGs with their masks),
then the real command in a subprocess. The `.binvox` files it writes read back with genlab's
reader and equal the model's own `reconstruct3d` of the same views at the threshold, voxel for
voxel; the run's own test views (`source=data`) likewise, with their IoU. Bad input files (a
missing partner, a wrong size, a wrong channel count) are named together in one paragraph, and
a checkpoint that cannot reconstruct 3D (a voxel VAE) is refused naming it; neither leaves an
output folder.

Each check was seen failing once on a broken variant (scratch copies of src/ on PYTHONPATH,
2026-12-05): the depth of 16-bit files shifted down to 8 bits, and the depth left as it is off
the mask instead of 1 (the read-back check; the 4-step model's grids alone did not show the
first); the names paired with the views in reverse order (the names check); the renders made
from the occupancies (filled at 0.5) instead of the grid at the threshold (the preview tiles
check); the missing-partner problem dropped (2 problems named, the lone depth map silently
skipped); the size check removed (a 20x20 depth map reached the model: exit 1, a traceback);
check_reconstructs removed (the VAE refused later, for its data's condition, without naming
the checkpoint); the data views taken from `train` whatever split= says (the names check of
test_run_views_with_their_iou); transparent pixels put on black (the RGB reader's check); the
temporary folder kept when writing fails (the failure check)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, make_cfg, run_cli
from hydra.utils import instantiate
from PIL import Image

from genlab.analysis.reconstruct3d_folder import reconstruct_views
from genlab.data import procedural_shapes as procedural
from genlab.data.binvox import read_binvox
from genlab.data.view_files import read_views
from genlab.data.voxel_render import cast, sketch
from genlab.models.voxel_models import ShapeCompletion
from genlab.train import train
from genlab.utils.checkpoint import data_config, load_model
from genlab.utils.errors import GenlabError
from genlab.writers import voxels_writer

SIZE, IMAGE = 16, 16
PREVIEW = voxels_writer.PREVIEW_VIEWS
SMALL = [
    *FAST,
    "data.size=16",
    "data.shapes_per_category=4",
    "data.batch_size=4",
    "trainer.max_epochs=1",
    "callbacks=[model_checkpoint,rich_progress_bar]",
    "test=false",
]
TINY_COMPLETION = [
    "model=shape_completion",
    *SMALL,
    f"data.image_size={IMAGE}",
    "model.net.encoder_channels=4",
    "model.net.decoder_channels=4",
    "model.net.latent_dim=8",
]
TINY_VAE = [
    "model=voxel_vae",
    *SMALL,
    "model.latent_dim=4",
    "model.encoder.base_channels=4",
    "model.decoder.base_channels=4",
]
# (category, shape, camera): azimuth, elevation, distance; the last input is written in 8 bits
VIEWS = {
    "chair": ("chair", 0, (30.0, 20.0, 2.0)),
    "lamp": ("lamp", 1, (200.0, 10.0, 2.0)),
    "table8": ("table", 2, (120.0, 35.0, 2.0)),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained completion model and a tiny voxel VAE (4 steps each)."""
    root = tmp_path_factory.mktemp("reconstruct3d")
    data = [f"paths.data_dir={root / 'data'}"]
    completion = train(make_cfg(root / "completion", *TINY_COMPLETION, *data))
    vae = train(make_cfg(root / "vae", *TINY_VAE, *data))
    return {
        "root": root,
        "data": root / "data",
        "completion": Path(completion["last_ckpt"]),
        "vae": Path(vae["last_ckpt"]),
    }


def write_views(folder: Path) -> dict[str, torch.Tensor]:
    """The VIEWS ray cast by the data's own renderer, written as docs/3d.md says (depth =
    the sketch's depth channel times 65535, or 255 for 8 bits; mask white on the object);
    returns the sketches (2, H, W) as those files hold them (the depth quantised)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (category, i, camera) in VIEWS.items():
        grid = procedural.make_shape(category, i, size=SIZE, seed=0)
        cam = torch.tensor([camera])
        views = cast(grid[None].float(), cam, image_size=IMAGE)
        depth, silhouette = sketch(views, cam)[0]
        scale, dtype = (255, np.uint8) if name.endswith("8") else (65535, np.uint16)
        if name.endswith("8"):  # off the mask the depth must be taken as 1, whatever it is
            depth = torch.where(silhouette > 0, depth, torch.full_like(depth, 0.5))
        levels = np.rint(depth.numpy() * scale).astype(dtype)
        Image.fromarray(levels).save(folder / f"{name}_depth.png")
        Image.fromarray((silhouette.numpy() * 255).astype(np.uint8)).save(
            folder / f"{name}_mask.png"
        )
        d = torch.from_numpy(levels.astype(np.float32)) / scale
        out[name] = torch.stack([torch.where(silhouette > 0, d, torch.ones_like(d)), silhouette])
    return out


def outputs(ckpt: Path) -> list[Path]:
    base = ckpt.parent.parent / "reconstruct3d"
    return sorted(base.iterdir()) if base.exists() else []


def test_reconstructs_files_as_the_model_does(runs, tmp_path):
    views = write_views(tmp_path / "views")
    model, _ = load_model(runs["completion"])
    assert isinstance(model, ShapeCompletion)
    names = sorted(views)
    # the files read back as the sketches they hold, to the last bit of the 16-bit depth
    read_names, read, _ = read_views(tmp_path / "views", "sketch", image_size=IMAGE)
    assert read_names == names
    for name, got in zip(names, read, strict=True):
        assert torch.equal(got, views[name]), name
    with torch.no_grad():
        probs = model.reconstruct3d(torch.stack([views[n] for n in names]))
    # a threshold that splits the tiny model's occupancies: the grids hold both kinds of voxel
    threshold = round(float(probs.median()), 4)
    run_cli(
        f"ckpt_path={runs['completion']}",
        f"input_dir={tmp_path / 'views'}",
        f"threshold={threshold}",
        "device=cpu",
        cwd=tmp_path,
        module="genlab.reconstruct3d",
    )
    (folder,) = outputs(runs["completion"])
    summary = json.loads((folder / "reconstruct3d.json").read_text())
    assert summary["threshold"] == threshold and [r["name"] for r in summary["inputs"]] == names
    report = (folder / "report.md").read_text()
    assert f"threshold: **{threshold:g}**" in report
    grids = []
    for name, p, row in zip(names, probs, summary["inputs"], strict=True):
        grid = read_binvox(folder / "shapes" / f"{name}.binvox")
        assert grid.dim == SIZE and grid.translate == (-0.5, -0.5, -0.5) and grid.scale == 1
        expected = (p[0] >= threshold).numpy()
        assert np.array_equal(grid.voxels, expected), name
        assert 0 < expected.mean() < 1
        assert row["filled_voxels"] == expected.sum()
        # the occupancies themselves, before the threshold (a small change of the input moves
        # them but may flip no voxel of a model trained for 4 steps)
        assert row["mean_occupancy"] == pytest.approx(p.mean().item(), rel=1e-6, abs=0)
        assert f"| {name} | `{name}_depth.png`, `{name}_mask.png` | {expected.sum()} |" in report
        with Image.open(folder / "shapes" / f"{name}.gif") as gif:
            assert gif.n_frames == 24
        with Image.open(folder / "shapes" / f"{name}.png") as png:
            # the depth and mask tiles, then the three views of the grid at the threshold,
            # each 64 px with 2 px padding: the writer's renders, as save_image rounds them
            assert png.size == (5 * 66 + 2, 68)
            image = np.asarray(png.convert("RGB"))
        shaded = voxels_writer.renders(torch.from_numpy(expected)[None, None].float(), PREVIEW)
        for v, tile in enumerate(shaded[0]):
            left = 2 + 66 * (2 + v)
            want = (tile * 255 + 0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()
            assert np.array_equal(image[2:66, left : left + 64], want), (name, v)
        grids.append(grid.voxels)
    # the inputs reach the model as themselves: their predictions differ
    assert not np.array_equal(grids[0], grids[1]) and not np.array_equal(grids[1], grids[2])


def test_run_views_with_their_iou(runs, tmp_path):
    model, run_cfg = load_model(runs["completion"])
    test = instantiate(data_config(run_cfg)).dataset("test")
    items = [test[0], test[len(test) - 1]]
    x = torch.stack([i[0] for i in items])
    with torch.no_grad():
        probs = model.reconstruct3d(torch.stack([i[1] for i in items]))
    threshold = round(float(probs.median()), 4)
    run_cli(
        f"ckpt_path={runs['completion']}",
        "source=data",
        "split=test",
        "n=2",
        f"threshold={threshold}",
        "device=cpu",
        cwd=tmp_path,
        module="genlab.reconstruct3d",
    )
    folder = outputs(runs["completion"])[-1]
    rows = json.loads((folder / "reconstruct3d.json").read_text())["inputs"]
    assert [r["name"] for r in rows] == ["test_0000", f"test_{len(test) - 1:04d}"]
    for row, p, truth in zip(rows, probs, x, strict=True):
        pred = p[0] >= threshold
        grid = read_binvox(folder / "shapes" / f"{row['name']}.binvox").voxels
        assert np.array_equal(grid, pred.numpy())
        t = truth[0] > 0.5
        assert row["iou"] == pytest.approx(((pred & t).sum() / (pred | t).sum()).item())


def test_bad_files_are_named_together_and_nothing_is_written(runs, tmp_path):
    folder = tmp_path / "views"
    write_views(folder)
    (folder / "lamp_mask.png").unlink()  # a depth map without its partner
    grey = np.zeros((IMAGE + 4, IMAGE + 4), np.uint8)
    Image.fromarray(grey).save(folder / "table8_depth.png")  # 20 x 20: the wrong size
    Image.fromarray(np.zeros((IMAGE, IMAGE, 3), np.uint8)).save(folder / "chair_mask.png")
    before = outputs(runs["completion"])
    proc = run_cli(
        f"ckpt_path={runs['completion']}",
        f"input_dir={folder}",
        "device=cpu",
        cwd=tmp_path,
        module="genlab.reconstruct3d",
        check=False,
    )
    err = proc.stderr
    assert proc.returncode == 2 and "Traceback" not in err, err[-3000:]
    assert "3 problem(s)" in err, err
    assert f"{folder / 'lamp_depth.png'} has no partner lamp_mask.png" in err
    assert f"{folder / 'table8_depth.png'} is 20x20 pixels, not the 16x16 pixels" in err
    assert f"{folder / 'chair_mask.png'} has 3 channels (mode RGB)" in err
    assert outputs(runs["completion"]) == before


def test_a_model_that_cannot_reconstruct_3d_is_refused(runs, tmp_path):
    write_views(tmp_path / "views")
    proc = run_cli(
        f"ckpt_path={runs['vae']}",
        f"input_dir={tmp_path / 'views'}",
        "device=cpu",
        cwd=tmp_path,
        module="genlab.reconstruct3d",
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"ckpt_path='{runs['vae']}' holds a VoxelVAE, which cannot reconstruct" in proc.stderr
    assert outputs(runs["vae"]) == []


def test_rgb_renders_are_read_on_white_and_grey_files_refused(tmp_path):
    """The reader of an RGB model's files (in process: the command around it is the one the
    tests above run)."""
    render = np.zeros((IMAGE, IMAGE, 4), np.uint8)
    render[..., :3], render[..., 3] = (200, 50, 50), 255
    render[:4, :, 3] = 0  # a transparent band: white, as the data's background
    Image.fromarray(render).save(tmp_path / "red.png")
    names, views, files = read_views(tmp_path, "rgb", image_size=IMAGE)
    assert names == ["red"] and files == [[str(tmp_path / "red.png")]]
    want = np.broadcast_to(np.float32([200, 50, 50])[:, None, None] / 255, (3, IMAGE, IMAGE))
    want = np.where(np.arange(IMAGE)[None, :, None] < 4, np.float32(1), want)
    assert np.array_equal(views[0].numpy(), want)
    Image.fromarray(np.zeros((IMAGE, IMAGE), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(GenlabError, match=r"grey.png has 1 channel \(mode L\), not the three"):
        read_views(tmp_path, "rgb", image_size=IMAGE)


def test_a_failure_while_writing_leaves_no_shapes(runs, tmp_path):
    """The library under the command, in process: the second input's files cannot be written
    (its name is a path into a folder that does not exist), and the first one's, already
    written, go with them."""
    views = write_views(tmp_path / "views")
    model, _ = load_model(runs["completion"])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FileNotFoundError):
        reconstruct_views(model, ["chair", "no/such"], torch.stack([views["chair"]] * 2), out)
    assert list(out.iterdir()) == []
