"""Does the image say what the text says? The caption-accuracy reader and R-precision
(genlab.metrics.caption_metrics) on real captioned digits, over seeds, against the same
measures on shuffled captions; and the caption writer (grid, tables, W&B media).

Measured here (2 shared cores, 32-pixel canvases, 2,000 training canvases, seeds 0-2): the
reader (300 steps of 32 canvases, about 2.5 s of CPU) reads the real test canvases' captions
right 0.86-0.88 of the time, shuffled captions at the oracle's chance (~0.01); R-precision
(200 steps of 32, about 4 s) 0.48-0.57 on real pairs, 0.01-0.03 shuffled (chance 0.01).

Broken variants each test was seen failing on (in a scratch copy): the reader's quadrants cut
column-major (accuracy falls to the shuffled level), R-precision counting ties as hits (the
shuffled level rises to 1.0 with a constant encoder), captions not escaped in the tables,
captions drawn under the wrong cell.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from genlab.data.captioned_digits import CaptionedDigits, satisfies
from genlab.data.modality import image
from genlab.metrics.caption_metrics import (
    QuadrantReader,
    caption_accuracy,
    r_precision,
    spec_accuracy,
    train_reader,
    train_text_image_encoder,
)
from genlab.writers import caption_writer

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def digits() -> CaptionedDigits:
    dm = CaptionedDigits(
        image_size=32, n_train=2000, n_val=10, n_test=300, n_heldout=300, captions_per_image=3
    )
    dm.setup()
    return dm


def shuffled(items: list, seed: int) -> list:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def test_the_oracle_reads_every_true_caption(digits):
    """On the true layouts every generated caption is satisfied in every aspect."""
    data = digits.dataset("test")
    specs = [s for per in data.specs for s in per]
    layouts = [lay for lay in data.layouts for _ in range(3)]
    acc = spec_accuracy(layouts, specs)
    assert acc["caption_acc"] == acc["digit_acc"] == acc["position_acc"] == 1.0


def test_quadrants_are_cut_row_major():
    x = torch.arange(4.0).view(1, 1, 2, 2).repeat_interleave(3, 2).repeat_interleave(3, 3)
    assert QuadrantReader.quadrants(x)[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("seed", SEEDS)
def test_the_reader_reads_real_captions_and_not_shuffled_ones(digits, seed):
    """Trained on the training canvases' layouts, the reader finds the test captions true of
    their canvases (the ceiling a model can reach), held-out combinations as well, and a
    shuffled caption no more often than the true layouts make it true (chance)."""
    train = digits.dataset("train")
    reader = train_reader(train.images, train.layouts, steps=300, batch_size=32, seed=seed)
    for split in ("test", "test_heldout"):
        data = digits.dataset(split)
        specs = [per[seed % 3] for per in data.specs]
        real = caption_accuracy(reader, data.images, specs)
        assert real["caption_acc"] >= 0.75 and real["position_acc"] >= 0.97, (split, real)
        wrong = shuffled(specs, seed)
        chance = spec_accuracy(data.layouts, wrong)["caption_acc"]
        read = caption_accuracy(reader, data.images, wrong)["caption_acc"]
        assert chance < 0.05 and read <= chance + 0.03, (split, read, chance)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_r_precision_ranks_the_true_caption_first(digits, seed):
    train, test = digits.dataset("train"), digits.dataset("test")
    enc = train_text_image_encoder(
        train.images,
        train.tokens,
        vocab_size=len(digits.vocab),
        steps=200,
        batch_size=32,
        seed=seed,
    )
    tokens = test.tokens[:, 0]

    def also_true(i, j):  # another canvas's caption that is true of this one is no negative
        return satisfies(test.specs[j][0], test.layouts[i])

    real = r_precision(enc, test.images, tokens, exclude=also_true, seed=seed)
    wrong = r_precision(enc, test.images, tokens[torch.randperm(len(tokens))], seed=seed)
    assert real >= 0.3 and wrong <= 0.06, (real, wrong)


def test_r_precision_of_an_encoder_that_cannot_tell_is_zero(digits):
    """A constant encoder ranks nothing first: ties are not hits."""
    test = digits.dataset("test")
    enc = train_text_image_encoder(
        test.images[:8], test.tokens[:8], vocab_size=len(digits.vocab), steps=0
    )
    for p in enc.image.parameters():
        p.data.zero_()
    assert r_precision(enc, test.images, test.tokens[:, 0], candidates=20) == 0.0


# --- the caption writer -------------------------------------------------------------------------
CAPTIONS = [
    "the digit 3 is at the top left",
    "",
    "a | pipe and <script>alert(1)</script> & more words that wrap onto further lines here",
    "a 7 is to the right of a 2",
    "x",
]


def test_caption_writer_files(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 16, 16, generator=gen)
    x[3] = 0.0  # a black image: its cell is black down to the caption
    files = caption_writer.save(
        x, tmp_path / "samples_e0001", modality=image(1, 16), n_per_row=3, captions=CAPTIONS
    )
    assert [f.name for f in files] == [f"samples_e0001.{s}" for s in ("png", "md", "html")]
    grid = np.asarray(Image.open(files[0]).convert("L")).astype(int)
    # cells of 6 x 16 = 96 pixels (at least 96 wide), 2 px apart, two rows
    scale, pad = 6, caption_writer.PAD
    cell = 16 * scale
    assert grid.shape[1] == 3 * (cell + pad) + pad
    row_h = (grid.shape[0] - pad) // 2
    for i, text in enumerate(CAPTIONS):
        r, c = divmod(i, 3)
        left, top = pad + c * (cell + pad), pad + r * row_h
        shown = grid[top : top + cell, left : left + cell]
        expected = np.kron((x[i, 0] * 255 + 0.5).floor().numpy(), np.ones((scale, scale)))
        assert np.abs(shown - expected).max() <= 1, i
        band = grid[top + cell : top + row_h - pad, left : left + cell]
        assert (band.min() < 128) == bool(text), (i, text)  # ink under it iff it has a caption
    md = files[1].read_text()
    assert "a \\| pipe and &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in md
    assert "| 3 | 2, 1 | a 7 is to the right of a 2 |" in md
    page = files[2].read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('src="data:image/png;base64,') == 5
    preview = caption_writer.preview(x, modality=image(1, 16), n_per_row=3, captions=CAPTIONS)
    assert preview.shape == (3, *grid.shape)
    # without captions: the image writer's grid, nothing else
    plain = caption_writer.save(x, tmp_path / "plain", modality=image(1, 16))
    assert [f.name for f in plain] == ["plain.png"]


def test_a_huge_caption_is_cut_under_its_image_and_kept_whole_in_the_table(tmp_path):
    huge = "word " * 20_000
    files = caption_writer.save(
        torch.rand(1, 1, 8, 8), tmp_path / "s", modality=image(1, 8), captions=[huge]
    )
    lines = caption_writer.wrap(
        huge, 96, ImageDraw.Draw(Image.new("RGB", (1, 1))), ImageFont.load_default()
    )
    assert len(lines) == caption_writer.MAX_LINES and lines[-1].endswith("...")
    assert files[1].read_text().count("word") == 20_000


def test_caption_writer_wandb_media():
    x = torch.rand(3, 3, 8, 8)
    media = caption_writer.media(x, modality=image(3, 8), captions=CAPTIONS[:3])
    assert [m._caption for m in media] == CAPTIONS[:3]
    table = caption_writer.table(x, CAPTIONS[:3])
    assert table.columns == ["image", "caption"]
    assert [row[1] for row in table.data] == CAPTIONS[:3]
