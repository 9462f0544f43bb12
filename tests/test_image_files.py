"""Bad image files and too-small folders are reported before training (issue 13, item 10):
a truncated JPEG (real bytes, cut) is found up front, with or without the cache, or skipped
everywhere under data.on_bad_file=skip; a folder too small for its splits is an error."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, make_cfg, run_cli, run_dirs
from datafiles import write_celeba, write_image_folder
from PIL import Image

from genlab.data import CelebA, ImageFolder
from genlab.utils.errors import GenlabError


def truncate(path: Path) -> None:
    """Cut a real JPEG in half: its header still parses (Image.verify passes), its pixels do
    not decode."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def folder_with_a_truncated_jpeg(root: Path, n: int = 20) -> Path:
    write_image_folder(root, None, per_class=n, size=(32, 32))
    pixels = np.random.default_rng(3).integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    bad = root / "cut.jpg"
    Image.fromarray(pixels).save(bad, quality=90)
    truncate(bad)
    with Image.open(bad) as im:
        im.verify()  # what the old up-front check did: it passes
    return bad


@pytest.mark.parametrize("cache", [False, True])
def test_a_truncated_jpeg_is_named_before_training(tmp_path, cache):
    bad = folder_with_a_truncated_jpeg(tmp_path / "imgs")
    dm = ImageFolder(
        path=str(tmp_path / "imgs"),
        image_size=8,
        channels=3,
        cache=cache,
        cache_dir=str(tmp_path / "c"),
    )
    with pytest.raises(GenlabError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert f"{bad}  (OSError: image file is truncated" in msg
    assert (
        msg.startswith(f"data.path={str(tmp_path / 'imgs')!r}: 1 image file(s) cannot be")
        and "data.on_bad_file=skip" in msg
    )


@pytest.mark.parametrize("cache", [False, True])
def test_skip_leaves_the_truncated_jpeg_out_everywhere(tmp_path, cache, caplog):
    bad = folder_with_a_truncated_jpeg(tmp_path / "imgs")
    dm = ImageFolder(
        path=str(tmp_path / "imgs"),
        image_size=8,
        channels=3,
        batch_size=4,
        num_workers=2,
        on_bad_file="skip",
        cache=cache,
        cache_dir=str(tmp_path / "c"),
    )
    dm.prepare_data()
    dm.setup()
    assert "skipping 1 image(s)" in caplog.text and str(bad) in caplog.text
    assert sum(len(v) for v in dm.splits.values()) == 20
    seen = sum(
        len(x)
        for split in ("train", "val", "test")
        for x, _ in getattr(dm, f"{split}_dataloader")()
    )
    assert seen == 16 + 2 + 2  # every batch through 2 worker processes, no error


def test_a_file_damaged_after_the_check_is_skipped_or_named_when_read(tmp_path):
    """The DataLoader path decodes each file again when it reads it: a file cut after the
    check is replaced by the next one with a warning under skip, else named in the error."""
    write_image_folder(tmp_path / "imgs", None, per_class=20, size=(32, 32))
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    late = tmp_path / "imgs" / "img_010.png"
    Image.fromarray(pixels).save(late.with_suffix(".jpg"), quality=90)
    late.unlink()
    late = late.with_suffix(".jpg")
    skipping = ImageFolder(
        path=str(tmp_path / "imgs"), image_size=8, channels=3, on_bad_file="skip"
    )
    strict = ImageFolder(path=str(tmp_path / "imgs"), image_size=8, channels=3)
    skipping.setup()
    strict.setup()
    full = skipping.splits["train"].base
    i = full.paths.index(str(late))
    expected_next = full[i + 1][0]
    truncate(late)
    with pytest.warns(UserWarning, match=r"skipping image .*img_010\.jpg"):
        x, _ = full[i]
    assert torch.equal(x, expected_next)
    with pytest.raises(GenlabError, match=r"img_010\.jpg.*could not be decoded.*on_bad_file=skip"):
        strict.splits["train"].base[i]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(list(skipping.train_dataloader())) == len(skipping.train_dataloader())


def test_celeba_names_a_truncated_jpeg(tmp_path):
    write_celeba(tmp_path, n=9)
    bad = tmp_path / "celeba" / "img_align_celeba" / "000004.jpg"
    truncate(bad)
    for cache in (False, True):
        dm = CelebA(data_dir=str(tmp_path), download=False, image_size=16, channels=3, cache=cache)
        with pytest.raises(
            GenlabError,
            match=rf"celeba \(data.data_dir='{tmp_path}'\): 1 image file.*\n  {bad}  \(OSError",
        ):
            dm.prepare_data()
    skipping = CelebA(
        data_dir=str(tmp_path), download=False, image_size=16, channels=3, on_bad_file="skip"
    )
    skipping.setup()  # image 4 (index 3) was in the train partition (index mod 3 == 0)
    assert {k: len(v) for k, v in skipping.splits.items()} == {"train": 2, "val": 3, "test": 3}


def test_three_images_are_too_few_for_the_default_splits(tmp_path):
    write_image_folder(tmp_path / "three", None, per_class=3)
    dm = ImageFolder(path=str(tmp_path / "three"), image_size=8, channels=3)
    with pytest.raises(GenlabError) as err:
        dm.setup()
    assert str(err.value) == (
        f"data.path={str(tmp_path / 'three')!r} has 3 usable image(s): with "
        "data.val_fraction=0.1 and data.test_fraction=0.1 the splits get 3 train, 0 val, "
        "0 test image(s), so the val and test splits would be empty (no metrics from them). "
        "Add images (at least 7 in all), raise the fraction(s), or set the fraction of a "
        "split you do not want to 0 (data.val_fraction=0; data.test_fraction=0 with test=false)."
    )
    # the minimum it names is enough, one fewer is not
    write_image_folder(tmp_path / "seven", None, per_class=7)
    ok = ImageFolder(path=str(tmp_path / "seven"), image_size=8, channels=3)
    ok.setup()
    assert {k: len(v) for k, v in ok.splits.items()} == {"train": 5, "val": 1, "test": 1}
    write_image_folder(tmp_path / "six", None, per_class=6)
    with pytest.raises(GenlabError, match="has 6 usable.*so the val split would be empty"):
        ImageFolder(path=str(tmp_path / "six"), image_size=8, channels=3).setup()
    # asking for no validation and no test split is allowed
    none = ImageFolder(
        path=str(tmp_path / "three"), image_size=8, channels=3, val_fraction=0, test_fraction=0
    )
    none.setup()
    assert {k: len(v) for k, v in none.splits.items()} == {"train": 3, "val": 0, "test": 0}


@pytest.mark.slow
def test_cli_reports_bad_files_and_small_folders_in_one_paragraph(tmp_path):
    """Before: a traceback from a DataLoader worker after training. Now: exit status 2, one
    paragraph naming the file or the options, no run started."""
    bad = folder_with_a_truncated_jpeg(tmp_path / "imgs")
    write_image_folder(tmp_path / "three", None, per_class=3)
    common = ["data=image_folder", *FAST, "data.num_workers=2", "logger=csv"]
    for path, expected in ((tmp_path / "imgs", str(bad)), (tmp_path / "three", "val_fraction")):
        proc = run_cli(*common, f"data.path={path}", cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "genlab: error:" in proc.stderr and expected in proc.stderr
        assert "Traceback" not in proc.stderr
        for run in run_dirs(tmp_path):
            assert not (run / "checkpoints").exists()
            summary = run / "summary.json"
            assert not summary.exists() or json.loads(summary.read_text())["status"] != "running"


def test_training_skips_the_truncated_jpeg_through_the_config(tmp_path):
    from genlab.train import train

    folder_with_a_truncated_jpeg(tmp_path / "imgs", n=40)
    cfg = make_cfg(
        tmp_path,
        *FAST,
        "data=image_folder",
        f"data.path={tmp_path / 'imgs'}",
        "data.on_bad_file=skip",
        "data.image_size=28",
        "data.channels=1",
        "data.batch_size=8",
        "data.num_workers=0",
    )
    summary = train(cfg)
    assert summary["status"] == "completed" and "test/loss" in summary["metrics"]
