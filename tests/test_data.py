"""Every datamodule on files written in the real on-disk formats, through torchvision's loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_cfg
from datafiles import CELEBA_ATTRS, write_celeba, write_cifar10, write_image_folder, write_mnist
from hydra.utils import instantiate
from PIL import Image

from genlab.data import CIFAR10, CelebA, ImageFolder, MNIST5k, TorchvisionMNIST
from genlab.utils.errors import GenlabError


def batch(dm, split="train"):
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}
    return next(iter(loader[split]()))


def test_mnist_5k_split_is_deterministic_and_disjoint():
    a, b = MNIST5k(image_size=28, channels=1), MNIST5k(image_size=28, channels=1)
    a.setup(), b.setup()
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 4000, "val": 500, "test": 500}

    def fingerprint(dm, s):
        return torch.stack([dm.dataset(s)[i][0] for i in range(0, 500, 50)])

    for split in ("train", "val", "test"):
        assert torch.equal(fingerprint(a, split), fingerprint(b, split))
    # no image appears in two splits
    flat = {
        s: {a.dataset(s)[i][0].flatten().numpy().tobytes() for i in range(len(a.dataset(s)))}
        for s in a.splits
    }
    assert not flat["train"] & flat["test"] and not flat["train"] & flat["val"]
    x, y = batch(a)
    assert x.shape == (128, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.9
    assert y.dtype == torch.long and set(y.tolist()) <= set(range(10))
    assert a.image_shape == (1, 28, 28) and a.num_classes == 10


def test_mnist_5k_resizes_and_converts_channels():
    dm = MNIST5k(image_size=32, channels=3, batch_size=8)
    x, _ = batch(dm, "val")
    assert x.shape == (8, 3, 32, 32) and torch.equal(x[:, 0], x[:, 1])


@pytest.mark.parametrize("size", [32, 16])
def test_array_data_resize_matches_pil_bilinear(tmp_path, size):
    """data.image_size resizes with antialiased bilinear filtering: PIL's bilinear resize of
    the same file pixels (a triangle filter as wide as the scale when shrinking) within one
    grey level; data.channels=3 repeats the grey channel."""
    written = write_mnist(tmp_path)
    dm = TorchvisionMNIST(
        data_dir=str(tmp_path), download=False, image_size=size, channels=3, val_fraction=0.2
    )
    dm.prepare_data()
    dm.setup()
    images, _ = written["t10k"]
    for i in range(len(images)):
        x, _ = dm.dataset("test")[i]
        assert x.shape == (3, size, size)
        assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])
        want = Image.fromarray(images[i]).resize((size, size), Image.BILINEAR)
        want = torch.from_numpy(np.array(want)).float() / 255
        assert (x[0] - want).abs().max() <= 1 / 255 + 1e-6, i


def test_binarization_static_is_fixed_dynamic_is_fresh():
    static = MNIST5k(image_size=28, channels=1, binarize="static")
    dynamic = MNIST5k(image_size=28, channels=1, binarize="dynamic")
    static.setup(), dynamic.setup()
    s1, s2 = static.dataset("train")[3][0], static.dataset("train")[3][0]
    d1, d2 = dynamic.dataset("train")[3][0], dynamic.dataset("train")[3][0]
    assert set(s1.unique().tolist()) <= {0.0, 1.0} and torch.equal(s1, s2)
    assert set(d1.unique().tolist()) <= {0.0, 1.0} and not torch.equal(d1, d2)
    # evaluation splits are always a fixed draw, so test numbers are comparable
    assert torch.equal(dynamic.dataset("test")[0][0], dynamic.dataset("test")[0][0])


@pytest.mark.parametrize("variant,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_mnist_reads_idx_files(tmp_path, variant, folder):
    written = write_mnist(tmp_path, folder)
    dm = TorchvisionMNIST(
        variant=variant,
        data_dir=str(tmp_path),
        download=False,
        image_size=28,
        channels=1,
        val_fraction=0.2,
        batch_size=4,
    )
    dm.prepare_data()
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 48, "val": 12, "test": 20}
    x, y = dm.dataset("test")[7]
    images, labels = written["t10k"]
    assert torch.equal((x[0] * 255).round().to(torch.uint8), torch.from_numpy(images[7]))
    assert int(y) == int(labels[7])


def test_missing_mnist_names_the_files(tmp_path):
    dm = TorchvisionMNIST(data_dir=str(tmp_path), download=False, image_size=28, channels=1)
    with pytest.raises(GenlabError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in msg and "download" in msg


def test_cifar10_reads_pickles(tmp_path, monkeypatch):
    """Random batches in CIFAR-10's format: refused by default (not the official files), read
    with check_md5=false, pixel for pixel and label for label."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    batches = write_cifar10(tmp_path)
    with pytest.raises(GenlabError, match="data_batch_1"):
        CIFAR10(data_dir=str(tmp_path), download=False, image_size=32, channels=3).prepare_data()
    dm = CIFAR10(
        data_dir=str(tmp_path),
        download=False,
        check_md5=False,
        image_size=32,
        channels=3,
        batch_size=5,
    )
    dm.prepare_data()
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 45, "val": 5, "test": 10}
    x, y = dm.dataset("test")[2]
    data, labels = batches["test_batch"]
    expected = torch.from_numpy(data[2].reshape(3, 32, 32))
    assert x.shape == (3, 32, 32) and torch.equal((x * 255).round().to(torch.uint8), expected)
    assert int(y) == labels[2]


def resized_and_cropped(path, size: int, mode: str = "RGB") -> torch.Tensor:
    """What the file datasets promise, computed with PIL alone: the short side resized to
    `size` (bilinear), the long side scaled in proportion (rounded down), then the central
    size x size square (torchvision's rounding of the offset): (c, size, size) in [0, 1]."""
    image = Image.open(path).convert(mode)
    w, h = image.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    image = image.resize(new, Image.BILINEAR)
    left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    pixels = np.array(image.crop((left, top, left + size, top + size)), dtype=np.float32)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    return torch.from_numpy(pixels).permute(2, 0, 1) / 255


def test_celeba_layout_crop_and_attributes(tmp_path):
    attrs = write_celeba(tmp_path, n=12)
    dm = CelebA(data_dir=str(tmp_path), download=False, image_size=64, channels=3, batch_size=2)
    dm.prepare_data()
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 4, "val": 4, "test": 4}
    assert dm.attr_names == CELEBA_ATTRS
    images = tmp_path / "celeba" / "img_align_celeba"
    # partition i % 3: val holds images 2, 5, 8, 11 (000002.jpg ...), in file order;
    # each a 178x218 face resized to 64x78 and cropped to rows 7..70
    for k, index in enumerate((1, 4, 7, 10)):
        x, y = dm.dataset("val")[k]
        want = resized_and_cropped(images / f"{index + 1:06d}.jpg", 64)
        assert x.shape == (3, 64, 64) and (x - want).abs().max() <= 1 / 255 + 1e-6
        assert torch.equal(y, torch.from_numpy((attrs[index] + 1) // 2))
    xb, yb = batch(dm)
    assert xb.shape == (2, 3, 64, 64) and yb.shape == (2, 40)


def test_missing_celeba_explains_where_files_go(tmp_path):
    dm = CelebA(data_dir=str(tmp_path), download=False, image_size=64, channels=3)
    with pytest.raises(GenlabError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert str(tmp_path / "celeba" / "img_align_celeba") in msg
    assert "list_attr_celeba.txt" in msg and "data.data_dir" in msg


def items_to_files(dm, expected: dict) -> dict:
    """Match every item of every split to the file whose independently computed pixels it
    carries; {file: (split, label)}. Random pixels make each image unique."""
    found = {}
    for split in ("train", "val", "test"):
        data = dm.dataset(split)
        for i in range(len(data)):
            x, y = data[i]
            (name,) = [f for f, want in expected.items() if (x - want).abs().max() <= 1e-6]
            assert name not in found
            found[name] = (split, int(y))
    return found


def test_image_folder_with_class_subfolders(tmp_path):
    """Labels are the indices of the sorted class folders; pixels are PIL's resize of the
    short side (40x30 -> 21x16) and the central 16x16 square."""
    root = tmp_path / "imgs"
    write_image_folder(root, ["owls", "cats", "dogs"], per_class=10)
    dm = ImageFolder(path=str(root), image_size=16, channels=3, batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert dm.num_classes == 3 and dm.classes == ["cats", "dogs", "owls"]
    files = sorted(root.glob("*/*.png"))
    expected = {f: resized_and_cropped(f, 16) for f in files}
    found = items_to_files(dm, expected)
    assert set(found) == set(files)  # every file once, in exactly one split
    assert {f: label for f, (_, label) in found.items()} == {
        f: ["cats", "dogs", "owls"].index(f.parent.name) for f in files
    }
    assert sorted(split for split, _ in found.values()).count("test") == 3
    x, y = batch(dm)
    assert x.shape == (4, 3, 16, 16) and set(y.tolist()) <= {0, 1, 2}


def test_image_folder_flat_grey(tmp_path):
    """channels=1 converts to grey with the ITU-R 601 luma weights (0.299 R + 0.587 G +
    0.114 B, computed here with numpy); at image_size=30 a 40x30 image is only cropped, to its
    central 30 columns (5..34); a flat folder labels every image 0."""
    write_image_folder(tmp_path / "flat", None, per_class=10)
    dm = ImageFolder(path=str(tmp_path / "flat"), image_size=30, channels=1, batch_size=3)
    dm.prepare_data()
    dm.setup()
    expected = {}
    for f in sorted((tmp_path / "flat").glob("*.png")):
        rgb = np.array(Image.open(f), dtype=np.float64)  # (30, 40, 3)
        luma = rgb @ np.array([0.299, 0.587, 0.114])
        expected[f] = torch.from_numpy(luma[None, :, 5:35]).float() / 255
    found = {}
    for split in ("train", "val", "test"):
        data = dm.dataset(split)
        for i in range(len(data)):
            x, y = data[i]
            assert x.shape == (1, 30, 30) and int(y) == 0
            match = [f for f, want in expected.items() if (x - want).abs().max() <= 1 / 255]
            assert len(match) == 1
            found[match[0]] = split
    assert set(found) == set(expected)
    x, y = batch(dm)
    assert x.shape == (3, 1, 30, 30) and set(y.tolist()) == {0}


def test_image_folder_unreadable_file_error_or_skip(tmp_path):
    write_image_folder(tmp_path / "f", None, per_class=10)
    bad = tmp_path / "f" / "broken.png"
    bad.write_bytes(b"this is not a png")
    dm = ImageFolder(path=str(tmp_path / "f"), image_size=8, channels=3)
    with pytest.raises(GenlabError) as err:
        dm.setup()
    assert str(bad) in str(err.value) and "on_bad_file=skip" in str(err.value)
    skipping = ImageFolder(path=str(tmp_path / "f"), image_size=8, channels=3, on_bad_file="skip")
    skipping.setup()
    assert sum(len(v) for v in skipping.splits.values()) == 10


@pytest.mark.parametrize(
    "data", ["mnist_5k", "mnist", "fashion_mnist", "cifar10", "celeba", "image_folder"]
)
def test_every_data_config_instantiates_and_sizes_nets(tmp_path, data):
    cfg = (
        make_cfg(tmp_path, f"data={data}", "data.path=/nonexistent")
        if data == "image_folder"
        else make_cfg(tmp_path, f"data={data}")
    )
    dm = instantiate(cfg.data)
    assert dm.image_shape == (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    model = instantiate(cfg.model)
    x = torch.rand(2, *dm.image_shape)
    assert model.reconstruct(x).shape == x.shape


def test_device_resident_batches_equal_the_dataloader_path():
    resident = MNIST5k(image_size=28, channels=1, batch_size=64, device_resident=True)
    loader = MNIST5k(image_size=28, channels=1, batch_size=64, device_resident=False)
    for split in ("val", "test"):
        a = torch.cat([x for x, _ in getattr(resident, f"{split}_dataloader")()])
        b = torch.cat([x for x, _ in getattr(loader, f"{split}_dataloader")()])
        assert torch.equal(a, b)  # the same images, in the same order, same [0, 1] values


def test_device_resident_shuffle_is_per_epoch_and_sharded():
    from genlab.data.datamodules import TensorBatches, materialize

    dm = MNIST5k(image_size=28, channels=1)
    images, labels, _ = materialize(dm.dataset("train"))
    epoch = {"e": 0}

    def batches(rank=0, world=1):
        tb = TensorBatches(
            images,
            labels,
            batch_size=100,
            shuffle=True,
            seed=3,
            epoch=lambda: epoch["e"],
            rank=rank,
            world_size=world,
        )
        return torch.cat([y for _, y in tb]), torch.cat([x for x, _ in tb])

    y0, x0 = batches()
    assert len(x0) == 4000 and torch.equal(torch.sort(y0).values, torch.sort(labels).values)
    assert torch.equal(batches()[1], x0)  # same (seed, epoch): same order, as after a resume
    epoch["e"] = 1
    assert not torch.equal(batches()[1], x0)
    r0, r1 = batches(0, 2)[1], batches(1, 2)[1]
    assert len(r0) == len(r1) == 2000
    # disjoint shards: no image of one is an image of the other (rows compared as bytes, not
    # as a 2000 x 2000 x 784 comparison)
    assert not {r.numpy().tobytes() for r in r0.flatten(1)} & {
        r.numpy().tobytes() for r in r1.flatten(1)
    }


def test_device_resident_dynamic_binarization_and_flips():
    dm = MNIST5k(
        image_size=28, channels=1, batch_size=50, binarize="dynamic", device_resident=True
    )
    x1, _ = next(iter(dm.train_dataloader()))
    x2, _ = next(iter(dm.train_dataloader()))
    assert set(x1.unique().tolist()) <= {0.0, 1.0} and not torch.equal(x1, x2)
    flips = MNIST5k(image_size=28, channels=1, batch_size=500, hflip=True, device_resident=True)
    plain = MNIST5k(image_size=28, channels=1, batch_size=500, device_resident=True)
    xf, _ = next(iter(flips.train_dataloader()))
    xp, _ = next(iter(plain.train_dataloader()))
    flipped = (xf != xp).flatten(1).any(1)
    assert 0.3 < flipped.float().mean() < 0.7
    assert torch.equal(xf[flipped], xp[flipped].flip(-1))
