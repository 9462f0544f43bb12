"""Captions as token ids: a vocabulary built from the training captions, and the one
tokenisation every caption goes through (datasets, the sampling CLI, the caption writer).

Words are lower-cased runs of letters and digits (`words`); punctuation is dropped, as in the
text-to-image literature (AttnGAN's tokenizer). Id 0 is padding (`<pad>`) and id 1 stands for
a word the vocabulary does not know (`<unk>`), used only where a caller asks for it: a caption
given by a user is refused with its unknown words named (`unknown="error"`, the default),
while the captions of real evaluation splits (CUB's test classes use words the training
classes never do) map them to `<unk>`. A token sequence (the `tokens` condition of
genlab.data.modality) is int64 (L,), the words first and 0s after them.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from genlab.utils.errors import GenlabError
from genlab.utils.untrusted import read_json_object

PAD, UNK = "<pad>", "<unk>"
UNKNOWN = ("error", "unk")
TOO_LONG = ("error", "truncate")
# a vocabulary file holds at most this many words (CUB's captions use about 5,500)
MAX_WORDS = 200_000
MAX_WORD_CHARS = 64
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words of a caption: lower-cased runs of letters and digits (punctuation dropped)."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Word <-> id. `words[0]` is `<pad>`, `words[1]` is `<unk>`; the rest as built."""

    def __init__(self, words: Sequence[str], *, source: str = "the training captions") -> None:
        words = tuple(words)
        if words[:2] != (PAD, UNK):
            raise GenlabError(
                f"a caption vocabulary starts with {PAD!r} and {UNK!r} (ids 0 and 1); "
                f"{source} starts with {list(words[:2])!r}."
            )
        if len(set(words)) != len(words):
            dup = next(w for w, n in Counter(words).items() if n > 1)
            raise GenlabError(f"the caption vocabulary of {source} lists {dup!r} twice.")
        self.words, self.source = words, source
        self.index = {w: i for i, w in enumerate(words)}

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.words == self.words

    def __contains__(self, word: str) -> bool:
        return word in self.index and word not in (PAD, UNK)

    @classmethod
    def build(
        cls,
        captions: Iterable[str],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        source: str = "the training captions",
    ) -> Vocabulary:
        """The words of `captions` seen at least `min_count` times, most frequent first (ties
        alphabetically, so the ids depend only on the captions), at most `max_size` ids in
        all (with `<pad>` and `<unk>`)."""
        counts = Counter(w for text in captions for w in words(text))
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        if max_size is not None:
            kept = kept[: max(0, max_size - 2)]
        return cls((PAD, UNK, *kept), source=source)

    # --- text -> ids ------------------------------------------------------------------------
    def encode(
        self,
        text: str,
        *,
        max_length: int,
        unknown: str = "error",
        too_long: str = "error",
        where: str = "",
    ) -> list[int]:
        """Ids of the caption's words (unpadded). Unknown words: a GenlabError naming them
        (`unknown="error"`) or id 1 (`"unk"`); more than `max_length` words: an error or the
        first `max_length` (`too_long="truncate"`). `where` says where the caption came from
        (a file, an option) for the messages."""
        if unknown not in UNKNOWN or too_long not in TOO_LONG:
            raise ValueError(f"unknown={unknown!r} / too_long={too_long!r}")
        found = words(text)
        at = f" ({where})" if where else ""
        if not found:
            raise GenlabError(
                f"the caption {text!r}{at} has no words: write a caption of letters and digits."
            )
        missing = [w for w in found if w not in self]
        if missing and unknown == "error":
            unique = list(dict.fromkeys(missing))
            hints = []
            for w in unique[:3]:
                close = difflib.get_close_matches(w, self.words[2:], n=3)
                if close:
                    hints.append(f"{w!r}: did you mean {', '.join(map(repr, close))}?")
            raise GenlabError(
                f"the caption {text!r}{at} uses {', '.join(map(repr, unique))}, not in the "
                f"vocabulary of {len(self) - 2} words built from {self.source}: rephrase it "
                "with words of the training captions." + (" " + " ".join(hints) if hints else "")
            )
        if len(found) > max_length:
            if too_long == "error":
                raise GenlabError(
                    f"the caption {text!r}{at} has {len(found)} words, more than the "
                    f"{max_length} the model reads (data.max_length): shorten it."
                )
            found = found[:max_length]
        return [self.index.get(w, 1) for w in found]

    def encode_batch(self, texts: Sequence[str], *, max_length: int, **kwargs) -> torch.Tensor:
        """int64 (N, max_length) token ids of `texts`, 0-padded."""
        out = torch.zeros(len(texts), max_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = self.encode(text, max_length=max_length, **kwargs)
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    # --- ids -> text ------------------------------------------------------------------------
    def decode(self, ids: Iterable[int]) -> str:
        """The words of a token sequence (padding skipped), joined by spaces."""
        out = []
        for i in ids:
            i = int(i)
            if i == 0:
                continue
            if not 0 <= i < len(self.words):
                raise GenlabError(
                    f"token id {i} is outside this vocabulary of {len(self.words)} ids: the "
                    "tokens come from another vocabulary."
                )
            out.append(self.words[i])
        return " ".join(out)

    def decode_batch(self, tokens: torch.Tensor) -> list[str]:
        return [self.decode(row) for row in torch.as_tensor(tokens).tolist()]

    # --- files ------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"kind": "genlab-caption-vocabulary", "words": list(self.words)}

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON (atomically: a temporary file renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """A vocabulary file written by `save` (read as untrusted data: bounded, checked)."""
        data = read_json_object(path, what="caption vocabulary")
        found = data.get("words")
        if (
            data.get("kind") != "genlab-caption-vocabulary"
            or not isinstance(found, list)
            or len(found) > MAX_WORDS
            or not all(isinstance(w, str) and 0 < len(w) <= MAX_WORD_CHARS for w in found)
        ):
            raise GenlabError(
                f"caption vocabulary {path} is not one genlab wrote (a 'words' list of at most "
                f"{MAX_WORDS:,} short strings): use the vocabulary file of the run."
            )
        return cls(found, source=str(path))
