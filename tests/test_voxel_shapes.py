"""The voxel datamodules: the procedural shapes (reproducible from the seed, split by shape,
views that are renders of the very grid they come with) and ShapeNet-style folders written
here in the real formats (.binvox, cameras.json, PNG), bad files named.

Broken variants seen failing (in a scratch copy): the cached renders indexed in view-major
order (shape s view k at k * S + s: they no longer match the views rendered on request); a
view rendered on request with its shape's first camera (the sketches no longer match the ray
casts of their grids from their cameras); the validation shapes
drawn from the test shapes (a shape in two splits); the category seed depending on the list
position (the chairs change when the other categories are dropped); the cache key without the
image size (the 32-pixel renders replace the 16-pixel cache: one folder, not two); the
ShapeNet reduction by average instead of max (the thin pole disappears).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_cfg
from hydra.utils import instantiate
from PIL import Image

from genlab.data.binvox import write_binvox
from genlab.data.procedural_shapes import CATEGORIES, generate
from genlab.data.voxel_render import Projection, cast, sketch
from genlab.data.voxel_shapes import ProceduralShapes, ShapeNetVoxels
from genlab.utils.errors import GenlabError, find_user_error

SMALL = dict(size=16, image_size=16, shapes_per_category=6, views_per_shape=3, batch_size=8)


def test_generation_is_reproducible_from_its_seed():
    a, la = generate(CATEGORIES, 3, size=16, seed=7)
    b, lb = generate(CATEGORIES, 3, size=16, seed=7)
    c, _ = generate(CATEGORIES, 3, size=16, seed=8)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    # a shape depends on (seed, category, index) only, not on the other categories asked for
    chairs, labels = generate(["chair"], 3, size=16, seed=7)
    assert torch.equal(chairs, a[la == CATEGORIES.index("chair")]) and (labels == 0).all()
    # every shape is non-empty and keeps off the cube's outer layer of voxels
    assert (a.flatten(1).sum(1) > 0).all()
    border = a.clone()
    border[:, 1:-1, 1:-1, 1:-1] = 0
    assert border.sum() == 0
    # shapes of one category differ from each other
    assert len({bytes(g.numpy()) for g in a}) == len(a)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("voxel_data")


def test_views_are_renders_of_their_own_grid_and_splits_are_by_shape(data_dir):
    dm = ProceduralShapes(data_dir=str(data_dir), condition="sketch", **SMALL)
    dm.setup()
    splits = {k: dm.dataset(k) for k in ("train", "val", "test")}
    shapes = {k: {s for s, _ in d.pairs} for k, d in splits.items()}
    assert not (shapes["train"] & shapes["val"]) and not (shapes["train"] & shapes["test"])
    assert not (shapes["val"] & shapes["test"])
    assert sum(len(v) for v in shapes.values()) == 6 * len(CATEGORIES)
    assert len(splits["train"]) == 3 * len(shapes["train"])  # every view of a train shape
    val = dm.arrays("val")
    assert val["x"].shape == (len(splits["val"]), 1, 16, 16, 16)
    assert set(val["x"].unique().tolist()) == {0.0, 1.0}
    assert val["y"].shape == (len(splits["val"]), 2, 16, 16)
    # the stored sketch is the ray cast of the item's grid from the item's camera
    again = sketch(
        cast(val["x"], val["cameras"], image_size=16, projection=dm.projection), val["cameras"]
    )
    assert (val["y"] - again).abs().max() < 1e-3  # stored as float16
    # the batch contract
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 16, 16, 16) and x.dtype == torch.float32 and y.shape == (8, 2, 16, 16)
    assert dm.modality.kind == "voxels" and dm.modality.shape == (1, 16, 16, 16)
    assert dm.condition.kind == "image" and dm.condition.shape == (2, 16, 16)


def test_rgb_and_class_conditions_and_the_render_cache(data_dir):
    rgb = ProceduralShapes(data_dir=str(data_dir), condition="rgb", cache=True, **SMALL)
    rgb.setup()
    x, y = rgb.dataset("val")[0]
    assert y.shape == (3, 16, 16) and y.min() >= 0 and y.max() <= 1
    hit = cast(x, rgb.item_cameras("val")[:1], image_size=16)["silhouette"][0]
    assert torch.equal((y < 1).any(0), hit)  # white exactly off the shape
    lazy = ProceduralShapes(data_dir=str(data_dir), condition="rgb", **SMALL)  # cache=false
    lazy.setup()
    for i in (0, 5, 11):  # rendered on request: the same values as the cached renders
        assert torch.equal(lazy.dataset("val")[i][1], rgb.dataset("val")[i][1])
    sketches = ProceduralShapes(data_dir=str(data_dir), condition="sketch", cache=True, **SMALL)
    sketches.setup()
    assert len(list((data_dir / "procedural_shapes").iterdir())) == 1  # one cache, both kinds
    classes = ProceduralShapes(data_dir=str(data_dir), condition="class", **SMALL)
    classes.setup()
    x, y = classes.dataset("train")[0]
    assert x.shape == (1, 16, 16, 16) and y.dtype == torch.long
    assert classes.condition.kind == "class" and classes.condition.names == CATEGORIES
    assert len(classes.dataset("train")) + len(classes.dataset("val")) + len(
        classes.dataset("test")
    ) == 6 * len(CATEGORIES)  # one item per shape
    # another image size is another cache; a damaged cache is rebuilt, not read
    bigger = ProceduralShapes(
        data_dir=str(data_dir), condition="sketch", cache=True, **{**SMALL, "image_size": 32}
    )
    bigger.setup()
    assert len(list((data_dir / "procedural_shapes").iterdir())) == 2
    for f in (data_dir / "procedural_shapes").glob("*/depth.npy"):
        f.write_bytes(b"garbage")
    again = ProceduralShapes(data_dir=str(data_dir), condition="sketch", cache=True, **SMALL)
    again.setup()
    assert torch.equal(again.dataset("val")[3][1], sketches.dataset("val")[3][1])


def test_the_configs_compose_and_build(tmp_path):
    cfg = make_cfg(tmp_path, "data=voxel_shapes", "data.condition=sketch", "data.size=16")
    dm = instantiate(cfg.data)
    assert isinstance(dm, ProceduralShapes) and dm.size == 16 and dm.condition_kind == "sketch"
    # each model brings the data it takes; data=... on the command line picks another
    for model, condition in (("voxel_vae", "class"), ("shape_completion", "sketch")):
        dm = instantiate(make_cfg(tmp_path, f"model={model}").data)
        assert isinstance(dm, ProceduralShapes) and dm.condition_kind == condition
    cfg = make_cfg(tmp_path, "model=voxel_vae", "data=shapenet_voxels")
    assert cfg.data._target_.endswith("ShapeNetVoxels") and cfg.model.encoder.size == 32
    cfg = make_cfg(tmp_path, "data=shapenet_voxels")
    dm = instantiate(cfg.data)
    assert isinstance(dm, ShapeNetVoxels) and dm.root.endswith("shapenet_voxels")
    with pytest.raises(Exception) as err:  # Hydra wraps it; the entry points unwrap it
        instantiate(make_cfg(tmp_path, "data=voxel_shapes", "data.condition=depth").data)
    assert "data.condition='depth'" in str(find_user_error(err.value))


# --- ShapeNet-style folders -----------------------------------------------------------------
def write_shape(folder, grid: np.ndarray, views: list[tuple[float, float, float]], **top):
    """A shape folder as the layout says: model.binvox, views/cameras.json, one PNG per view
    (each PNG a different flat colour, to tell them apart)."""
    (folder / "views").mkdir(parents=True)
    write_binvox(folder / "model.binvox", grid, translate=(-0.5, -0.5, -0.5))
    entries = []
    for i, (az, el, dist) in enumerate(views):
        name = f"{i:02d}.png"
        Image.new("RGB", (24, 24), (40 * i, 200, 100)).save(folder / "views" / name)
        entries.append({"image": name, "azimuth": az, "elevation": el, "distance": dist})
    (folder / "views" / "cameras.json").write_text(json.dumps({**top, "views": entries}))


def small_layout(root) -> dict[str, np.ndarray]:
    grids = {}
    chairs, _ = generate(["chair"], 3, size=16, seed=0)
    tables, _ = generate(["table"], 3, size=16, seed=0)
    for category, shapes in (("chair", chairs), ("table", tables)):
        for i, g in enumerate(shapes):
            grid = g.numpy().astype(bool)
            write_shape(
                root / category / f"s{i}", grid, [(30.0 * i, 20.0, 2.0), (200.0, 10.0, 2.5)]
            )
            grids[f"{category}/s{i}"] = grid
    return grids


@pytest.mark.parametrize("condition", ["class", "sketch", "rgb"])
def test_shapenet_layout_reads_voxels_cameras_and_images(tmp_path, condition):
    root = tmp_path / "shapenet"
    grids = small_layout(root)
    dm = ShapeNetVoxels(
        root=str(root),
        size=16,
        image_size=16,
        condition=condition,
        val_fraction=0.0,
        test_fraction=0.0,
        batch_size=4,
    )
    dm.setup()
    assert dm.classes == ("chair", "table")
    train = dm.dataset("train")
    assert len(train) == (6 if condition == "class" else 12)
    for i, (s, v) in enumerate(train.pairs):
        x, y = train[i]
        name = ["chair/s0", "chair/s1", "chair/s2", "table/s0", "table/s1", "table/s2"][s]
        assert torch.equal(x[0].bool(), torch.from_numpy(grids[name]))
        if condition == "class":
            assert int(y) == (0 if name.startswith("chair") else 1)
        elif condition == "sketch":
            cam = dm.item_cameras("train")[i : i + 1]
            assert torch.equal(cam[0, 2], torch.tensor([2.0, 2.5])[v])
            want = sketch(cast(x, cam, image_size=16, projection=Projection()), cam)[0]
            assert torch.allclose(y, want)
        else:  # the view's own PNG, resized
            assert torch.allclose(y[:, 0, 0], torch.tensor([40 * v, 200, 100]) / 255, atol=1e-6)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 16, 16, 16)


def test_larger_grids_are_reduced_by_an_integer_factor(tmp_path):
    """A 32^3 file read at size 16: a voxel is filled when any of the 2^3 it covers is (a
    one-voxel-thin leg survives)."""
    grid = np.zeros((32, 32, 32), dtype=bool)
    grid[5, 0:20, 7] = True  # a thin pole
    grid[20:30, 10:12, 20:30] = True
    write_shape(tmp_path / "r" / "pole" / "a", grid, [(0.0, 0.0, 2.0)])
    dm = ShapeNetVoxels(root=str(tmp_path / "r"), size=16, val_fraction=0.0, test_fraction=0.0)
    dm.setup()
    x, _ = dm.dataset("train")[0]
    want = torch.from_numpy(grid).reshape(16, 2, 16, 2, 16, 2).any(5).any(3).any(1)
    assert torch.equal(x[0].bool(), want) and x[0, 2, 0:10, 3].all()
    write_shape(tmp_path / "odd" / "pole" / "a", np.ones((24, 24, 24), dtype=bool), [(0, 0, 2)])
    with pytest.raises(GenlabError, match="is 24\\^3, not a multiple of data.size=16"):
        ShapeNetVoxels(root=str(tmp_path / "odd"), size=16).setup()


def test_bad_shapenet_files_are_all_named_before_training(tmp_path):
    root = tmp_path / "shapenet"
    small_layout(root)
    (root / "chair" / "s0" / "model.binvox").write_bytes(
        b"#binvox 1\ndim 16 16 16\ndata\n\x00\x05"
    )
    (root / "chair" / "s1" / "views" / "cameras.json").write_text('{"views": [{"image": "00.png"')
    cams = root / "table" / "s0" / "views" / "cameras.json"
    data = json.loads(cams.read_text())
    data["views"][0]["elevation"] = 90.0
    cams.write_text(json.dumps(data))
    cams = root / "table" / "s1" / "views" / "cameras.json"
    data = json.loads(cams.read_text())
    data["views"][1]["image"] = "../../s0/views/00.png"
    cams.write_text(json.dumps(data))
    (root / "table" / "s2" / "views" / "01.png").unlink()
    dm = ShapeNetVoxels(root=str(root), size=16, image_size=16, condition="rgb")
    with pytest.raises(GenlabError) as err:
        dm.setup()
    text = str(err.value)
    assert "5 shape(s) cannot be used" in text
    for problem in (
        f"{root}/chair/s0/model.binvox is not a valid .binvox file",
        f"{root}/chair/s1/views/cameras.json is not valid JSON",
        f"{root}/table/s0/views/cameras.json: an elevation of 90",
        "view 1: 'image' must be a file name",
        f"{root}/table/s2/views/01.png named in cameras.json is missing",
    ):
        assert problem in text, (problem, text)
    with pytest.raises(GenlabError, match="is not a folder"):
        ShapeNetVoxels(root=str(tmp_path / "nowhere")).setup()


def test_a_view_image_that_does_not_decode_is_named(tmp_path):
    root = tmp_path / "shapenet"
    small_layout(root)
    (root / "chair" / "s0" / "views" / "00.png").write_bytes(b"not a png")
    dm = ShapeNetVoxels(
        root=str(root),
        size=16,
        image_size=16,
        condition="rgb",
        val_fraction=0.0,
        test_fraction=0.0,
    )
    dm.setup()
    with pytest.raises(GenlabError, match=f"the view image {root}/chair/s0/views/00.png"):
        dm.dataset("train")[0]
