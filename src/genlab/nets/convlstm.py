"""ConvLSTM (Shi et al. 2015) and its encoder-forecaster for next-frame prediction.

A ConvLSTM cell is an LSTM whose input-to-state and state-to-state maps are convolutions, so
its hidden and cell states are feature maps (B, hidden, H, W) and motion is modelled where it
happens. This cell has no peephole terms (the paper's W_c o c), as most reimplementations.

The encoder-forecaster reads the context frames with an encoder stack of cells; a forecaster
stack of the same sizes starts from the encoder's final states (the paper's state copy) and
predicts one frame per step from the frame before it (the last context frame, then the truth
or its own prediction: teacher forcing and scheduled sampling are the model's choice). Frames
are brought to the cells' resolution by stride-2 convolutions and back by transposed ones;
the frame is read out of all forecaster layers' hidden states at once (a 1x1 convolution of
their concatenation, as the paper's prediction layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from genlab.utils.errors import GenlabError

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (b, hidden, H, W)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer: (x (B, in, H, W), (h, c)) -> h, (h, c) with h, c (B, hidden, H, W).

    The four gates come from one convolution of [x, h] (`kernel_size`, same padding); the
    forget gate's bias starts at 1 so the cell keeps its state early in training.
    """

    def __init__(self, *, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise GenlabError(f"ConvLSTMCell: kernel_size={kernel_size} must be odd.")
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.gates = nn.Conv2d(
            in_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding="same"
        )
        with torch.no_grad():
            self.gates.bias.zero_()
            self.gates.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)

    def init_state(self, x: torch.Tensor) -> State:
        """Zero (h, c) for a batch like `x` (B, in, H, W)."""
        b, _, h, w = x.shape
        zeros = x.new_zeros(b, self.hidden_channels, h, w)
        return zeros, zeros

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        h, c = self.init_state(x) if state is None else state
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # (b, hidden, H, W)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ConvLSTMStack(nn.Module):
    """Layers of ConvLSTM cells, each reading the hidden state of the one below:
    (x (B, in, H, W), states) -> (every layer's h, states)."""

    def __init__(
        self, *, in_channels: int, hidden_channels: Sequence[int], kernel_size: int = 3
    ) -> None:
        super().__init__()
        sizes = [in_channels, *hidden_channels]
        self.cells = nn.ModuleList(
            ConvLSTMCell(in_channels=a, hidden_channels=b, kernel_size=kernel_size)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(
        self, x: torch.Tensor, states: list[State] | None = None
    ) -> tuple[list[torch.Tensor], list[State]]:
        states = states or [None] * len(self.cells)  # type: ignore[list-item]
        hs, out = [], []
        for cell, state in zip(self.cells, states, strict=True):
            x, new = cell(x, state)
            hs.append(x)
            out.append(new)
        return hs, out


def _down(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2))


class ConvLSTMPredictor(nn.Module):
    """The encoder-forecaster (see the module docstring): `encode_context` reads the context,
    `step` predicts the next frame's logits from the previous frame.

    - `hidden_channels`: one ConvLSTM layer per entry, in both stacks;
    - `frame_channels`: feature maps of the frame encoder; it halves the frames `downsample`
      times (any frame size: odd sizes are restored exactly on the way up).
    """

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        hidden_channels: Sequence[int] = (64, 64),
        kernel_size: int = 3,
        frame_channels: int = 16,
        downsample: int = 2,
    ) -> None:
        super().__init__()
        if not hidden_channels or downsample < 0 or image_size < 2**downsample:
            raise GenlabError(
                f"ConvLSTMPredictor: hidden_channels={list(hidden_channels)} needs at least one "
                f"layer, and downsample={downsample} halvings must leave at least one pixel of "
                f"data.image_size={image_size}."
            )
        self.channels, self.image_size = channels, image_size
        downs, c = [], channels
        for _ in range(downsample):
            downs.append(_down(c, frame_channels))
            c = frame_channels
        self.frame_encoder = nn.ModuleList(downs)
        self.encoder = ConvLSTMStack(
            in_channels=c, hidden_channels=hidden_channels, kernel_size=kernel_size
        )
        self.forecaster = ConvLSTMStack(
            in_channels=c, hidden_channels=hidden_channels, kernel_size=kernel_size
        )
        # the frame comes out of all forecaster layers at once (1x1 conv), then back up
        out = frame_channels if downsample else channels
        self.readout = nn.Conv2d(sum(hidden_channels), out, 1)
        self.frame_decoder = nn.ModuleList(
            nn.ConvTranspose2d(
                frame_channels, channels if i == downsample - 1 else frame_channels, 4, 2, 1
            )
            for i in range(downsample)
        )
        self.act = nn.LeakyReLU(0.2)

    def features(self, frame: torch.Tensor) -> tuple[torch.Tensor, list[torch.Size]]:
        """(B, C, H, W) -> (B, frame_channels, H', W') and the sizes on the way down."""
        sizes = []
        for down in self.frame_encoder:
            sizes.append(frame.shape[-2:])
            frame = down(frame)
        return frame, sizes

    def encode_context(self, context: torch.Tensor) -> list[State]:
        """Read context frames (B, T, C, H, W): the forecaster's initial states."""
        states = None
        for t in range(context.shape[1]):
            _, states = self.encoder(self.features(context[:, t])[0], states)
        return states  # type: ignore[return-value]

    def step(self, frame: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        """Previous frame (B, C, H, W) in [0, 1] -> (next frame's logits (B, C, H, W), states)."""
        x, sizes = self.features(frame)
        hs, states = self.forecaster(x, states)
        y = self.readout(torch.cat(hs, dim=1))  # (b, c', H', W')
        for up, size in zip(self.frame_decoder, reversed(sizes), strict=True):
            y = up(self.act(y), output_size=size)
        return y, states
