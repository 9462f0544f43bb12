"""Sentence encoders: token ids (B, L), 0-padded (the `tokens` condition), -> one embedding
per caption (B, out_dim), the phi_t that StackGAN's conditioning augmentation and
matching-aware discriminators read.

- `GRUTextEncoder`: a (bidirectional) GRU over word embeddings; the final hidden states of
  the real words (each direction's state read at the caption's last word, so padding never
  changes the result).
- `TransformerTextEncoder`: a small transformer encoder, padding masked, mean over words.
- `LookupTextEncoder`: fixed pretrained vectors per caption (the paper's char-CNN-RNN
  embeddings, read by genlab.data.cub_captions from a .npz): a table from token sequences
  to vectors, held as buffers so a checkpoint carries it.

Training steps never wait for the device: the token-range checks (which read values back to
the host) run in eval mode, on the captions a user gives; a model trained on a dataset checks
the data's vocabulary against its own once before training.
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.utils.errors import GenlabError


def token_mask(tokens: torch.Tensor) -> torch.Tensor:
    """bool (B, L): True at words, False at padding (id 0)."""
    return tokens != 0


def _check_tokens(tokens: torch.Tensor, vocab_size: int, who: str, *, values: bool) -> None:
    """Shape and dtype always; with `values`, every id within the vocabulary (a read back to
    the host: eval mode only, see the module doc)."""
    if tokens.ndim != 2 or tokens.dtype != torch.long:
        raise GenlabError(
            f"{who} reads int64 token ids of shape (batch, length), got {tokens.dtype} of shape "
            f"{tuple(tokens.shape)}."
        )
    if values and tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise GenlabError(
            f"{who}: a token id in [{int(tokens.min())}, {int(tokens.max())}] is outside its "
            f"vocabulary of {vocab_size}: the captions were tokenised with another vocabulary."
        )


def words_first(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens with each caption's words moved to the front in order, word counts (B,) at
    least 1): a caption built by hand may have padding between its words."""
    mask = token_mask(tokens)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    return torch.gather(tokens, 1, order), mask.sum(1).clamp(min=1)


def reverse_words(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each caption's first `lengths` tokens in reverse order, the padding left after them."""
    at = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    n = lengths[:, None]
    return torch.gather(tokens, 1, torch.where(at < n, n - 1 - at, at))


def at_last_word(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """states (B, L, H) read at position lengths - 1: (B, H)."""
    index = (lengths - 1)[:, None, None].expand(-1, 1, states.shape[2])
    return torch.gather(states, 1, index)[:, 0]


class GRUTextEncoder(nn.Module):
    """tokens (B, L) -> (B, out_dim): word embeddings, a GRU run forwards over the words of
    each caption (and, when `bidirectional`, a second GRU run over them backwards), the
    states at the caption's last word concatenated and projected. A caption of no words (all
    padding) reads as one padding token.

    The states are read at each caption's last word rather than packing the batch, which
    would copy the lengths to the host at every forward pass; the result is the same, and
    padding after the words never changes it (a GRU's state at a step does not depend on
    the steps after it)."""

    def __init__(
        self,
        *,
        vocab_size: int,
        embed_dim: int = 128,
        hidden_dim: int = 128,
        out_dim: int = 256,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.vocab_size, self.out_dim = vocab_size, out_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.rnn_reverse = (
            nn.GRU(embed_dim, hidden_dim, batch_first=True) if bidirectional else None
        )
        self.proj = nn.Linear(hidden_dim * (2 if bidirectional else 1), out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _check_tokens(tokens, self.vocab_size, "GRUTextEncoder", values=not self.training)
        words, lengths = words_first(tokens)  # (b, l), (b,)
        states, _ = self.rnn(self.drop(self.embed(words)))  # (b, l, hidden)
        h = [at_last_word(states, lengths)]
        if self.rnn_reverse is not None:
            back, _ = self.rnn_reverse(self.drop(self.embed(reverse_words(words, lengths))))
            h.append(at_last_word(back, lengths))
        return self.proj(torch.cat(h, dim=1))  # (b, out_dim)


class TransformerTextEncoder(nn.Module):
    """tokens (B, L) -> (B, out_dim): word + learned position embeddings, a transformer
    encoder with padding masked out, the mean over the words, projected."""

    def __init__(
        self,
        *,
        vocab_size: int,
        max_length: int,
        dim: int = 128,
        heads: int = 4,
        layers: int = 2,
        out_dim: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.vocab_size, self.max_length, self.out_dim = vocab_size, max_length, out_dim
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(max_length, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=dropout, batch_first=True
        )
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _check_tokens(tokens, self.vocab_size, "TransformerTextEncoder", values=not self.training)
        if tokens.shape[1] > self.max_length:
            raise GenlabError(
                f"TransformerTextEncoder reads captions of up to {self.max_length} tokens, got "
                f"{tokens.shape[1]}: set its max_length to data.max_length."
            )
        mask = token_mask(tokens)
        mask = mask | ~mask.any(1, keepdim=True)  # an empty caption attends to its padding
        x = self.embed(tokens) + self.position[: tokens.shape[1]]  # (b, l, dim)
        x = self.body(x, src_key_padding_mask=~mask)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1)  # (b, dim)
        return self.proj(pooled)


def _row_hash(tokens: torch.Tensor) -> torch.Tensor:
    """An int64 hash per row of token ids (polynomial, wrapping), to find rows by value."""
    h = torch.zeros(len(tokens), dtype=torch.long, device=tokens.device)
    for j in range(tokens.shape[1]):
        h = h * 1_000_003 + tokens[:, j] + 1
    return h


class LookupTextEncoder(nn.Module):
    """tokens (B, L) -> the pretrained vector of that exact caption (B, D): a fixed table
    `keys` int64 (M, L) -> `vectors` (M, D), e.g. from
    `genlab.data.cub_captions.CaptionedPhotoData.text_embedding_table()`. A caption not in
    the table is a GenlabError (pretrained embeddings exist only for the dataset's captions:
    use a learned encoder to generate from new text)."""

    def __init__(self, *, keys: torch.Tensor, vectors: torch.Tensor) -> None:
        super().__init__()
        if keys.ndim != 2 or vectors.ndim != 2 or len(keys) != len(vectors):
            raise GenlabError(
                f"LookupTextEncoder needs keys (M, L) and vectors (M, D), got {tuple(keys.shape)} "
                f"and {tuple(vectors.shape)}."
            )
        hashes = _row_hash(keys.long())
        order = torch.argsort(hashes)
        self.register_buffer("keys", keys.long()[order])
        self.register_buffer("hashes", hashes[order])
        self.register_buffer("vectors", vectors.float()[order])
        self.out_dim = vectors.shape[1]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.shape[1] != self.keys.shape[1]:
            raise GenlabError(
                f"LookupTextEncoder holds captions of {self.keys.shape[1]} tokens, got shape "
                f"{tuple(tokens.shape)}."
            )
        h = _row_hash(tokens.long())
        at = torch.searchsorted(self.hashes, h).clamp(max=len(self.hashes) - 1)
        found = (self.hashes[at] == h) & (self.keys[at] == tokens).all(1)
        # a training step on an accelerator skips the check (it would make the host wait):
        # the table holds every caption of every split of the data it was built from
        checked = not self.training or tokens.device.type == "cpu"
        if checked and not bool(found.all()):
            raise GenlabError(
                f"{int((~found).sum())} of {len(tokens)} captions have no pretrained embedding: "
                "the embeddings file covers only the dataset's own captions. Use a learned text "
                "encoder to generate from new text."
            )
        return self.vectors[at]  # (b, d)
