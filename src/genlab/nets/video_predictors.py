"""Nets of the video predictors other than ConvLSTM (genlab.nets.convlstm):

- LSTMPredictor: the LSTM encoder-predictor of Srivastava et al. (2015);
- SVG-LP's pieces (Denton & Fergus 2018): a frame encoder and decoder with skip connections,
  Gaussian LSTMs for the posterior q(z_t | x_1:t) and the learned prior p(z_t | x_1:t-1), and
  the frame predictor LSTM;
- TemporalDiscriminator: 3D convolutions over a clip, for adversarial video prediction.

Recurrent state is passed in and out explicitly (never kept on the module), so a caller can
run several futures from one context and nothing leaks between batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from genlab.nets.conv import ConvDecoder, ConvEncoder
from genlab.utils.errors import GenlabError

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, b, hidden) for nn.LSTM
FRAME_CODES = ("flatten", "conv")


class LSTMPredictor(nn.Module):
    """Srivastava et al.'s encoder-predictor: an encoder LSTM reads the context frames, a
    predictor LSTM starts from its final state (copied) and outputs one frame per step.

    - `frame_code=flatten`: frames enter as their C*H*W pixels and leave through a linear map
      (the paper's model); `conv`: a ConvEncoder/ConvDecoder pair (`conv_channels`) maps
      frames to and from `feature_dim` numbers.
    - `conditional=true`: the predictor reads the previous frame (the last context frame,
      then the truth or its own prediction); false: it reads nothing (zeros), the paper's
      unconditioned predictor, and teacher forcing has no effect.
    """

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        hidden_size: int = 512,
        num_layers: int = 1,
        frame_code: str = "flatten",
        feature_dim: int = 256,
        conv_channels: Sequence[int] = (32, 64),
        conditional: bool = True,
    ) -> None:
        super().__init__()
        if frame_code not in FRAME_CODES:
            raise GenlabError(f"LSTMPredictor: frame_code={frame_code!r}: use {FRAME_CODES}.")
        self.shape = (channels, image_size, image_size)
        self.conditional = conditional
        pixels = channels * image_size * image_size
        if frame_code == "flatten":
            self.frame_encoder: nn.Module = nn.Flatten()
            self.frame_decoder: nn.Module = nn.Linear(hidden_size, pixels)
            features = pixels
        else:
            self.frame_encoder = ConvEncoder(
                channels=channels,
                image_size=image_size,
                out_dim=feature_dim,
                hidden_channels=conv_channels,
                out_activation="tanh",
                batch_norm=False,
            )
            self.frame_decoder = ConvDecoder(
                channels=channels,
                image_size=image_size,
                in_dim=hidden_size,
                hidden_channels=list(reversed(conv_channels)),
                batch_norm=False,
            )
            features = feature_dim
        self.features = features
        self.encoder = nn.LSTM(features, hidden_size, num_layers, batch_first=True)
        self.predictor = nn.LSTM(features, hidden_size, num_layers, batch_first=True)

    def encode_context(self, context: torch.Tensor) -> LSTMState:
        """Context frames (B, T, C, H, W) -> the encoder's final (h, c): the predictor's start."""
        b, t = context.shape[:2]
        feats = self.frame_encoder(context.flatten(0, 1)).view(b, t, -1)  # (b, t, f)
        _, state = self.encoder(feats)
        return state

    def step(self, frame: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """Previous frame (B, C, H, W) -> (next frame's logits (B, C, H, W), state)."""
        if self.conditional:
            feats = self.frame_encoder(frame).view(len(frame), 1, -1)  # (b, 1, f)
        else:
            feats = frame.new_zeros(len(frame), 1, self.features)
        out, state = self.predictor(feats, state)  # (b, 1, hidden)
        return self.frame_decoder(out[:, 0]).view(len(frame), *self.shape), state


# --- SVG-LP ------------------------------------------------------------------------------------
def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))


def _spatial_sizes(image_size: int, n: int, who: str) -> list[int]:
    """Sizes after each of n stride-2 k4 p1 convolutions (floor halvings)."""
    sizes = [image_size]
    for _ in range(n):
        sizes.append(sizes[-1] // 2)
    if sizes[-1] < 1:
        raise GenlabError(
            f"{who}: {n} halvings (one per entry of hidden_channels) leave no pixel of "
            f"data.image_size={image_size}: use fewer entries."
        )
    return sizes


class SVGFrameEncoder(nn.Module):
    """Frame (B, C, H, W) -> (code (B, out_dim) in (-1, 1), skips): DCGAN blocks (stride-2
    convolution, batch norm, LeakyReLU), one per `hidden_channels`, then a convolution over
    the whole remaining map; `skips` are the blocks' outputs, for the decoder."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        out_dim: int = 128,
        hidden_channels: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        size = _spatial_sizes(image_size, len(hidden_channels), "SVGFrameEncoder")[-1]
        sizes = [channels, *hidden_channels]
        self.blocks = nn.ModuleList(
            _block(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.out = nn.Sequential(
            nn.Conv2d(sizes[-1], out_dim, size), nn.BatchNorm2d(out_dim), nn.Tanh()
        )
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for block in self.blocks:
            x = block(x)
            skips.append(x)
        return self.out(x).flatten(1), skips  # (b, out_dim), [(b, c_i, h_i, w_i)]


class SVGFrameDecoder(nn.Module):
    """(code (B, in_dim), the encoder's skips) -> frame logits (B, C, H, W): the encoder in
    reverse, each block reading its mirror's skip beside its input (U-Net style)."""

    def __init__(
        self,
        *,
        channels: int,
        image_size: int,
        in_dim: int = 128,
        hidden_channels: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        self.sizes = _spatial_sizes(image_size, len(hidden_channels), "SVGFrameDecoder")
        hidden = list(hidden_channels)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(in_dim, hidden[-1], self.sizes[-1]),
            nn.BatchNorm2d(hidden[-1]),
            nn.LeakyReLU(0.2),
        )
        blocks = []
        for i in reversed(range(len(hidden))):
            c_out = hidden[i - 1] if i > 0 else channels
            layers: list[nn.Module] = [nn.ConvTranspose2d(2 * hidden[i], c_out, 4, 2, 1)]
            if i > 0:
                layers += [nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, code: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.up(code[:, :, None, None])  # (b, c_last, s, s)
        for block, skip, size in zip(
            self.blocks, reversed(skips), reversed(self.sizes[:-1]), strict=True
        ):
            x = torch.cat([x, skip], dim=1)
            for layer in block:  # the transposed conv restores odd sizes exactly
                if isinstance(layer, nn.ConvTranspose2d):
                    x = layer(x, output_size=(size, size))
                else:
                    x = layer(x)
        return x  # (b, c, h, w) logits


CellStates = list[tuple[torch.Tensor, torch.Tensor]]  # one (h, c) of (b, hidden) per layer


class _CellStack(nn.Module):
    """Linear embedding -> stacked LSTMCells: (x (B, in_dim), states) -> (top h, states)."""

    def __init__(self, in_dim: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.embed = nn.Linear(in_dim, hidden_size)
        self.cells = nn.ModuleList(
            nn.LSTMCell(hidden_size, hidden_size) for _ in range(num_layers)
        )

    def run(self, x: torch.Tensor, states: CellStates | None) -> tuple[torch.Tensor, CellStates]:
        h = self.embed(x)
        if states is None:
            zeros = x.new_zeros(len(x), self.hidden_size)
            states = [(zeros, zeros)] * len(self.cells)
        out = []
        for cell, state in zip(self.cells, states, strict=True):
            h, c = cell(h, state)
            out.append((h, c))
        return h, out


class GaussianLSTM(_CellStack):
    """SVG's posterior and prior: (input (B, in_dim), states) -> (mean, logvar (B, out_dim),
    states). The posterior reads the encoding of x_t, the prior that of x_{t-1}."""

    def __init__(
        self, *, in_dim: int, out_dim: int, hidden_size: int = 256, num_layers: int = 1
    ) -> None:
        super().__init__(in_dim, hidden_size, num_layers)
        self.out_dim = out_dim
        self.mean = nn.Linear(hidden_size, out_dim)
        self.logvar = nn.Linear(hidden_size, out_dim)

    def forward(
        self, x: torch.Tensor, states: CellStates | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, CellStates]:
        h, states = self.run(x, states)
        return self.mean(h), self.logvar(h), states


class PredictorLSTM(_CellStack):
    """SVG's frame predictor: ([code of x_{t-1}, z_t] (B, in_dim), states) -> (the predicted
    code of x_t (B, out_dim) in (-1, 1), the encoder's range; states)."""

    def __init__(
        self, *, in_dim: int, out_dim: int, hidden_size: int = 256, num_layers: int = 2
    ) -> None:
        super().__init__(in_dim, hidden_size, num_layers)
        self.out = nn.Sequential(nn.Linear(hidden_size, out_dim), nn.Tanh())

    def forward(
        self, x: torch.Tensor, states: CellStates | None = None
    ) -> tuple[torch.Tensor, CellStates]:
        h, states = self.run(x, states)
        return self.out(h), states


# --- adversarial -------------------------------------------------------------------------------
class TemporalDiscriminator(nn.Module):
    """A clip (B, T, C, H, W) in [0, 1] -> one score per clip (B,) (logits).

    3D convolutions (kernel 3 in time, 4 in space; stride 2 in space, `time_stride` in time)
    with LeakyReLU, one per `hidden_channels`, then the mean over time and space and a linear
    map: it sees motion across frames, not only each frame. Give it the context and the
    predicted frames together to judge the whole clip.
    """

    def __init__(
        self,
        *,
        channels: int,
        hidden_channels: Sequence[int] = (32, 64, 128),
        time_stride: int = 1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for c_out in hidden_channels:
            layers += [
                nn.Conv3d(c, c_out, (3, 4, 4), stride=(time_stride, 2, 2), padding=(1, 1, 1)),
                nn.LeakyReLU(0.2),
            ]
            c = c_out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.body(clip.transpose(1, 2))  # (b, c, t, h, w) -> (b, c', t', h', w')
        return self.head(x.mean(dim=(2, 3, 4)))[:, 0]  # (b,)
