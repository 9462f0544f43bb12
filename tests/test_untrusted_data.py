"""Every dataset file and image genlab reads is untrusted (issue 34, the data half): each test
plants a hostile file for real (a pickle that runs code, an EPS named .png, a link loop, a
decompression bomb, a full disk, malformed lists and headers, 16-bit and float images) and
checks that genlab reads it as data or refuses it in one paragraph naming it.

Each test failed on the code before the fix (main 5c18468, run against it with this file):
noted in its docstring as "Before:"."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg
from datafiles import (
    write_ab_images,
    write_celeba,
    write_cifar10,
    write_eps,
    write_flat_png,
    write_idx,
    write_image_folder,
    write_mnist,
    write_pair_folders,
    write_planted_cifar_batch,
)
from PIL import Image

from genlab.data import CIFAR10, CelebA, ImageFolder, PairedImages, TorchvisionMNIST
from genlab.utils.errors import GenlabError

SMALL = {"image_size": 8, "channels": 3, "val_fraction": 0.0, "test_fraction": 0.0}


def python(script: str, *args: str, env=None, timeout: float = 120, **kwargs):
    """Run a Python script in a fresh interpreter (what a run would be), return the process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


# --- 3. CIFAR-10 pickles ---------------------------------------------------------------------
@pytest.mark.parametrize("check_md5", [True, False])
def test_a_planted_cifar_batch_never_runs_its_code(tmp_path, monkeypatch, check_md5):
    """A data_batch_1 whose pickle calls os.mkdir(marker), with data.download=false: refused
    naming the file (by its MD5, or, with check_md5=false, by the unpickler that builds only
    arrays and plain values), and the marker never appears.
    Before: the MD5 check was off with download=false and torchvision's pickle.load ran the
    call (the marker appeared, then a TypeError traceback)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    planted = write_planted_cifar_batch(tmp_path, marker)
    options = {} if check_md5 else {"check_md5": False}
    dm = CIFAR10(data_dir=str(tmp_path), download=False, image_size=32, channels=3, **options)
    with pytest.raises(Exception) as err:
        dm.prepare_data()
        dm.setup()
    assert not marker.exists()
    assert err.type is GenlabError and str(planted) in str(err.value)
    assert ("MD5" in str(err.value)) == check_md5
    if not check_md5:
        assert "posix.mkdir, which is code, not data" in str(err.value)


def test_official_md5_is_checked_once_per_file_version(tmp_path, monkeypatch):
    """Files whose MD5 is the official one are read (through the restricted unpickler, pixel
    for pixel); the MD5 of an unchanged file comes from genlab's record in the user's cache,
    a changed one (same size, mtime set back) is hashed again and refused.
    Before: no MD5 check without download, no record (genlab.data.cifar.file_md5s)."""
    from genlab.data import cifar

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    batches = write_cifar10(tmp_path / "data")
    base = tmp_path / "data" / "cifar-10-batches-py"
    # the files written here play the official ones: their MD5s are the expected ones
    official = {f: hashlib.md5((base / f).read_bytes()).hexdigest() for f in batches}
    monkeypatch.setattr(cifar, "OFFICIAL_MD5", official)
    dm = CIFAR10(data_dir=str(tmp_path / "data"), download=False, image_size=32, channels=3)
    dm.prepare_data()
    dm.setup()
    x, y = dm.dataset("test")[3]
    data, labels = batches["test_batch"]
    assert torch.equal((x * 255).round().byte(), torch.from_numpy(data[3].reshape(3, 32, 32)))
    assert int(y) == labels[3]

    record = tmp_path / "cache" / "genlab" / "verified_files.json"
    known = json.loads(record.read_text())
    first = str((base / "data_batch_1").resolve())
    assert known[first]["md5"] == official["data_batch_1"]
    # the record is what later starts read: a recorded MD5 for this very file version is used
    # without hashing (shown by planting a wrong one)
    known[first]["md5"] = "0" * 32
    record.write_text(json.dumps(known))
    cifar._HASHED.clear()
    assert cifar.file_md5s([first])[first] == "0" * 32
    # a changed file (same size, mtime set back) is hashed again
    st = os.stat(first)
    raw = bytearray(Path(first).read_bytes())
    raw[-20] ^= 0xFF
    Path(first).write_bytes(bytes(raw))
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cifar.file_md5s([first])[first] == hashlib.md5(raw).hexdigest()
    with pytest.raises(GenlabError, match="data_batch_1"):
        CIFAR10(data_dir=str(tmp_path / "data"), download=False, image_size=32, channels=3).setup()


# --- 6. formats ------------------------------------------------------------------------------
GHOSTSCRIPT_SCRIPT = """
    import sys
    from pathlib import Path
    from genlab.analysis.translate_folder import load_image
    from genlab.data import ImageFolder, PairedImages
    from genlab.utils.errors import GenlabError

    root = Path(sys.argv[1])
    small = dict(image_size=8, channels=3, val_fraction=0.0, test_fraction=0.0)
    readers = {
        "image_folder": lambda: ImageFolder(path=str(root / "folder"), cache=False, **small),
        "image_folder cached": lambda: ImageFolder(
            path=str(root / "folder"), cache=True, cache_dir=str(root / "cache"), **small
        ),
        "paired": lambda: PairedImages(path=str(root / "pairs"), layout="folders", **small),
    }
    for name, make in readers.items():
        try:
            make().setup()
            print(name, "| accepted")
        except GenlabError as exc:
            print(name, "|", " ".join(str(exc).split()))
    try:
        load_image(str(root / "folder" / "img_999.png"), 3, 8)
        print("translate | accepted")
    except GenlabError as exc:
        print("translate |", " ".join(str(exc).split()))
"""


def test_an_eps_named_png_never_reaches_ghostscript(tmp_path):
    """An EPS file named .png, with a `gs` on the PATH that leaves a marker when run: every
    reader (image_folder with and without the cache, paired, genlab.translate's input)
    refuses it naming the file and the formats genlab opens; gs never runs.
    Before: Pillow identified the EPS and ran gs (the marker appeared)."""
    write_image_folder(tmp_path / "folder", None, per_class=4)
    write_eps(tmp_path / "folder" / "img_999.png")
    write_pair_folders(tmp_path / "pairs", ["a", "b"])
    write_eps(tmp_path / "pairs" / "B" / "b.png")
    fake = tmp_path / "bin"
    fake.mkdir()
    marker = tmp_path / "ghostscript-ran"
    (fake / "gs").write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n")
    (fake / "gs").chmod(0o755)
    proc = python(
        GHOSTSCRIPT_SCRIPT, str(tmp_path), env={"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not marker.exists()
    lines = dict(line.split(" | ", 1) for line in proc.stdout.splitlines() if " | " in line)
    assert set(lines) == {"image_folder", "image_folder cached", "paired", "translate"}
    for name, message in lines.items():
        eps = "b.png" if name == "paired" else "img_999.png"
        assert eps in message and "not a PNG, JPEG, BMP, GIF, TIFF, WEBP, PPM file" in message


# --- 7. link loops and links out of the folder ------------------------------------------------
WALK_SCRIPT = """
    import sys
    from genlab.data import ImageFolder
    from genlab.utils.errors import GenlabError

    for path in sys.argv[1:]:
        try:
            dm = ImageFolder(
                path=path, image_size=8, channels=3, val_fraction=0.0, test_fraction=0.0,
                cache=False,
            )
            dm.setup()
            print("accepted", len(dm.dataset("train")), flush=True)
        except GenlabError as exc:
            print("refused:", " ".join(str(exc).split()), flush=True)
"""


def walk(*paths: Path) -> list[str]:
    """What a fresh process says of image_folder at each of `paths` (a walk or read that never
    ends is killed after 60 s: the test fails instead of hanging)."""
    try:
        proc = python(WALK_SCRIPT, *map(str, paths), timeout=60)
        out = proc.stdout
        assert proc.returncode == 0, proc.stderr[-3000:]
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() + "\ntimed out"
    said = ("refused:", "accepted", "timed out")
    return [line for line in out.splitlines() if line.startswith(said)]


def test_a_link_loop_and_a_fifo_are_refused_not_walked_or_read_forever(tmp_path):
    """`cat/a -> .` (a loop) is refused naming the link; a FIFO named .png is named as not a
    regular file (on_bad_file decides) instead of blocking the reader.
    Before: both ran until killed (torchvision's walk followed the loop; open() waited for a
    writer)."""
    root = tmp_path / "loop"
    write_image_folder(root, ["cat", "dog"], per_class=3)
    os.symlink(".", root / "cat" / "a")
    fifo = tmp_path / "fifo"
    write_image_folder(fifo, None, per_class=3)
    os.mkfifo(fifo / "img_999.png")
    loop, blocked = walk(root, fifo)
    assert loop.startswith("refused:") and str(root / "cat" / "a") in loop and "loop" in loop
    assert blocked.startswith("refused:") and "img_999.png" in blocked
    assert "not a regular file" in blocked


def test_links_out_of_the_data_folder_are_refused_unless_followed(tmp_path):
    """A class folder and an image linking out of data.path are refused naming the link and
    its target; data.outside_links=follow reads them; links inside the folder are fine.
    Data pairs (data=paired) refuse them too.
    Before: followed silently (a data folder could make genlab read any file of the user)."""
    outside = tmp_path / "elsewhere"
    write_image_folder(outside, None, per_class=2, seed=1)
    root = tmp_path / "data"
    write_image_folder(root, ["cat", "dog"], per_class=3)
    os.symlink(outside / "img_000.png", root / "cat" / "x.png")
    os.symlink(root / "dog" / "img_000.png", root / "cat" / "inside.png")  # fine
    with pytest.raises(GenlabError) as err:
        ImageFolder(path=str(root), cache=False, **SMALL).setup()
    msg = str(err.value)
    assert str(root / "cat" / "x.png") in msg and str(outside / "img_000.png") in msg
    assert "data.outside_links=follow" in msg
    dm = ImageFolder(path=str(root), cache=False, outside_links="follow", **SMALL)
    dm.setup()
    assert len(dm.dataset("train")) == 3 + 3 + 2

    (root / "cat" / "x.png").unlink()
    os.symlink(outside, root / "bird")
    with pytest.raises(GenlabError, match="bird"):
        ImageFolder(path=str(root), cache=False, **SMALL).setup()
    (root / "bird").unlink()
    ImageFolder(path=str(root), cache=False, **SMALL).setup()

    pairs = tmp_path / "pairs"
    write_pair_folders(pairs, ["a", "b", "c"])
    write_pair_folders(outside / "pairs", ["d"])
    for side in ("A", "B"):
        os.symlink(outside / "pairs" / side / "d.png", pairs / side / "d.png")
    with pytest.raises(GenlabError, match="d.png"):
        PairedImages(path=str(pairs), layout="folders", **SMALL).setup()
    dm = PairedImages(path=str(pairs), layout="folders", outside_links="follow", **SMALL)
    dm.setup()
    assert len(dm.dataset("train")) == 4

    with pytest.raises(GenlabError) as err:
        ImageFolder(path=str(root), cache=False, outside_links="always", **SMALL)
    assert "data.outside_links='always'" in str(err.value)


# --- 8. decompression bombs ------------------------------------------------------------------
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, caplog):
    """A 152 KB PNG of 12,500 x 12,500 pixels (1.6 GB per decoding thread): refused before
    decoding by data.max_image_pixels, in one paragraph naming the file, its size, the limit
    and the option; on_bad_file=skip leaves it out; the limit is an option of every file
    dataset's config and can be lowered or raised (up to what Pillow opens at all).
    Before: Pillow only warned (its own limit is 179 M pixels) and decoded it."""
    root = tmp_path / "imgs"
    write_image_folder(root, None, per_class=5)
    bomb = root / "img_999.png"
    assert write_flat_png(bomb, 12_500, 12_500) < 200_000
    for cache in (False, True):
        with pytest.raises(GenlabError) as err:
            ImageFolder(
                path=str(root), cache=cache, cache_dir=str(tmp_path / "cache"), **SMALL
            ).setup()
        msg = str(err.value)
        assert str(bomb) in msg and "12500x12500 = 156,250,000 pixels" in msg
        assert "64,000,000 (data.max_image_pixels)" in msg and "raise data.max_image_pixels" in msg
    dm = ImageFolder(path=str(root), cache=False, on_bad_file="skip", **SMALL)
    dm.setup()
    assert len(dm.dataset("train")) == 5

    # the limit is an option: 40x30 images pass the default and fail a limit of 1,000
    with pytest.raises(GenlabError, match="40x30 = 1,200 pixels, above the limit of 1,000"):
        ImageFolder(path=str(root), cache=False, max_image_pixels=1000, **SMALL).setup()
    with pytest.raises(GenlabError, match="data.max_image_pixels=200,000,000 is above"):
        ImageFolder(path=str(root), max_image_pixels=200_000_000, **SMALL)
    for data in ("image_folder", "celeba", "paired"):
        cfg = make_cfg(tmp_path, f"data={data}")
        assert cfg.data.max_image_pixels == 64_000_000 and cfg.data.outside_links == "error"

    pairs = tmp_path / "pairs"
    write_ab_images(pairs, 4)
    write_flat_png(pairs / "ab_999.png", 12_500, 12_500)
    with pytest.raises(GenlabError, match="ab_999.png"):
        PairedImages(path=str(pairs), image_size=16, channels=3).setup()


def test_translate_bounds_the_input_size(tmp_path):
    """genlab.translate: with resize=false the net runs at each file's own size, so inputs
    above max_unresized_pixels (2048 x 2048 by default) are refused before decoding, naming
    the file and the option; with resize=true the same file is read and resized (through a
    link out of input_dir, which translate follows: the user picks that folder by hand).
    Before: a 4000 x 4000 input ran the net at full size (2 GB)."""
    from hydra.utils import instantiate

    from genlab.analysis.translate_folder import translate_folder

    cfg = make_cfg(
        tmp_path,
        "experiment=pix2pix_edges_mnist",
        "model.generator.base_channels=4",
        "model.generator.max_mult=2",
        "model.discriminator.base_channels=4",
    )
    model, dm = instantiate(cfg.model).eval(), instantiate(cfg.data)
    inputs = tmp_path / "inputs"
    write_flat_png(tmp_path / "elsewhere" / "big.png", 2100, 2100)
    inputs.mkdir()
    os.symlink(tmp_path / "elsewhere" / "big.png", inputs / "big.png")
    with pytest.raises(GenlabError) as err:
        translate_folder(
            model,
            dm.pairing,
            str(inputs),
            tmp_path / "a",
            image_shape=dm.image_shape,
            resize=False,
        )
    msg = str(err.value)
    assert str(inputs / "big.png") in msg and "2100x2100 = 4,410,000 pixels" in msg
    assert "max_unresized_pixels" in msg
    out = translate_folder(
        model, dm.pairing, str(inputs), tmp_path / "b", image_shape=dm.image_shape, resize=True
    )
    assert out["n_images"] == 1
    with pytest.raises(GenlabError, match="max_image_pixels"):
        translate_folder(
            model,
            dm.pairing,
            str(inputs),
            tmp_path / "c",
            image_shape=dm.image_shape,
            max_image_pixels=1000,
        )


# --- 9. a full disk under the decode cache ------------------------------------------------------
CACHE_SCRIPT = """
    import os, sys
    from genlab.data import ImageFolder
    from genlab.utils.errors import GenlabError

    cache_dir = sys.argv[2]
    try:
        dm = ImageFolder(
            path=sys.argv[1], image_size=256, channels=3, cache=True, cache_dir=cache_dir,
            val_fraction=0.0, test_fraction=0.0,
        )
        dm.setup()
        print("built")
    except GenlabError as exc:
        print("refused:", " ".join(str(exc).split()))
    print("left:", sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else [])
"""


def test_a_full_disk_under_the_cache_is_refused_with_nothing_left(tmp_path):
    """The decode cache of 12 images at 256 px (2,359,296 bytes) on a 2 MB tmpfs (mounted in
    a private mount namespace; it fails where unshare/mount is not permitted): refused before
    writing, naming the folder, the bytes needed and free; nothing left behind.
    Before: the process died of SIGBUS writing through the memory map (Bus error, rc 135),
    leaving its temporary folder."""
    write_image_folder(tmp_path / "imgs", None, per_class=12)
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = f"mount -t tmpfs -o size=2m tmpfs {disk}"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True)
    if probe.returncode != 0:
        pytest.fail(
            "this test needs a small tmpfs in a private mount namespace (unshare -rm + mount; "
            f"Linux with unprivileged user namespaces, as CI has): {probe.stderr[-200:]!r}"
        )
    script = tmp_path / "cache_script.py"
    script.write_text(textwrap.dedent(CACHE_SCRIPT))
    cache_dir = disk / "cache"
    proc = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            f'{mount} && exec "$0" "$@"',
            sys.executable,
            str(script),
            str(tmp_path / "imgs"),
            str(cache_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    said, left = proc.stdout.strip().splitlines()[-2:]
    assert said.startswith("refused:") and str(cache_dir) in said
    need = int(said.split("needs ")[1].split(" bytes")[0].replace(",", ""))
    free = int(said.split("but only ")[1].split(" are free")[0].replace(",", ""))
    assert need >= 12 * 3 * 256 * 256 and 0 < free <= 2 << 20
    assert left == "left: []"


def test_a_cache_file_above_the_file_size_limit_is_refused_with_nothing_left(tmp_path):
    """The variant that runs anywhere: a process whose file size limit (RLIMIT_FSIZE, 1 MB)
    is below the cache's size is refused naming the limit; no temporary folder is left.
    Before: the cache quietly fell back to memory (and left its temporary folder)."""
    write_image_folder(tmp_path / "imgs", None, per_class=12)
    cache_dir = tmp_path / "cache"

    def limit() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = python(CACHE_SCRIPT, str(tmp_path / "imgs"), str(cache_dir), preexec_fn=limit)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said, left = proc.stdout.strip().splitlines()[-2:]
    assert said.startswith("refused:") and "file size limit" in said
    assert str(cache_dir) in said and "data.cache=false" in said
    assert left == "left: []"


# --- tracebacks that become one paragraph naming the file -----------------------------------
def test_a_celeba_list_line_with_three_fields_is_named(tmp_path):
    """A line of list_eval_partition.txt or list_attr_celeba.txt with the wrong fields: one
    paragraph naming the file, the line number and what was expected.
    Before: ValueError (too many values to unpack) / a torch.tensor error, as tracebacks."""
    write_celeba(tmp_path, n=6)
    base = tmp_path / "celeba"
    partition = base / "list_eval_partition.txt"
    good = partition.read_text()
    lines = good.splitlines()
    lines[3] += " 7"
    partition.write_text("\n".join(lines) + "\n")
    with pytest.raises(GenlabError) as err:
        celeba(tmp_path).setup()
    assert f"line 4 of {partition}" in str(err.value) and "(0, 1 or 2)" in str(err.value)

    partition.write_text(good)
    attrs = base / "list_attr_celeba.txt"
    lines = attrs.read_text().splitlines()
    lines[4] = "000003.jpg 1 -1"
    attrs.write_text("\n".join(lines) + "\n")
    with pytest.raises(GenlabError) as err:
        celeba(tmp_path).setup()
    assert f"line 5 of {attrs}" in str(err.value) and "40 values of -1 or 1" in str(err.value)


def celeba(root: Path) -> CelebA:
    return CelebA(data_dir=str(root), download=False, cache=False, image_size=8, channels=3)


@pytest.mark.parametrize(
    "damage",
    ["absurd count", "header only", "wrong type", "count mismatch"],
)
def test_an_mnist_idx_header_that_does_not_match_the_file_is_named(tmp_path, damage):
    """IDX files whose header does not match the file: one paragraph naming the file and
    the numbers, before torchvision's reader runs.
    Before: an AssertionError or RuntimeError traceback from torchvision's reader."""
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    images = raw / "train-images-idx3-ubyte"
    data = bytearray(images.read_bytes())
    if damage == "absurd count":
        data[4:8] = (2**32 - 1).to_bytes(4, "big")
        expected = "4294967295 x 28 x 28 values"
    elif damage == "header only":
        data = data[:16]
        expected = "16 bytes"
    elif damage == "wrong type":
        data[2] = 0x0D  # float
        expected = "type 0x0d"
    else:
        write_idx(raw / "train-labels-idx1-ubyte", np.zeros(59, dtype=np.uint8))
        expected = "60 images but"
    images.write_bytes(bytes(data))
    dm = TorchvisionMNIST(data_dir=str(tmp_path), download=False, image_size=28, channels=1)
    with pytest.raises(GenlabError) as err:
        dm.setup()
    assert str(images) in str(err.value) and expected in str(err.value)


def test_16_bit_and_float_images_are_converted_by_depth_or_refused(tmp_path):
    """16-bit PNGs and TIFFs come out as their top 8 bits, float TIFFs in [0, 1] scaled by 255
    (the oracles: x >> 8 and round(255 x)); 32-bit integers beyond 16 bits and floats outside
    [0, 1] are refused naming the file and the range.
    Before: 16-bit images clipped to 255 (white), float ones cast to 0/1 (black), silently."""
    rng = np.random.default_rng(0)
    root = tmp_path / "deep"
    root.mkdir()
    x16 = rng.integers(0, 65536, size=(8, 8), dtype=np.uint16)
    Image.fromarray(x16).save(root / "a16.png")
    Image.fromarray(x16).save(root / "b16.tif")
    xf = rng.random((8, 8), dtype=np.float32)
    Image.fromarray(xf).save(root / "cf.tif")
    dm = ImageFolder(path=str(root), cache=False, **{**SMALL, "channels": 1})
    dm.setup()
    data = dm.dataset("train")
    got = {Path(data.base.paths[i]).name: data[k][0] for k, i in enumerate(data.indices)}
    for name in ("a16.png", "b16.tif"):
        assert torch.equal((got[name][0] * 255).round().byte(), torch.from_numpy(x16 >> 8).byte())
    expected = torch.from_numpy(np.rint(xf * 255).astype(np.uint8))
    assert torch.equal((got["cf.tif"][0] * 255).round().byte(), expected)

    Image.fromarray(np.full((8, 8), 70_000, dtype=np.int32)).save(root / "d32.tif")
    Image.fromarray(xf * 4 - 1).save(root / "ef.tif")
    with pytest.raises(GenlabError) as err:
        ImageFolder(path=str(root), cache=True, cache_dir=str(tmp_path / "c"), **SMALL).setup()
    msg = str(err.value)
    assert "d32.tif  (32-bit integer pixels in [70000, 70000]" in msg
    assert "ef.tif  (float pixels in [" in msg and "genlab reads float images as [0, 1]" in msg


# --- issue 26: paired defaults, where the CelebA cache goes ------------------------------------
def test_paired_defaults_say_they_upscale_small_grey_pairs(tmp_path, caplog):
    """32-px grey pairs with data=paired's defaults (256 px, 3 channels): a warning says they
    are upscaled and copied to RGB, and names data.image_size=32 data.channels=1; pairs
    that fit the options get no warning.
    Before: silently upscaled 8x to RGB (issue 26.6)."""
    from hydra.utils import instantiate

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        grey = rng.integers(0, 256, size=(32, 64), dtype=np.uint8)
        Image.fromarray(grey).save(pairs / f"ab_{i}.png")
    cfg = make_cfg(tmp_path, "model=pix2pix", "data=paired", "~data/pairing", f"data.path={pairs}")
    with caplog.at_level(logging.WARNING, logger="genlab.data.paired"):
        instantiate(cfg.data).setup()
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "20 of the 20 images are smaller than data.image_size=256" in said
    assert "copied to 3 channels" in said and "data.image_size=32 data.channels=1" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="genlab.data.paired"):
        PairedImages(path=str(pairs), image_size=32, channels=1).setup()
    assert not [r for r in caplog.records if "upscaled" in r.getMessage()]


def test_the_celeba_cache_goes_beside_its_data(tmp_path):
    """data=celeba data.data_dir=ELSEWHERE: the decode cache goes under ELSEWHERE, beside
    the data it caches (image_folder keeps it under paths.data_dir: data.path is any folder
    of the user's, which genlab does not write into).
    Before: under paths.data_dir whatever data.data_dir said (issue 26.9)."""
    elsewhere = tmp_path / "datasets"
    cfg = make_cfg(tmp_path, "data=celeba", f"data.data_dir={elsewhere}")
    assert cfg.data.cache_dir == f"{elsewhere}/.cache/genlab_images"
    write_celeba(elsewhere, n=6)
    dm = instantiate_data(cfg)
    dm.setup()
    built = [p.name for p in (elsewhere / ".cache" / "genlab_images").iterdir()]
    assert len(built) == 1 and built[0].startswith("celeba-")
    cfg = make_cfg(tmp_path, "data=image_folder", f"data.path={elsewhere}")
    assert cfg.data.cache_dir == f"{tmp_path}/data/.cache/genlab_images"


def instantiate_data(cfg):
    from hydra.utils import instantiate

    return instantiate(cfg.data, num_workers=0, persistent_workers=False, pin_memory=False)


# --- the reader itself -----------------------------------------------------------------------
def test_reading_an_untrusted_image_does_not_change_ordinary_ones(tmp_path):
    """The readers that replaced Pillow's open and torchvision's walk give the same paths in
    the same order (so existing caches stay valid) and the same pixels for ordinary files:
    JPEG, PNG with alpha, palette, grey, in nested class folders."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for k, (cls, sub) in enumerate([("b", ""), ("a", "x/y"), ("a", ""), ("c", "z")]):
        folder = root / cls / sub
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(9, 7, 4), dtype=np.uint8)
        Image.fromarray(pixels[..., :3]).save(folder / f"{k}.jpg", quality=90)
        Image.fromarray(pixels).save(folder / f"{k}_rgba.png")
        Image.fromarray(pixels[..., 0]).convert("P").save(folder / f"{k}_p.png")
        Image.fromarray(pixels[..., 1]).save(folder / f"{k}_l.bmp")
    os.symlink(root / "a" / "x", root / "c" / "link")  # inside: followed
    dm = ImageFolder(path=str(root), cache=False, **SMALL)
    dm.setup()
    classes = {c: i for i, c in enumerate(sorted(["a", "b", "c"]))}
    reference = make_dataset(str(root), classes, extensions=IMG_EXTENSIONS)
    assert dm.source().paths == [p for p, _ in reference]
    from genlab.data.untrusted_files import read_image

    for path, _ in reference:
        with Image.open(path) as im:
            assert np.array_equal(np.asarray(read_image(path)), np.asarray(im.convert("RGB")))
