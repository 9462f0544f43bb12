"""Video data: the Moving MNIST generator's physics and seeds, the published .npy layout and
folders of frames read from real files, and bad files named in genlab's error."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data.moving_mnist import (
    MovingDigits,
    MovingMNIST,
    MovingMNISTFile,
    bounce_trajectory,
)
from genlab.data.video_folders import VideoFolders
from genlab.utils.errors import GenlabError

FREE, SPEED = 18.0, 5.0  # a 14-pixel digit in a 32-pixel frame, moving fast to bounce often


def paths(stochastic: bool, n: int = 40, frames: int = 60):
    for seed in range(n):
        rng = np.random.default_rng(seed)
        yield bounce_trajectory(rng, frames=frames, free=FREE, speed=SPEED, stochastic=stochastic)


# --- the generator's physics --------------------------------------------------------------
@pytest.mark.parametrize("stochastic", [False, True])
def test_positions_stay_in_the_frame_and_moves_are_straight_or_reflected(stochastic):
    """Seen failing with the reflection replaced by a clamp at the edge (a move that hits an
    edge then ends on it, not at its mirror image) and with `new > free` tested as `>= free +
    1` (positions leave the frame)."""
    bounces = 0
    for pos, vel, hit in paths(stochastic):
        assert (pos >= 0).all() and (pos <= FREE).all()
        moved = pos[:-1] + vel[:-1]  # where each move would end without an edge
        mirror = np.where(moved < 0, -moved, np.where(moved > FREE, 2 * FREE - moved, moved))
        assert np.allclose(pos[1:], mirror)
        assert np.array_equal(hit[:-1], (moved < 0) | (moved > FREE))
        # constant speed, bounce or not
        assert np.allclose(np.linalg.norm(vel, axis=1), SPEED)
        bounces += int(hit.sum())
    assert bounces > 100  # the paths do bounce


def test_a_bounce_reverses_the_velocity_component_of_the_edge_hit():
    """Deterministic variant: between bounces the velocity is constant; at a bounce exactly the
    hit components change sign. Seen failing with both components reversed at any bounce and
    with the reversal left out."""
    for _, vel, hit in paths(False):
        expected = np.where(hit[:-1], -vel[:-1], vel[:-1])
        assert np.array_equal(vel[1:], expected)


def test_the_stochastic_variant_changes_direction_only_at_bounces():
    """Between bounces the direction is kept; at a bounce the hit components point away from
    the edge and the new direction is a fresh draw (not the reflection). Seen failing with a
    fresh direction drawn every frame, and with the stochastic draw replaced by the
    reflection."""
    fresh = 0
    for pos, vel, hit in paths(True):
        for t in range(len(vel) - 1):
            if not hit[t].any():
                assert np.array_equal(vel[t + 1], vel[t])
                continue
            for axis in np.flatnonzero(hit[t]):
                at_far_edge = pos[t, axis] + vel[t, axis] > FREE
                assert (vel[t + 1, axis] < 0) == at_far_edge
            fresh += not np.allclose(vel[t + 1], np.where(hit[t], -vel[t], vel[t]))
    assert fresh > 100


def solid_digits(n: int = 3, size: int = 6) -> torch.Tensor:
    return torch.full((n, size, size), 255, dtype=torch.uint8)


def test_rendered_clips_put_each_digit_at_its_position():
    """One solid square digit: every frame lights exactly the square at the rounded position.
    Seen failing with rows and columns swapped in `render`."""
    ds = MovingDigits(
        solid_digits(),
        length=4,
        seed=3,
        split="train",
        image_size=20,
        num_digits=1,
        step_length=0.3,
        stochastic=False,
        context_frames=2,
        frames=12,
    )
    for index in range(4):
        _, pos, _, _ = ds.trajectories(index)
        clip = ds.clip(index)
        for t, (r, c) in enumerate(np.rint(pos[:, 0]).astype(int)):
            expected = np.zeros((20, 20), dtype=np.uint8)
            expected[r : r + 6, c : c + 6] = 255
            assert np.array_equal(clip[t], expected), (index, t)


def small_mnist(**kw) -> MovingMNIST:
    args = dict(
        image_size=32,
        context_frames=3,
        future_frames=2,
        train_size=8,
        val_size=4,
        test_size=4,
        batch_size=4,
    )
    dm = MovingMNIST(data_dir="unused", **{**args, **kw})
    dm.setup()
    return dm


def test_seeds_reproduce_and_epochs_bring_new_training_clips():
    """Clip i of epoch e is a function of (clip_seed, i, e): two datamodules agree; epochs and
    indices differ; val/test clips are the same at every read. Seen failing with the epoch
    left out of the clip's seed (every epoch the same clips)."""
    a, b = small_mnist(), small_mnist()
    train_a, train_b = a.dataset("train"), b.dataset("train")
    for key in (0, 5, 8 + 5, 3 * 8 + 1):  # keys past the length are later epochs
        assert all(torch.equal(u, v) for u, v in zip(train_a[key], train_b[key], strict=True))
    assert not torch.equal(train_a[5][0], train_a[8 + 5][0])  # clip 5, epochs 0 and 1
    assert not torch.equal(train_a[5][0], train_a[6][0])
    assert not torch.equal(small_mnist(clip_seed=1).dataset("train")[5][0], train_a[5][0])
    val = a.dataset("val")
    assert torch.equal(val[2][0], val[2][0]) and torch.equal(val[2][0], b.dataset("val")[2][0])


def test_training_loader_resumes_mid_epoch_on_the_same_clips():
    """Lightning's loader state (epoch 1, 1 batch served) gives the rest of epoch 1 exactly.
    Seen failing with EpochClips not honouring the skip (the epoch starts over)."""
    dm = small_mnist()
    straight = dm.train_dataloader()
    straight.sampler.set_epoch(1)
    expected = [x for x, _ in straight][1:]
    resumed = dm.train_dataloader()
    resumed.sampler.set_epoch(1)
    resumed.load_state_dict({"epoch": 1, "batches": 1})
    got = [x for x, _ in resumed]
    assert len(got) == len(expected) == 1
    assert torch.equal(got[0], expected[0])


def test_batches_are_future_and_context_of_one_clip_and_digits_are_disjoint():
    dm = small_mnist()
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 2, 1, 32, 32) and y.shape == (4, 3, 1, 32, 32)
    assert dm.modality.kind == "video" and dm.modality.shape == (2, 1, 32, 32)
    assert dm.condition.kind == "video" and dm.condition.shape == (3, 1, 32, 32)
    clip = dm.dataset("val").clip(0)  # (5, 32, 32) uint8
    assert torch.equal(torch.cat([y[0], x[0]])[:, 0], torch.from_numpy(clip).float() / 255)
    pools = dm.digit_pools()
    seen = {k: {bytes(d.numpy()) for d in pool} for k, pool in pools.items()}
    assert {k: len(p) for k, p in pools.items()} == {"train": 4000, "val": 500, "test": 500}
    assert not (
        seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"]
    )


# --- the published .npy layout ------------------------------------------------------------
def write_npy(path, shape=(6, 8, 16, 16)):
    t, n = shape[:2]
    arr = np.zeros(shape, dtype=np.uint8)
    for i in range(t):
        for j in range(n):
            arr[i, j] = 10 * j + i  # frame i of clip j
    np.save(path, arr)
    return arr


def npy_module(path, **kw) -> MovingMNISTFile:
    args = dict(
        path=str(path), image_size=16, context_frames=2, future_frames=3, test_fraction=0.4
    )
    return MovingMNISTFile(**{**args, **kw})


def test_npy_file_is_read_time_first(tmp_path):
    """Frame t of clip n is array[t, n]; the splits partition the clips. Seen failing with the
    clip taken as array[n, t] (time and clips swapped)."""
    path = tmp_path / "mnist_test_seq.npy"
    arr = write_npy(path)
    dm = npy_module(path)
    dm.setup()
    seen = []
    for split in ("train", "val", "test"):
        ds = dm.dataset(split)
        for i, n in enumerate(ds.indices):
            x, y = ds[i]
            clip = torch.cat([y, x])[:, 0]  # (5, 16, 16)
            expected = torch.from_numpy(arr[:5, n].astype(np.float32)) / 255
            assert torch.equal(clip, expected)
        seen += ds.indices
    assert sorted(seen) == list(range(8)) and len(dm.dataset("test")) == 3
    # clips first, when the file says so
    np.save(tmp_path / "nthw.npy", np.ascontiguousarray(arr.transpose(1, 0, 2, 3)))
    other = npy_module(tmp_path / "nthw.npy", layout="nthw", test_fraction=1.0, val_fraction=0.0)
    other.setup()
    x, y = other.dataset("test")[3]
    assert torch.equal(torch.cat([y, x])[:, 0] * 255, torch.from_numpy(arr[:5, 3]).float())


def test_a_file_with_more_frames_than_clips_read_time_first_is_questioned(tmp_path):
    path = tmp_path / "seq.npy"
    write_npy(path, shape=(9, 5, 16, 16))
    with pytest.warns(UserWarning, match="data.layout=nthw"):
        npy_module(path).setup()


def test_npy_frames_are_resized(tmp_path):
    path = tmp_path / "seq.npy"
    arr = write_npy(path, shape=(6, 7, 32, 32))
    dm = npy_module(path, image_size=16, test_fraction=1.0, val_fraction=0.0)
    dm.setup()
    x, y = dm.dataset("test")[0]
    assert x.shape == (3, 1, 16, 16) and y.shape == (2, 1, 16, 16)
    # a constant frame stays that constant through the antialiased resize
    assert torch.equal(y[1], torch.full((1, 16, 16), float(arr[1, 0, 0, 0]) / 255))


class Marker:
    """Unpickling this writes a file: proof that a reader ran code from the data."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __reduce__(self):
        return (open, (self.where, "w"))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("float", "float32, not uint8"),
        ("truncated", "truncated"),
        ("pickle", "not uint8"),
        ("three_axes", "3 axes"),
        ("too_few_frames", "fewer than"),
        ("too_big", "data.max_file_bytes"),
        ("not_npy", "does not parse"),
    ],
)
def test_bad_npy_files_are_named_before_anything_is_read(tmp_path, case, expected):
    """Each refusal names the file and why, before the array is mapped; a pickled payload is
    never run (numpy.load(allow_pickle=True) of that file writes the marker). Seen failing
    without the size check (the truncated file: numpy's "mmap length is greater than file
    size" traceback at the first read) and without the dtype check (the float and pickled
    files refused for another reason, not named as the wrong type)."""
    path = tmp_path / "mnist_test_seq.npy"
    marker = tmp_path / "ran"
    kw: dict = {}
    if case == "float":
        np.save(path, np.zeros((6, 8, 16, 16), dtype=np.float32))
    elif case == "truncated":
        write_npy(path)
        os.truncate(path, os.path.getsize(path) - 100)
    elif case == "pickle":
        np.save(path, np.array([Marker(str(marker))] * 4, dtype=object), allow_pickle=True)
    elif case == "three_axes":
        np.save(path, np.zeros((6, 8, 16), dtype=np.uint8))
    elif case == "too_few_frames":
        write_npy(path, shape=(4, 8, 16, 16))
    elif case == "too_big":
        write_npy(path)
        kw["max_file_bytes"] = 1000
    else:
        path.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': oops   \n")
    dm = npy_module(path, **kw)
    with pytest.raises(GenlabError) as err:
        dm.setup()
        dm.dataset("test")[0]
    assert str(path) in str(err.value) and expected in str(err.value)
    assert not marker.exists()


# --- folders of frames --------------------------------------------------------------------
def write_clip(folder, values, size=(12, 12), names="frame_{}.png", start=1, mode="L"):
    folder.mkdir(parents=True)
    for i, v in enumerate(values):
        colour = v if mode == "L" else (v, 255 - v, 0)
        Image.new(mode, size, colour).save(folder / names.format(start + i))


def test_folders_of_numbered_frames_read_in_frame_order(tmp_path):
    """Frames are ordered by their number (frame_10 after frame_9, not after frame_1),
    windows of context + future frames tile each clip, whole clips go to one split. Seen
    failing with frames sorted by name (frame_10 between frame_1 and frame_2)."""
    root = tmp_path / "videos"
    for k in range(5):
        write_clip(root / f"clip{k}", [20 * k + t for t in range(12)])
    dm = VideoFolders(
        path=str(root),
        channels=1,
        image_size=12,
        context_frames=2,
        future_frames=3,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    dm.setup()
    seen = set()
    for split in ("train", "val", "test"):
        ds = dm.dataset(split)
        clips = {os.path.dirname(files[0]) for files, _ in ds.windows}
        assert not clips & seen
        seen |= clips
        for i in range(len(ds)):
            x, y = ds[i]
            clip = torch.cat([y, x])[:, 0, 0, 0] * 255  # one value per frame
            k = int(os.path.basename(os.path.dirname(ds.windows[i][0][0]))[4:])
            start = ds.windows[i][1]
            expected = torch.tensor([20.0 * k + start + t for t in range(5)])
            assert torch.allclose(clip, expected, atol=1e-4), (split, i)
    assert len(seen) == 5 and len(dm.dataset("train")) == 3 * 2  # 12 frames: 2 windows of 5


def test_train_val_test_folders_and_rgb_frames(tmp_path):
    root = tmp_path / "videos"
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        for k in range(n):
            write_clip(
                root / split / f"c{k}",
                [50, 100, 150, 200],
                size=(20, 10),
                mode="RGB",
                names="{:04d}.jpg" if split == "test" else "{:04d}.png",
                start=0,
            )
    dm = VideoFolders(
        path=str(root),
        channels=3,
        image_size=8,
        context_frames=1,
        future_frames=3,
        window_stride=1,
    )
    dm.setup()
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [3, 1, 2]
    x, y = dm.dataset("train")[0]
    assert x.shape == (3, 3, 8, 8) and y.shape == (1, 3, 8, 8)
    assert torch.allclose(y[0, :, 0, 0] * 255, torch.tensor([50.0, 205.0, 0.0]), atol=1e-4)


def test_bad_clips_are_named_in_one_error_or_skipped(tmp_path):
    """Missing frames, mixed sizes, a non-image named .png, a stray file and too few frames:
    each clip folder is named with its problem. Seen failing without the gap check (the
    clip with frame 3 missing was read as consecutive frames)."""
    root = tmp_path / "videos"
    for k in range(3):
        write_clip(root / f"good{k}", list(range(6)))
    write_clip(root / "gap", list(range(6)))
    os.remove(root / "gap" / "frame_3.png")
    write_clip(root / "sizes", list(range(6)))
    Image.new("L", (13, 12)).save(root / "sizes" / "frame_4.png")
    write_clip(root / "text", list(range(6)))
    (root / "text" / "frame_2.png").write_text("not an image")
    write_clip(root / "stray", list(range(6)))
    (root / "stray" / "notes.txt").write_text("hello")
    write_clip(root / "short", list(range(3)))
    kw = dict(
        path=str(root),
        channels=1,
        image_size=12,
        context_frames=2,
        future_frames=2,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    with pytest.raises(GenlabError) as err:
        VideoFolders(**kw).setup()
    msg = str(err.value)
    assert "5 clip folder(s)" in msg and "on_bad_clip=skip" in msg
    for name, why in [
        ("gap", "missing frame(s) 3"),
        ("sizes", "different sizes"),
        ("text", "frame_2.png is not a PNG"),
        ("stray", "notes.txt"),
        ("short", "3 frame(s)"),
    ]:
        assert f"{root / name}: " in msg and why in msg.split(str(root / name) + ": ")[1]
    assert "good" not in msg
    with pytest.warns(UserWarning, match="left out 5 clip folder"):
        dm = VideoFolders(**kw, on_bad_clip="skip")
        dm.setup()
    assert len(dm.dataset("train")) == 3


def test_a_frame_that_no_longer_decodes_is_named(tmp_path):
    root = tmp_path / "videos"
    write_clip(root / "c0", list(range(4)))
    dm = VideoFolders(
        path=str(root),
        channels=1,
        image_size=12,
        context_frames=2,
        future_frames=2,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    dm.setup()
    data = (root / "c0" / "frame_2.png").read_bytes()
    (root / "c0" / "frame_2.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(GenlabError, match=r"frame_2\.png does not decode"):
        dm.dataset("train")[0]


def test_speed_is_the_step_length_of_the_free_range():
    dm = small_mnist(step_length=0.25)
    ds = dm.dataset("val")
    _, _, vel, _ = ds.trajectories(0)
    assert ds.free == 32 - 14
    assert np.allclose(np.linalg.norm(vel, axis=-1), 0.25 * 18)
    assert math.isclose(dm.digit_size, 14)
