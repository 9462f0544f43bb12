"""Paired images from files stay aligned (src/genlab/data/paired.py): structured pairs whose
target is a pixel-by-pixel function of the source (B = 255 - A), so any crop or flip that
differs between the two shows; non-square files against PIL's short-side resize and center
crop; the documented split fallbacks when val/ or test/ is missing; `resize=false` in the
translate library.

Seen failing (each in a scratch copy of src/): flipping only the target, cropping target and
source at independently drawn places, a corner crop instead of the center crop, squashing to
a square instead of resizing the short side, the test split not falling back to val, and
`resize=false` resizing anyway."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from genlab.analysis.translate_folder import translate_folder
from genlab.data import PairedImages
from genlab.data.mnist import MNIST5k
from genlab.data.paired import (
    JITTER_SCALE,
    PairFiles,
    load_pairs,
    pair_dataset,
    source_shape,
    to_tensor,
    translation_pairing,
)
from genlab.data.pairing import Downsample, Edges, FilePairs
from genlab.models.translation import Translation
from genlab.nets import PatchGAN
from genlab.utils.errors import GenlabError


def pattern(h: int, w: int, shift: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 with no symmetry: red grows along x, green along y, blue a wrapped
    diagonal ramp; `shift` makes images of a folder tell apart."""
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    r = 8 + (240 * x) // max(w - 1, 1)
    g = 8 + (240 * y) // max(h - 1, 1)
    b = (3 * y + 5 * x + 17 * shift) % 200 + 20
    return np.stack([r, g, b], -1).astype(np.uint8)


def write_aligned(folder, n: int, h: int, w: int) -> list[np.ndarray]:
    """n AB files of A = pattern, B = 255 - A, side by side (A left). Returns the A arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        a = pattern(h, w, shift=i)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(folder / f"ab_{i:02d}.png")
        out.append(a)
    return out


# --- augmentation keeps every pair aligned --------------------------------------------------
def test_jitter_and_flip_apply_the_same_crop_and_flip_to_both_images(tmp_path):
    """Over 120 training reads every one of the 9 crop positions x 2 flips is drawn, and each
    time the target is exactly the same crop and flip of the resized target as the source is
    of the resized source; target + source = 1 at every pixel (B = 255 - A, to the fixed-point
    uint8 rounding of the resize: 2/255). Evaluation reads are neither jittered nor flipped."""
    write_aligned(tmp_path, 4, 16, 16)
    dm = PairedImages(
        path=str(tmp_path),
        image_size=16,
        channels=3,
        val_fraction=0.25,
        test_fraction=0.0,
        jitter=True,
        hflip=True,
    )
    dm.setup("fit")
    train = dm.dataset("train")
    big = round(16 * JITTER_SCALE)
    assert big == 18
    seen = set()
    torch.manual_seed(0)
    for n in range(120):
        i = n % len(train)
        a_path = file_of(train, i)
        ab = Image.open(a_path)
        a_im, b_im = ab.crop((0, 0, 16, 16)), ab.crop((16, 0, 32, 16))
        big_source, big_target = to_tensor(a_im, 3, big), to_tensor(b_im, 3, big)
        target, source = train[i]
        assert target.shape == source.shape == (3, 16, 16)
        assert (target + source - 1).abs().max() <= 2 / 255 + 1e-6  # a pixel shift: >= 15
        found = [
            (top, left, flip)
            for top in range(3)
            for left in range(3)
            for flip in (False, True)
            if torch.equal(crop_flip(big_source, top, left, flip), source)
        ]
        assert len(found) == 1, found  # the pattern tells every crop and flip apart
        top, left, flip = found[0]
        assert torch.equal(crop_flip(big_target, top, left, flip), target), found
        seen.add(found[0])
    assert len(seen) == 18
    val = dm.dataset("val")
    target, source = val[0]
    ab = Image.open(file_of(val, 0))
    assert torch.equal(source, to_tensor(ab.crop((0, 0, 16, 16)), 3, 16))
    assert torch.equal(target, to_tensor(ab.crop((16, 0, 32, 16)), 3, 16))


def file_of(data, i: int) -> str:
    """The file behind item i of a split (through the index maps of the split)."""
    while hasattr(data, "indices"):
        data, i = data.base, data.indices[i]
    return data.items[i][0]


def crop_flip(x: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
    out = x[:, top : top + 16, left : left + 16]
    return out.flip(-1) if flip else out


# --- non-square files -------------------------------------------------------------------------
def pil_reference(image: Image.Image, size: int) -> torch.Tensor:
    """PIL: resize the short side to `size` (bilinear, PIL's antialiasing), keeping the aspect
    ratio, then cut the central size x size window. (c, size, size) in [0, 1]."""
    w, h = image.size
    new = (size * w // h, size) if w >= h else (size, size * h // w)
    resized = image.resize(new, Image.BILINEAR)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    window = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32)
    return torch.from_numpy(window / 255).permute(2, 0, 1)


@pytest.mark.parametrize("layout", ["aligned", "folders"])
@pytest.mark.parametrize(("w", "h"), [(40, 24), (24, 40)])
def test_non_square_files_are_resized_on_the_short_side_and_center_cropped(tmp_path, layout, w, h):
    """Landscape (40x24 -> 20x12, window at x 4..16) and portrait (24x40 -> 12x20, window at
    y 4..16) pairs in both layouts equal PIL's resize and center crop to 1/255."""
    a = pattern(h, w)
    if layout == "aligned":
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(tmp_path / "p0.png")
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(tmp_path / "p1.png")
    else:
        for side, image in (("A", a), ("B", 255 - a)):
            (tmp_path / side).mkdir()
            for name in ("p0", "p1"):
                Image.fromarray(image).save(tmp_path / side / f"{name}.png")
    dm = PairedImages(
        path=str(tmp_path),
        layout=layout,
        image_size=12,
        channels=3,
        val_fraction=0.0,
        test_fraction=0.5,
    )
    dm.setup("fit")
    target, source = dm.dataset("test")[0]
    want_s, want_t = (
        pil_reference(Image.fromarray(a), 12),
        pil_reference(Image.fromarray(255 - a), 12),
    )
    assert source.shape == target.shape == (3, 12, 12)
    assert (source - want_s).abs().max() <= 1 / 255 + 1e-6
    assert (target - want_t).abs().max() <= 1 / 255 + 1e-6


# --- split fallbacks ----------------------------------------------------------------------
def write_numbered(folder, numbers: list[int]) -> None:
    """AB files whose A is the constant number, B = 255 - it: a pair names its file."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in numbers:
        a = np.full((8, 8, 3), k, np.uint8)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(folder / f"n{k:03d}.png")


def numbers(data) -> list[int]:
    """The numbers of the pairs of a split, in order (and each target is 255 - its source)."""
    out = []
    for i in range(len(data)):
        target, source = data[i]
        k = round(float(source[0, 0, 0]) * 255)
        assert torch.equal(source, torch.full_like(source, k / 255))
        assert torch.allclose(target, torch.full_like(target, (255 - k) / 255))
        out.append(k)
    return out


@pytest.mark.parametrize("present", [("train", "test"), ("train", "val"), ("train",)])
def test_a_missing_val_or_test_folder_falls_back_as_documented(tmp_path, present):
    """docs/translation.md: 'Splits are train/ val/ test/ subfolders when they exist (no val/:
    data.val_fraction of train; no test/: the val split)'. train/ holds 10..19, val/ 20..22,
    test/ 30..32; the fraction 0.3 takes 3 of the 10 training pairs."""
    files = {"train": list(range(10, 20)), "val": [20, 21, 22], "test": [30, 31, 32]}
    for split in present:
        write_numbered(tmp_path / split, files[split])
    dm = PairedImages(path=str(tmp_path), image_size=8, channels=3, val_fraction=0.3)
    dm.setup("fit")
    got = {s: numbers(dm.dataset(s)) for s in ("train", "val", "test")}
    if "val" in present:
        assert sorted(got["val"]) == files["val"]
        assert sorted(got["train"]) == files["train"]
    else:  # val_fraction of train, held out of training
        assert len(got["val"]) == 3 and set(got["val"]) <= set(files["train"])
        assert sorted(got["train"] + got["val"]) == files["train"]
    if "test" in present:
        assert sorted(got["test"]) == files["test"]
    else:  # the val split is also the test split
        assert got["test"] == got["val"]


# --- translate with resize=false ------------------------------------------------------------
class Identity(torch.nn.Module):
    def forward(self, x):
        return x


def test_translate_folder_keeps_each_files_size_with_resize_false(tmp_path):
    """A fully convolutional model (here the identity) translates files of any size: with
    resize=false each output has its file's own size and pixels; by default every output is
    resized and center-cropped to the training size (16)."""
    folder = tmp_path / "in"
    folder.mkdir()
    sizes = {"wide": (40, 24), "tall": (12, 28), "square": (16, 16)}
    for name, (w, h) in sizes.items():
        Image.fromarray(pattern(h, w)).save(folder / f"{name}.png")
    model = Translation(
        generator=Identity(),
        discriminator=PatchGAN(channels=3, image_size=16, n_layers=1),
        optimizer_g=lambda params: torch.optim.Adam(params),
        optimizer_d=lambda params: torch.optim.Adam(params),
        channels=3,
        image_size=16,
        source_channels=3,
        ema_decay=None,
    ).eval()
    for resize in (False, True):
        out = tmp_path / f"out_{resize}"
        summary = translate_folder(
            model, FilePairs(), str(folder), out, image_shape=(3, 16, 16), resize=resize
        )
        assert summary["n_images"] == 3
        for name, (w, h) in sizes.items():
            result = Image.open(out / "outputs" / f"{name}.png").convert("RGB")
            original = Image.open(folder / f"{name}.png")
            want = original if not resize else None
            if resize:
                assert result.size == (16, 16), name
                want_t = pil_reference(original, 16)
                got_t = torch.from_numpy(np.asarray(result, np.float32) / 255).permute(2, 0, 1)
                assert (got_t - want_t).abs().max() <= 1 / 255 + 1e-6, name
            else:
                assert result.size == (w, h), name
                diff = np.abs(np.asarray(result, int) - np.asarray(want, int))
                assert diff.max() <= 1, name  # PNG rounding of the [0, 1] output


# --- every refusal names the file or option, verbatim -------------------------------------
def refusal(build) -> str:
    with pytest.raises(GenlabError) as err:
        build()
    return str(err.value)


def test_option_refusals(tmp_path):
    kw = dict(path=str(tmp_path), image_size=8, channels=3)
    assert refusal(lambda: PairedImages(**kw, layout="side")) == (
        "data.layout='side': use aligned (AB files) or folders."
    )
    assert refusal(lambda: PairedImages(**kw, direction="AB")) == (
        "data.direction='AB': use AtoB or BtoA."
    )
    assert refusal(lambda: PairedImages(**kw, on_bad_file="ignore")) == (
        "data.on_bad_file='ignore': use error or skip."
    )
    assert refusal(lambda: PairedImages(**kw, pairing=Edges())) == (
        "data=paired reads both images of a pair from files, so it takes no pairing; the "
        "translation models bring one for single-image datasets (model=pix2pix: edges): drop it "
        "with ~data/pairing on the command line (an experiment file: `- override "
        "/data/pairing@data.pairing: null` in its defaults)."
    )
    both = (
        "data=paired supports neither data.binarize nor data.device_resident: set them to null "
        "/ false."
    )
    assert refusal(lambda: PairedImages(**kw, binarize=0.5)) == both
    assert refusal(lambda: PairedImages(**kw, device_resident=True)) == both
    # the defaults: aligned files, A -> B, errors; a pairing of None is no pairing
    dm = PairedImages(**kw, pairing=None)
    assert (dm.layout, dm.direction, dm.on_bad_file, dm.a_dir, dm.b_dir) == (
        "aligned",
        "AtoB",
        "error",
        "A",
        "B",
    )
    assert (dm.jitter, dm.test_fraction, dm.name) == (False, 0.1, "paired")
    assert isinstance(dm.pairing, FilePairs) and dm.num_classes is None


def test_folder_refusals(tmp_path):
    missing = tmp_path / "none"
    assert refusal(lambda: PairedImages(path=str(missing), image_size=8, channels=3).setup()) == (
        f"data.path={str(missing)!r}: {str(missing)!r} is not a directory. data.layout=aligned "
        "expects a folder of AB images (or train/ val/ test/ folders of them)."
    )
    folders = dict(path=str(tmp_path), layout="folders", image_size=8, channels=3)
    (tmp_path / "A").mkdir()
    assert refusal(lambda: PairedImages(**folders).setup()) == (
        f"data.path={str(tmp_path)!r}: {str(tmp_path / 'B')!r} is not a directory. "
        "data.layout=folders expects the folders A/ and B/ (data.a_dir, data.b_dir) holding "
        "images with matching names."
    )
    for side in ("A", "B"):
        (tmp_path / side / "train").mkdir(parents=True)
        Image.fromarray(pattern(8, 8)).save(tmp_path / side / "train" / "x.png")
    (tmp_path / "A" / "val").mkdir()
    assert refusal(lambda: PairedImages(**folders).setup()) == (
        f"data.path={str(tmp_path)!r}: {str(tmp_path / 'A' / 'val')!r} has no counterpart "
        f"{str(tmp_path / 'B' / 'val')!r}: both image folders need the same split subfolders."
    )
    (tmp_path / "A" / "val").rmdir()
    Image.fromarray(pattern(8, 8)).save(tmp_path / "A" / "train" / "x.jpg")
    a_png, a_jpg = (str(tmp_path / "A" / "train" / f"x.{e}") for e in ("jpg", "png"))
    assert refusal(lambda: PairedImages(**folders).setup()) == (
        f"data.path={str(tmp_path)!r}: {a_png!r} and {a_jpg!r} have the same name; pairs are "
        "matched by file name without extension, so rename one."
    )


def test_partner_and_file_refusals_and_skips(tmp_path, caplog):
    """A file without a partner, an unreadable file and an AB file too narrow to hold two
    images: named in the error; left out (with their pairs) and named in a warning with
    on_bad_file=skip; hidden files and other extensions are not images."""
    for side in ("A", "B"):
        (tmp_path / side).mkdir()
        for name in ("p0", "p1", "p2", "p3"):
            Image.fromarray(pattern(8, 8)).save(tmp_path / side / f"{name}.png")
        (tmp_path / side / ".hidden.png").write_bytes(b"")
        (tmp_path / side / "notes.txt").write_text("not an image")
    Image.fromarray(pattern(8, 8)).save(tmp_path / "A" / "lonely.png")
    folders = dict(path=str(tmp_path), layout="folders", image_size=8, channels=3)
    lonely = f"{tmp_path / 'A' / 'lonely.png'} (no B file named lonely.*)"
    assert refusal(lambda: PairedImages(**folders).setup()) == (
        f"data.path={str(tmp_path)!r}: 1 image(s) have no partner:\n  {lonely}\nAdd the "
        "partners or remove these files, or set data.on_bad_file=skip to leave them out."
    )
    bad = tmp_path / "B" / "p3.png"
    bad.write_bytes(b"not a png")
    caplog.set_level("WARNING", logger="genlab.data.paired")
    dm = PairedImages(**folders, on_bad_file="skip", val_fraction=0.0, test_fraction=0.0)
    dm.setup("fit")
    assert len(dm.dataset("train")) == 3
    messages = [r.getMessage() for r in caplog.records if r.name == "genlab.data.paired"]
    assert f"{tmp_path}: leaving out 1 image(s) without a partner: {[lonely]}" in messages
    assert f"{tmp_path}: skipping 1 unreadable image(s) and their pairs: {[str(bad)]}" in (
        messages
    )
    (tmp_path / "A" / "lonely.png").unlink()
    text = refusal(lambda: PairedImages(**folders).setup())
    assert text.startswith(
        f"data.path={str(tmp_path)!r}: 1 image file(s) cannot be read:\n  {bad}  ("
    )
    assert text.endswith(
        ")\nRemove or replace them, or set data.on_bad_file=skip to leave them (and their pairs) "
        "out."
    )
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    Image.fromarray(pattern(8, 1)).save(narrow / "thin.png")
    Image.fromarray(pattern(8, 16)).save(narrow / "ok.png")
    text = refusal(lambda: PairedImages(path=str(narrow), image_size=8, channels=3).setup())
    assert f"{narrow / 'thin.png'}  (1 px wide: an AB file holds two images side by side)" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    assert refusal(lambda: PairedImages(path=str(empty), image_size=8, channels=3).setup()) == (
        f"data.path={str(empty)!r} holds no readable image pairs for training (layout=aligned, "
        f"extensions {', '.join(IMG_EXTENSIONS)})."
    )


def test_a_split_left_empty_and_a_file_changed_after_the_check(tmp_path):
    write_aligned(tmp_path, 3, 8, 8)
    text = refusal(
        lambda: PairedImages(
            path=str(tmp_path), image_size=8, channels=3, val_fraction=0.1, test_fraction=0.1
        ).setup()
    )
    assert text == (
        f"data.path={str(tmp_path)!r}: the val and test split(s) got no pairs (3 train, 0 val, "
        "0 test): add pairs or change data.val_fraction / data.test_fraction."
    )
    dm = PairedImages(
        path=str(tmp_path), image_size=8, channels=3, val_fraction=0.0, test_fraction=0.0
    )
    dm.setup("fit")
    assert {s: len(dm.dataset(s)) for s in ("train", "val", "test")} == {
        "train": 3,
        "val": 0,
        "test": 0,
    }
    gone = file_of(dm.dataset("train"), 0)
    os.remove(gone)
    text = refusal(lambda: dm.dataset("train")[0])
    assert text.startswith(f"image {(gone, None)!r} could not be read (")
    assert text.endswith("): it changed after the check before training; replace it.")


def test_pairs_of_files_and_of_a_pairing_through_the_same_helpers(tmp_path):
    """pair_dataset / load_pairs / source_shape give (target, source) for file pairs as read,
    and for derived pairs the pairing's evaluation sources; data without pairs is refused."""
    write_aligned(tmp_path, 4, 8, 8)
    dm = PairedImages(
        path=str(tmp_path), image_size=8, channels=3, val_fraction=0.0, test_fraction=0.5
    )
    dm.setup("fit")
    target, source = load_pairs(dm, "test", [1, 0])
    assert torch.equal(target[0], dm.dataset("test")[1][0])
    assert torch.equal(source[1], dm.dataset("test")[0][1])
    assert pair_dataset(dm, "test") is dm.dataset("test")
    assert source_shape(dm) == (3, 8, 8)
    mnist = MNIST5k(image_size=28, channels=1, pairing=Downsample(factor=4))
    mnist.setup("fit")
    assert source_shape(mnist) == (1, 7, 7)
    target, source = load_pairs(mnist, "val", [3, 5])
    assert torch.equal(source, Downsample(factor=4)(target))
    derived = pair_dataset(mnist, "val")
    assert len(derived) == len(mnist.dataset("val"))
    assert torch.equal(derived[5][1], source[1])
    plain = MNIST5k(image_size=28, channels=1)
    assert refusal(lambda: source_shape(plain)) == (
        "the data (mnist_5k) gives single images, but image-to-image translation needs pairs: "
        "derive the sources with a pairing (data/pairing=edges, sr_x4, sr_x2, center_mask, "
        "rectangles, strokes or greyscale; with `+` for models other than pix2pix, srgan and "
        "inpaint) or read pairs from files with data=paired."
    )


# --- what the first mutation run of paired.py found untested -------------------------------
def test_grey_pairs_from_colour_files_are_the_luma(tmp_path):
    """data.channels=1 on RGB files: each image is its ITU-R 601 luma (0.299 R + 0.587 G +
    0.114 B), one channel, to 1/255."""
    write_aligned(tmp_path, 2, 8, 8)
    dm = PairedImages(
        path=str(tmp_path), image_size=8, channels=1, val_fraction=0.0, test_fraction=0.5
    )
    dm.setup("fit")
    target, source = dm.dataset("test")[0]
    a = pattern(8, 8, shift=int(file_of(dm.dataset("test"), 0)[-6:-4]))
    luma = (a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255
    assert source.shape == target.shape == (1, 8, 8)
    assert np.abs(source[0].numpy() - luma).max() <= 1 / 255 + 1e-6
    assert np.abs(target[0].numpy() - (1 - luma)).max() <= 1 / 255 + 1e-6


def test_an_odd_width_ab_file_splits_at_half_the_width_rounded_down(tmp_path):
    """A 19-pixel-wide AB file: A is columns 0-8 (19 // 2 = 9 columns), B columns 9-18."""
    ab = np.zeros((10, 19, 3), np.uint8)
    ab[:, :9] = 50
    ab[:, 9:] = 200
    Image.fromarray(ab).save(tmp_path / "odd.png")
    Image.fromarray(ab).save(tmp_path / "odd2.png")
    dm = PairedImages(
        path=str(tmp_path), image_size=8, channels=3, val_fraction=0.0, test_fraction=0.5
    )
    dm.setup("fit")
    a, b = dm.dataset("test").base.read(0)
    assert a.size == (9, 10) and b.size == (10, 10)
    assert set(np.asarray(a).flatten()) == {50} and set(np.asarray(b).flatten()) == {200}
    # 2 pixels wide is one pixel each: accepted
    Image.fromarray(ab[:, 8:10]).save(tmp_path / "odd2.png")
    PairedImages(
        path=str(tmp_path), image_size=8, channels=3, val_fraction=0.0, test_fraction=0.0
    ).setup("fit")


def test_pair_files_default_to_no_augmentation(tmp_path):
    """PairFiles without jitter or hflip: every read of a pair is the plain resize and crop."""
    write_aligned(tmp_path, 1, 16, 16)
    files = PairFiles(
        [(str(tmp_path / "ab_00.png"), None)], direction="AtoB", channels=3, image_size=12
    )
    ab = Image.open(tmp_path / "ab_00.png")
    want = to_tensor(ab.crop((0, 0, 16, 16)), 3, 12)
    for _ in range(6):
        assert torch.equal(files[0][1], want)


@pytest.mark.parametrize("layout", ["aligned", "folders"])
def test_a_file_swapped_for_a_bigger_one_after_the_check_is_refused(tmp_path, layout):
    """data.max_image_pixels holds when a pair is read, not only when the files are checked
    (where a file above it is refused, with the hint to raise it): a file replaced after setup
    by one above the limit is refused when read; a file gone is named with the reason."""
    if layout == "aligned":
        write_aligned(tmp_path, 2, 8, 8)  # 16 x 8 = 128 pixels per file
    else:
        for side in ("A", "B"):
            (tmp_path / side).mkdir()
            for name in ("p0", "p1"):
                Image.fromarray(pattern(8, 8)).save(tmp_path / side / f"{name}.png")
    kw = dict(path=str(tmp_path), layout=layout, image_size=8, channels=3, val_fraction=0.0)
    dm = PairedImages(**kw, test_fraction=0.0, max_image_pixels=200)
    dm.setup("fit")
    base = dm.dataset("train").base
    a_path, b_path = base.items[0]
    path = b_path or a_path  # the B file of two folders, the AB file of aligned pairs
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(path)  # 512 pixels
    text = refusal(lambda: base[0])
    assert text.startswith(f"image {(a_path, b_path)!r} could not be read (") and "512" in text
    checked = refusal(lambda: PairedImages(**kw, max_image_pixels=200).setup())
    assert checked.startswith(f"data.path={str(tmp_path)!r}: 1 image file(s) cannot be read:")
    assert checked.endswith(
        "\nRemove or replace them, or set data.on_bad_file=skip to leave them (and their pairs) "
        "out (or raise data.max_image_pixels for images that are genuinely that large)."
    )
    os.remove(path)
    assert "No such file or directory" in refusal(lambda: base[0])


def test_many_files_without_a_partner_in_several_splits(tmp_path):
    """12 lonely files over train/ and val/: all are counted, the first 10 shown, then '...'."""
    for side in ("A", "B"):
        for split in ("train", "val"):
            (tmp_path / side / split).mkdir(parents=True, exist_ok=True)
    for i in range(7):
        Image.fromarray(pattern(8, 8)).save(tmp_path / "A" / "train" / f"t{i:02d}.png")
    for i in range(5):
        Image.fromarray(pattern(8, 8)).save(tmp_path / "A" / "val" / f"v{i:02d}.png")
    for side in ("A", "B"):
        Image.fromarray(pattern(8, 8)).save(tmp_path / side / "train" / "pair.png")
    text = refusal(
        lambda: PairedImages(
            path=str(tmp_path), layout="folders", image_size=8, channels=3
        ).setup()
    )
    lines = text.split("\n")
    assert lines[0] == f"data.path={str(tmp_path)!r}: 12 image(s) have no partner:"
    assert lines[1] == f"  {tmp_path / 'A' / 'train' / 't00.png'} (no B file named t00.*)"
    assert lines[10] == f"  {tmp_path / 'A' / 'val' / 'v02.png'} (no B file named v02.*)"
    assert lines[11] == "  ..."
    assert lines[12].startswith("Add the partners")


def test_a_split_folder_linking_out_of_the_data_folder_is_refused(tmp_path):
    """train/ as a link to a folder outside data.path: refused naming data.outside_links,
    read with data.outside_links=follow."""
    outside = tmp_path / "elsewhere"
    write_aligned(outside, 3, 8, 8)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train").symlink_to(outside, target_is_directory=True)
    text = refusal(lambda: PairedImages(path=str(data), image_size=8, channels=3).setup())
    assert text == (
        f"{data / 'train'} is a link to {outside}, outside the data folder {data}: genlab reads "
        "only files inside it. Copy what you want to use into the folder, or set "
        "data.outside_links=follow if you made these links yourself."
    )
    dm = PairedImages(
        path=str(data), image_size=8, channels=3, val_fraction=0.0, outside_links="follow"
    )
    dm.setup("fit")
    assert len(dm.dataset("train")) == 3


class Clips:
    """Data of another kind: no pairing, no name."""


def test_data_of_any_kind_without_a_pairing_is_refused():
    assert refusal(lambda: translation_pairing(Clips())).startswith(
        "the data (Clips) gives single images, but image-to-image translation needs pairs"
    )


def test_evaluation_splits_are_never_augmented(tmp_path):
    """With jitter and flips on, the val and test pairs (from their folders, or held out of
    train/) read the same every time: the plain resize and crop."""
    for present in (("train", "val", "test"), ("train",)):
        root = tmp_path / "-".join(present)
        for split in present:
            write_aligned(root / split, 4, 16, 16)
        dm = PairedImages(
            path=str(root), image_size=12, channels=3, jitter=True, hflip=True, val_fraction=0.5
        )
        dm.setup("fit")
        torch.manual_seed(0)
        for split in ("val", "test"):
            data = dm.dataset(split)
            for i in range(len(data)):
                ab = Image.open(file_of(data, i))
                want = to_tensor(ab.crop((0, 0, 16, 16)), 3, 12)
                for _ in range(4):
                    assert torch.equal(data[i][1], want), (present, split)


def test_which_empty_splits_are_refused(tmp_path):
    """With split folders: an empty val split is refused when val_fraction asks for one or a
    val/ folder exists (the test split is then the same pairs); neither: no val, no test."""
    write_aligned(tmp_path / "a" / "train", 2, 8, 8)
    kw = dict(image_size=8, channels=3)
    text = refusal(lambda: PairedImages(path=str(tmp_path / "a"), **kw, val_fraction=0.1).setup())
    assert text == (
        f"data.path={str(tmp_path / 'a')!r}: the val and test split(s) got no pairs (2 train, "
        "0 val, 0 test): add pairs or change data.val_fraction / data.test_fraction."
    )
    dm = PairedImages(path=str(tmp_path / "a"), **kw, val_fraction=0.0)
    dm.setup("fit")
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [2, 0, 0]
    write_aligned(tmp_path / "b" / "train", 2, 8, 8)
    (tmp_path / "b" / "val").mkdir()
    text = refusal(lambda: PairedImages(path=str(tmp_path / "b"), **kw, val_fraction=0.0).setup())
    assert "the val and test split(s) got no pairs (2 train, 0 val, 0 test)" in text


def test_how_many_files_an_error_lists(tmp_path, caplog):
    """Up to 10 files are listed: 10 lonely files without '...', 11 with it (and a skip's
    warning lists 10); 11 unreadable files list 10 and '... and 1 more'."""
    for n, more in ((10, False), (11, True)):
        root = tmp_path / f"lonely{n}"
        for side in ("A", "B"):
            (root / side).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(pattern(8, 8)).save(root / "A" / f"x{i:02d}.png")
        Image.fromarray(pattern(8, 8)).save(root / "A" / "pair.png")
        Image.fromarray(pattern(8, 8)).save(root / "B" / "pair.png")
        kw = dict(path=str(root), layout="folders", image_size=8, channels=3)
        lines = refusal(lambda kw=kw: PairedImages(**kw).setup()).split("\n")
        assert lines[0].endswith(f": {n} image(s) have no partner:")
        assert (lines[11] == "  ...") == more and len(lines) == 12 + more
    caplog.set_level("WARNING", logger="genlab.data.paired")
    dm = PairedImages(**kw, on_bad_file="skip", val_fraction=0.0, test_fraction=0.0)
    dm.setup("fit")
    lonely = [f"{root / 'A' / f'x{i:02d}.png'} (no B file named x{i:02d}.*)" for i in range(10)]
    messages = [r.getMessage() for r in caplog.records if r.name == "genlab.data.paired"]
    assert f"{root}: leaving out 11 image(s) without a partner: {lonely}" in messages
    bad_root = tmp_path / "bad"
    bad_root.mkdir()
    for i in range(11):
        (bad_root / f"b{i:02d}.png").write_bytes(b"not a png")
    Image.fromarray(pattern(8, 16)).save(bad_root / "ok.png")
    text = refusal(lambda: PairedImages(path=str(bad_root), image_size=8, channels=3).setup())
    lines = text.split("\n")
    assert lines[0] == f"data.path={str(bad_root)!r}: 11 image file(s) cannot be read:"
    assert len(lines) == 13 and lines[11] == "  ... and 1 more"
    assert lines[12] == (
        "Remove or replace them, or set data.on_bad_file=skip to leave them (and their pairs) out."
    )
    caplog.clear()
    dm = PairedImages(
        path=str(bad_root),
        image_size=8,
        channels=3,
        on_bad_file="skip",
        val_fraction=0.0,
        test_fraction=0.0,
    )
    dm.setup("fit")
    shown = [str(bad_root / f"b{i:02d}.png") for i in range(10)]
    messages = [r.getMessage() for r in caplog.records if r.name == "genlab.data.paired"]
    assert f"{bad_root}: skipping 11 unreadable image(s) and their pairs: {shown}" in messages


def test_file_check_options_are_named_when_refused(tmp_path):
    kw = dict(path=str(tmp_path), image_size=8, channels=3)
    assert refusal(lambda: PairedImages(**kw, max_image_pixels=0)) == (
        "data.max_image_pixels=0 must be a positive number of pixels (w x h)."
    )
    assert refusal(lambda: PairedImages(**kw, outside_links="maybe")) == (
        "data.outside_links='maybe': use error (the default) or follow."
    )
