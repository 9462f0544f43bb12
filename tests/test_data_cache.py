"""The decode-once cache of celeba and image_folder: the same pixels as decoding every file,
rebuilt when the files or the resolution change, never used half-built or damaged."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, make_cfg
from datafiles import CELEBA_ATTRS, write_celeba, write_image_folder
from PIL import Image

from genlab.data import CelebA, ImageFolder
from genlab.data import cache as cache_module
from genlab.data.cache import CachedImages
from genlab.data.datamodules import TensorBatches


def all_batches(dm, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    loader = getattr(dm, f"{split}_dataloader")()
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def folder_with_jpegs_and_pngs(root: Path) -> Path:
    """Two class folders of PNGs (40x30) plus JPEGs of another size and a grey PNG."""
    write_image_folder(root, ["cats", "dogs"], per_class=12, size=(40, 30))
    rng = np.random.default_rng(1)
    for i in range(6):
        pixels = rng.integers(0, 256, size=(218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "dogs" / f"photo_{i}.jpg", quality=85)
    Image.fromarray(rng.integers(0, 256, size=(33, 47), dtype=np.uint8)).save(
        root / "cats" / "grey.png"
    )
    return root


def folder(tmp_path: Path, **kwargs) -> ImageFolder:
    options = dict(path=str(tmp_path / "imgs"), image_size=16, channels=3, batch_size=8)
    options.update(kwargs)
    dm = ImageFolder(**options)
    dm.prepare_data()
    dm.setup()
    return dm


def cache_folders(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if ".tmp-" not in p.name)


@pytest.mark.parametrize("channels", [3, 1])
def test_cached_pixels_equal_decoding_every_file(tmp_path, channels):
    """Every split, batch for batch (the training order too): the cached images served on the
    device and through a DataLoader equal the DataLoader path that decodes each file."""
    folder_with_jpegs_and_pngs(tmp_path / "imgs")
    files = folder(tmp_path, channels=channels)
    cached = folder(
        tmp_path,
        channels=channels,
        cache=True,
        cache_dir=str(tmp_path / "c"),
        device_resident=True,
    )
    mapped = folder(tmp_path, channels=channels, cache=True, cache_dir=str(tmp_path / "c"))
    assert isinstance(cached.train_dataloader(), TensorBatches)
    for split in ("train", "val", "test"):
        x, y = all_batches(files, split)
        assert x.shape[1:] == (channels, 16, 16) and len(x) > 0
        for other in (cached, mapped):
            x2, y2 = all_batches(other, split)
            assert torch.equal(x, x2), split
            assert torch.equal(y, y2), split
    assert set(all_batches(files, "train")[1].tolist()) == {0, 1}
    assert cached.classes == files.classes == ["cats", "dogs"] and cached.num_classes == 2
    assert len(cache_folders(tmp_path / "c")) == 1


def test_celeba_cache_pixels_attributes_and_reuse(tmp_path):
    attrs = write_celeba(tmp_path, n=12)
    common = dict(data_dir=str(tmp_path), download=False, image_size=32, channels=3, batch_size=2)
    files = CelebA(**common)
    files.prepare_data()
    files.setup()
    cached = CelebA(**common, cache=True, device_resident=True)
    cached.prepare_data()
    cached.setup()
    for split in ("train", "val", "test"):
        x, y = all_batches(files, split)
        x2, y2 = all_batches(cached, split)
        assert torch.equal(x, x2) and torch.equal(y, y2)
    # the official partition (index mod 3) and the attributes in {0, 1}
    _, y_val = all_batches(cached, "val")
    assert torch.equal(y_val, torch.from_numpy((attrs[1::3] + 1) // 2))
    assert cached.attr_names == CELEBA_ATTRS
    (folder_,) = cache_folders(tmp_path / ".cache" / "genlab_images")
    stamp = (folder_ / "images.npy").stat().st_mtime_ns
    again = CelebA(**common, cache=True)
    again.setup()  # a valid cache is read, not rebuilt: labels and names come from it
    assert (folder_ / "images.npy").stat().st_mtime_ns == stamp
    assert again.attr_names == CELEBA_ATTRS
    assert torch.equal(all_batches(again, "test")[1], all_batches(files, "test")[1])
    manifest = json.loads((folder_ / "manifest.json").read_text())
    assert manifest["shape"] == [12, 3, 32, 32] and manifest["bad"] == {}


def test_changed_added_removed_files_and_another_size_rebuild(tmp_path):
    write_image_folder(tmp_path / "imgs", None, per_class=20, size=(24, 24))
    cache_dir = tmp_path / "c"
    opts = dict(cache=True, cache_dir=str(cache_dir))

    def images(dm):
        return dm.splits["train"].base.images  # the whole cached array, in file order

    first = folder(tmp_path, **opts)
    assert len(images(first)) == 20
    # a changed file: new pixels (the size and mtime change with them)
    target = tmp_path / "imgs" / "img_005.png"
    Image.fromarray(np.full((24, 24, 3), 7, dtype=np.uint8)).save(target)
    changed = folder(tmp_path, **opts)
    assert torch.equal(images(changed)[5], torch.full((3, 16, 16), 7, dtype=torch.uint8))
    assert not torch.equal(images(first)[5], images(changed)[5])
    # an added and a removed file
    Image.fromarray(np.full((24, 24, 3), 200, dtype=np.uint8)).save(
        tmp_path / "imgs" / "img_999.png"
    )
    assert len(images(folder(tmp_path, **opts))) == 21
    (tmp_path / "imgs" / "img_000.png").unlink()
    smaller = folder(tmp_path, **opts)
    assert len(images(smaller)) == 20
    assert torch.equal(images(smaller)[-1], torch.full((3, 16, 16), 200, dtype=torch.uint8))
    assert len(cache_folders(cache_dir)) == 1  # rebuilt in place
    # another resolution is another cache, and the first stays
    assert images(folder(tmp_path, image_size=8, **opts)).shape[1:] == (3, 8, 8)
    assert len(cache_folders(cache_dir)) == 2
    assert not list(cache_dir.glob("*.tmp-*")) and not list(cache_dir.glob("*.old-*"))


@pytest.mark.parametrize("damage", ["truncated_array", "garbage_manifest", "no_manifest"])
def test_damaged_cache_is_rebuilt_not_used(tmp_path, damage):
    write_image_folder(tmp_path / "imgs", None, per_class=12, size=(24, 24))
    opts = dict(cache=True, cache_dir=str(tmp_path / "c"), device_resident=True)
    good = all_batches(folder(tmp_path, **opts), "test")[0]
    (built,) = cache_folders(tmp_path / "c")
    array = built / "images.npy"
    if damage == "truncated_array":
        with open(array, "r+b") as f:
            f.truncate(array.stat().st_size // 2)
    elif damage == "garbage_manifest":
        (built / "manifest.json").write_text("{not json")
    else:
        (built / "manifest.json").unlink()
    assert torch.equal(all_batches(folder(tmp_path, **opts), "test")[0], good)
    assert json.loads((built / "manifest.json").read_text())["shape"] == [12, 3, 16, 16]
    assert array.stat().st_size > 12 * 3 * 16 * 16


def build_cache_of(path: Path, cache_dir: Path) -> None:
    ImageFolder(
        path=str(path), image_size=16, channels=3, cache=True, cache_dir=str(cache_dir)
    ).prepare_data()


def test_a_build_killed_half_way_leaves_no_cache_to_use(tmp_path):
    """A process killed while it decodes leaves only its temporary folder; the next build
    removes it and builds a complete cache."""
    # 600 copies of one 300x300 JPEG: a build of a second or more
    (tmp_path / "imgs").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "imgs" / "0000.jpg", quality=95)
    data = (tmp_path / "imgs" / "0000.jpg").read_bytes()
    for i in range(1, 600):
        (tmp_path / "imgs" / f"{i:04d}.jpg").write_bytes(data)
    cache_dir = tmp_path / "c"
    # a forked child starts at once (a fresh interpreter would spend seconds importing torch)
    proc = multiprocessing.get_context("fork").Process(
        target=build_cache_of, args=(tmp_path / "imgs", cache_dir)
    )
    proc.start()
    deadline = time.time() + 60
    while not (cache_dir.exists() and list(cache_dir.glob("*.tmp-*"))):
        assert proc.is_alive() and time.time() < deadline, "the build never started"
        time.sleep(0.01)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert cache_folders(cache_dir) == []  # nothing at the final name
    assert len(list(cache_dir.glob("*.tmp-*"))) == 1
    dm = folder(tmp_path, cache=True, cache_dir=str(cache_dir))
    assert len(dm.splits["train"].base.images) == 600
    assert not list(cache_dir.glob("*.tmp-*"))  # the dead build's leftovers are gone


def test_unwritable_cache_dir_decodes_into_memory_with_a_warning(tmp_path, caplog):
    write_image_folder(tmp_path / "imgs", None, per_class=12, size=(24, 24))
    blocker = tmp_path / "a_file"
    blocker.write_text("the cache folder would have to be inside this file")
    files = all_batches(folder(tmp_path), "val")[0]
    with caplog.at_level(logging.WARNING, logger="genlab.data.cache"):
        dm = folder(tmp_path, cache=True, cache_dir=str(blocker / "cache"), device_resident=True)
    assert "cannot be written to" in caplog.text and "data.cache_dir" in caplog.text
    assert dm.splits["val"].base.path is None  # held in memory, nothing on disk
    assert torch.equal(all_batches(dm, "val")[0], files)


def test_images_that_do_not_fit_the_device_are_served_by_a_dataloader(
    tmp_path, monkeypatch, caplog
):
    write_image_folder(tmp_path / "imgs", None, per_class=12, size=(24, 24))
    expected = all_batches(folder(tmp_path), "train")[0]
    monkeypatch.setattr(cache_module, "RESIDENT_FRACTION", 0.0)  # nothing fits
    dm = folder(tmp_path, cache=True, cache_dir=str(tmp_path / "c"), device_resident=True)
    with caplog.at_level(logging.WARNING, logger="genlab.data.cache"):
        loader = dm.train_dataloader()
    assert not isinstance(loader, TensorBatches) and not dm.device_resident
    assert "do not fit" in caplog.text
    assert torch.equal(torch.cat([x for x, _ in loader]), expected)


def test_dataloader_workers_map_the_cache_file_themselves(tmp_path):
    write_image_folder(tmp_path / "imgs", None, per_class=30, size=(24, 24))
    opts = dict(cache=True, cache_dir=str(tmp_path / "c"))
    expected = all_batches(folder(tmp_path, **opts), "val")[0]
    dm = folder(tmp_path, **opts, num_workers=2)
    full = dm.splits["val"].base
    assert isinstance(full, CachedImages)
    assert len(pickle.dumps(full)) < 4096  # the path, not the pixels
    assert torch.equal(pickle.loads(pickle.dumps(full)).images, full.images)
    assert torch.equal(all_batches(dm, "val")[0], expected)


def test_device_resident_without_the_cache_is_refused(tmp_path):
    from genlab.utils.errors import GenlabError

    with pytest.raises(GenlabError, match=r"data.device_resident=true needs data.cache=true"):
        ImageFolder(path=str(tmp_path), image_size=8, channels=3, device_resident=True)


def test_training_from_the_cache_through_the_config(tmp_path):
    """data=image_folder as a user runs it: the config turns the cache on, the images are
    decoded into paths.data_dir/.cache/genlab_images and training reads them on the device."""
    from genlab.train import train

    write_image_folder(tmp_path / "imgs", ["a", "b"], per_class=40, size=(20, 20))
    cfg = make_cfg(
        tmp_path,
        *FAST,
        "data=image_folder",
        f"data.path={tmp_path / 'imgs'}",
        "data.image_size=28",
        "data.channels=1",
        "data.batch_size=16",
        "test=false",
    )
    assert cfg.data.cache is True and cfg.data.device_resident is True
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["global_step"] == 8
    (built,) = cache_folders(tmp_path / "data" / ".cache" / "genlab_images")
    assert json.loads((built / "manifest.json").read_text())["shape"] == [80, 1, 28, 28]
