"""Video nets: the ConvLSTM cell against its equations, state carried across steps, shapes of
every net at sizes that do not halve evenly, and the temporal discriminator seeing order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genlab.nets.convlstm import ConvLSTMCell, ConvLSTMPredictor, ConvLSTMStack
from genlab.nets.video_predictors import (
    GaussianLSTM,
    LSTMPredictor,
    PredictorLSTM,
    SVGFrameDecoder,
    SVGFrameEncoder,
    TemporalDiscriminator,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_convlstm_cell_follows_shi_et_al_equations():
    """h, c from the gates of one convolution of [x, h] (input, forget, cell, output), by hand.
    Seen failing with the gate order changed in the cell (forget and input swapped)."""
    torch.manual_seed(0)
    cell = ConvLSTMCell(in_channels=2, hidden_channels=3, kernel_size=3)
    x = torch.randn(4, 2, 5, 6, generator=gen(1))
    h0 = torch.randn(4, 3, 5, 6, generator=gen(2))
    c0 = torch.randn(4, 3, 5, 6, generator=gen(3))
    h, (h_state, c) = cell(x, (h0, c0))
    assert h.shape == c.shape == (4, 3, 5, 6) and h is h_state
    w, b = cell.gates.weight, cell.gates.bias
    z = F.conv2d(torch.cat([x, h0], 1), w, b, padding=1)
    i, f, g, o = z[:, 0:3], z[:, 3:6], z[:, 6:9], z[:, 9:12]
    c_ref = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
    h_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    assert torch.allclose(c, c_ref, atol=1e-6) and torch.allclose(h, h_ref, atol=1e-6)
    # no state: zeros
    h1, (_, c1) = cell(x)
    h2, (_, c2) = cell(x, (torch.zeros_like(h0), torch.zeros_like(c0)))
    assert torch.equal(h1, h2) and torch.equal(c1, c2)


def test_convlstm_stack_carries_its_state_across_steps():
    """The output at step 2 depends on the frame of step 1 when the states are passed on, and
    not when they are dropped. Seen failing with ConvLSTMStack ignoring the states it is
    given."""
    torch.manual_seed(0)
    stack = ConvLSTMStack(in_channels=2, hidden_channels=[3, 4], kernel_size=3)
    x1, x1b, x2 = (torch.randn(2, 2, 6, 6, generator=gen(s)) for s in (1, 2, 3))
    hs, states = stack(x1)
    assert [h.shape[1] for h in hs] == [3, 4] and len(states) == 2
    after_a, _ = stack(x2, states)
    after_b, _ = stack(x2, stack(x1b)[1])
    assert not torch.allclose(after_a[-1], after_b[-1])
    fresh_a, _ = stack(x2)
    fresh_b, _ = stack(x2, None)
    assert torch.equal(fresh_a[-1], fresh_b[-1])


@pytest.mark.parametrize("size", [16, 28, 30])
def test_predictor_nets_return_frames_of_their_input_size(size):
    torch.manual_seed(0)
    context = torch.rand(2, 3, 1, size, size, generator=gen())
    nets = [
        ConvLSTMPredictor(channels=1, image_size=size, hidden_channels=[4, 4], frame_channels=4),
        ConvLSTMPredictor(channels=1, image_size=size, hidden_channels=[4], downsample=0),
        LSTMPredictor(channels=1, image_size=size, hidden_size=8),
        LSTMPredictor(
            channels=1,
            image_size=size,
            hidden_size=8,
            frame_code="conv",
            feature_dim=8,
            conv_channels=[4],
        ),
    ]
    for net in nets:
        state = net.encode_context(context)
        logits, state = net.step(context[:, -1], state)
        assert logits.shape == context[:, -1].shape, type(net).__name__
        logits2, _ = net.step(torch.sigmoid(logits), state)
        assert logits2.shape == logits.shape


def test_unconditioned_lstm_predictor_ignores_the_frame_it_is_given():
    torch.manual_seed(0)
    context = torch.rand(2, 3, 1, 8, 8, generator=gen())
    for conditional in (True, False):
        net = LSTMPredictor(channels=1, image_size=8, hidden_size=8, conditional=conditional)
        state = net.encode_context(context)
        a, _ = net.step(torch.zeros(2, 1, 8, 8), state)
        b, _ = net.step(torch.ones(2, 1, 8, 8), state)
        assert torch.equal(a, b) == (not conditional)


@pytest.mark.parametrize("size", [16, 28, 64])
def test_svg_encoder_and_decoder_mirror_each_other(size):
    """Codes in (-1, 1), one skip per block, the decoder's frame the encoder's size (odd
    sizes included: 28 -> 14 -> 7 -> 3 and back)."""
    torch.manual_seed(0)
    enc = SVGFrameEncoder(channels=1, image_size=size, out_dim=6, hidden_channels=[4, 8, 8])
    dec = SVGFrameDecoder(channels=1, image_size=size, in_dim=6, hidden_channels=[4, 8, 8])
    x = torch.rand(3, 1, size, size, generator=gen())
    code, skips = enc(x)
    assert code.shape == (3, 6) and code.abs().max() < 1
    assert [s.shape[1] for s in skips] == [4, 8, 8]
    assert dec(code, skips).shape == x.shape


def test_svg_lstms_shapes_and_state():
    torch.manual_seed(0)
    post = GaussianLSTM(in_dim=6, out_dim=2, hidden_size=5, num_layers=2)
    pred = PredictorLSTM(in_dim=8, out_dim=6, hidden_size=5, num_layers=2)
    h = torch.randn(3, 6, generator=gen())
    mean, logvar, states = post(h)
    assert mean.shape == logvar.shape == (3, 2) and len(states) == 2
    mean2, _, _ = post(h, states)
    assert not torch.allclose(mean, mean2)  # the state carried changes the next output
    out, _ = pred(torch.cat([h, mean], 1))
    assert out.shape == (3, 6) and out.abs().max() < 1


def test_temporal_discriminator_scores_clips_and_sees_frame_order():
    torch.manual_seed(0)
    d = TemporalDiscriminator(channels=1, hidden_channels=[4, 8])
    clip = torch.rand(2, 6, 1, 16, 16, generator=gen())
    score = d(clip)
    assert score.shape == (2,)
    shuffled = clip[:, torch.tensor([3, 0, 5, 1, 4, 2])]
    assert not torch.allclose(d(shuffled), score)
