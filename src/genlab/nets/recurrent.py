"""Recurrent (GRU/LSTM) encoder and decoder.

An image (B, C, H, W) is read as a sequence of H rows, each row the C*W values of that row;
any (B, T, F) sequence works too. The encoder's code is a linear map of the last layer's
final hidden state(s); the decoder starts its RNN from a state computed from the code, feeds
the code at every step and maps each step's output to one row (logits).
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.nets.layers import activation as make_activation
from genlab.utils.errors import GenlabError

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def _cell(cell: str, who: str) -> type[nn.RNNBase]:
    if cell not in CELLS:
        raise GenlabError(
            f"{who}: cell={cell!r} is not a recurrent cell: use one of {sorted(CELLS)}."
        )
    return CELLS[cell]


def _sequence_shape(
    channels: int | None,
    image_size: int | None,
    seq_len: int | None,
    features: int | None,
    who: str,
) -> tuple[int, int]:
    """(steps, features per step): from the image (H rows of C*W) or given directly."""
    if seq_len is not None and features is not None:
        return seq_len, features
    if channels is None or image_size is None:
        raise GenlabError(
            f"{who} needs either channels and image_size (images read row by row) or seq_len "
            "and features (a (B, T, F) sequence); set them in model.encoder / model.decoder."
        )
    return image_size, channels * image_size


class RecurrentEncoder(nn.Module):
    """Image (B, C, H, W) read row by row, or a sequence (B, T, F) -> code (B, out_dim).

    `bidirectional` reads the rows both ways and concatenates the two final states.
    `out_activation` shapes the code (e.g. `sigmoid` for a KL-sparse autoencoder).
    """

    def __init__(
        self,
        *,
        out_dim: int,
        channels: int | None = None,
        image_size: int | None = None,
        seq_len: int | None = None,
        features: int | None = None,
        cell: str = "gru",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        out_activation: str | None = None,
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.seq_len, self.features = _sequence_shape(
            channels, image_size, seq_len, features, "RecurrentEncoder"
        )
        self.cell = cell
        self.rnn = _cell(cell, "RecurrentEncoder")(
            self.features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(self.directions * hidden_size, out_dim)
        self.out_act = make_activation(out_activation)

    def as_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H, C*W); a (B, T, F) sequence passes through."""
        if x.ndim == 4:
            b, c, h, w = x.shape
            x = x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # row t holds every channel of row t
        if x.ndim != 3 or x.shape[-1] != self.features:
            raise GenlabError(
                f"RecurrentEncoder was built for steps of {self.features} features (channels * "
                f"image_size, or `features`) but got input of shape {tuple(x.shape)}: size "
                "model.encoder from the data (channels: ${data.channels}, image_size: "
                "${data.image_size})."
            )
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(self.as_sequence(x))
        h = state[0] if self.cell == "lstm" else state  # (layers * dirs, b, hidden)
        last = h[-self.directions :].permute(1, 0, 2).flatten(1)  # (b, dirs * hidden)
        return self.out_act(self.head(last))  # (b, out_dim)


class RecurrentDecoder(nn.Module):
    """Code (B, in_dim) -> image logits (B, C, H, W) row by row, or (B, T, F) sequence logits
    when built with `seq_len` and `features` instead of an image shape."""

    def __init__(
        self,
        *,
        in_dim: int,
        channels: int | None = None,
        image_size: int | None = None,
        seq_len: int | None = None,
        features: int | None = None,
        cell: str = "gru",
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.image = seq_len is None or features is None
        self.channels = channels
        self.seq_len, self.features = _sequence_shape(
            channels, image_size, seq_len, features, "RecurrentDecoder"
        )
        self.cell, self.num_layers, self.hidden_size = cell, num_layers, hidden_size
        n_states = 2 if cell == "lstm" else 1  # LSTM starts from (h0, c0)
        self.init_state = nn.Linear(in_dim, n_states * num_layers * hidden_size)
        self.rnn = _cell(cell, "RecurrentDecoder")(
            in_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size, self.features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        state = torch.tanh(self.init_state(z)).view(b, -1, self.num_layers, self.hidden_size)
        state = state.permute(1, 2, 0, 3).contiguous()  # (n_states, layers, b, hidden)
        h0 = (state[0], state[1]) if self.cell == "lstm" else state[0]
        steps = z.unsqueeze(1).expand(b, self.seq_len, self.in_dim)  # the code at every step
        out, _ = self.rnn(steps, h0)  # (b, t, hidden)
        rows = self.head(out)  # (b, t, features)
        if not self.image:
            return rows
        c = self.channels
        return rows.view(b, self.seq_len, c, -1).permute(0, 2, 1, 3).contiguous()  # (b, c, h, w)
