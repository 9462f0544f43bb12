"""The progressive GAN's components (src/genlab/nets/progressive.py) against closed forms written
from the paper (Karras et al. 2018, sections 4.1-4.2 and 3) and docs/progressive-gan.md, not
from the code: pixel norm, the equalized-learning-rate scale of every layer, G's invariance to
the scale of z, minibatch standard deviation.

Seen failing (each in a scratch copy of src/): `pixel_norm` returning its input unchanged
fails the pixel-norm, per-block and scale-of-z tests, G's first layer fed z instead of its
pixel norm fails the scale-of-z test; G's dense gain sqrt(2)/4, to_rgb's gain 1
or D's last gain 1 set to sqrt(2) fails the gain test; the population variance in
`minibatch_stddev` made unbiased fails the minibatch tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genlab.nets.progressive import (
    ProgressiveDiscriminator,
    ProgressiveGenerator,
    ScaledConv2d,
    ScaledLinear,
    minibatch_stddev,
    pixel_norm,
)

SQRT2 = math.sqrt(2.0)


def nets(*, seed: int = 0, **kw):
    """G and D for 16x16 images (3 levels: 4, 8, 16), 16 channels at 4 and 8, 8 at 16."""
    torch.manual_seed(seed)
    g_kw = {k: v for k, v in kw.items() if k in ("equalized_lr", "pixel_norm")}
    g = ProgressiveGenerator(
        latent_dim=12, channels=3, image_size=16, channel_base=128, max_channels=16, **g_kw
    )
    d_kw = {k: v for k, v in kw.items() if k in ("equalized_lr", "mbstd_group_size")}
    d = ProgressiveDiscriminator(
        channels=3, image_size=16, channel_base=128, max_channels=16, **d_kw
    )
    return g, d


def channel_rms(x: torch.Tensor) -> torch.Tensor:
    """(b, c, h, w) -> (b, h, w): the root mean square of each pixel's feature vector."""
    return x.pow(2).mean(1).sqrt()


# --- pixel norm (paper 4.2: b = a / sqrt(mean_j a_j^2 + eps), per pixel, over channels) ------
def test_pixel_norm_gives_each_pixels_feature_vector_unit_rms_over_channels():
    torch.manual_seed(0)
    # features whose scale varies over pixels and channels by orders of magnitude
    x = torch.randn(3, 6, 4, 5) * torch.exp(2 * torch.randn(3, 6, 4, 5))
    out = pixel_norm(x)
    arr = x.double().numpy()
    want = arr / np.sqrt((arr**2).mean(axis=1, keepdims=True) + 1e-8)
    assert np.allclose(out.double().numpy(), want, rtol=1e-5, atol=1e-7)
    assert torch.allclose(channel_rms(out), torch.ones(3, 4, 5), atol=1e-5)
    # over channels, not over space: a channel's RMS over the pixels is not 1
    spatial = out.pow(2).mean((2, 3)).sqrt()  # (b, c)
    assert (spatial - 1).abs().max() > 0.1
    # each pixel's vector keeps its direction, and a zero vector stays zero (eps)
    assert torch.allclose(pixel_norm(7.5 * x), out, atol=1e-5)
    assert torch.equal(pixel_norm(torch.zeros(1, 4, 2, 2)), torch.zeros(1, 4, 2, 2))


def test_every_generator_block_ends_with_unit_rms_features():
    """'after each convolutional layer' of G: every block's output, at every pixel, has unit
    RMS over channels; with `pixel_norm=False` it has not (the control)."""
    for on in (True, False):
        g, _ = nets(pixel_norm=on)
        g.set_progress(2, 0.5)  # every block runs
        seen: list[torch.Tensor] = []

        def keep(module, args, out, seen=seen):
            seen.append(out)

        hooks = [b.register_forward_hook(keep) for b in g.blocks]
        g(torch.randn(5, 12) * 3)
        for h in hooks:
            h.remove()
        assert len(seen) == 3
        for out in seen:
            rms = channel_rms(out)
            unit = torch.allclose(rms, torch.ones_like(rms), atol=1e-4)
            assert unit == on, (on, rms.min().item(), rms.max().item())


def test_generator_output_is_invariant_to_the_scale_of_z():
    """Pixel norm on z: G(c z) = G(z) for any c > 0, also with non-zero biases (with zero
    biases the norms after the convs alone would give it). Without pixel norm G (leaky ReLU,
    zero biases at initialisation, linear output) is positively homogeneous: G(c z) = c G(z)."""
    z = torch.randn(4, 12, generator=torch.Generator().manual_seed(1))
    g, _ = nets(pixel_norm=True)
    g.set_progress(2, 0.3)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("bias"):
                p.normal_()
        base = g(z)
        assert base.abs().max() > 1e-3
        for c in (0.1, 0.5, 3.0, 100.0):
            assert torch.allclose(g(c * z), base, rtol=1e-4, atol=1e-5), c
    plain, _ = nets(pixel_norm=False)
    plain.set_progress(2, 0.3)
    with torch.no_grad():
        assert torch.allclose(plain(3.0 * z), 3.0 * plain(z), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(plain(3.0 * z), plain(z), rtol=1e-2)


# --- equalized learning rate (paper 4.1; docs/progressive-gan.md, `equalized_lr`) -----------
def documented_gain(net: str, name: str) -> float:
    """docs/progressive-gan.md: He's sqrt(2), except gain 1 for to_rgb and D's last layer and
    sqrt(2)/4 for G's first dense layer."""
    if net == "G" and name == "blocks.0.dense":
        return SQRT2 / 4
    if net == "G" and name.startswith("to_rgb."):
        return 1.0
    if net == "D" and name == "blocks.0.out":
        return 1.0
    return SQRT2


def scaled_layers(g, d):
    for net, module in (("G", g), ("D", d)):
        for name, layer in module.named_modules():
            if isinstance(layer, (ScaledConv2d, ScaledLinear)):
                yield net, name, layer


def test_every_layer_is_scaled_at_run_time_by_its_documented_gain_over_sqrt_fan_in():
    """Each layer's forward uses weight * gain / sqrt(fan_in), computed here from the weight's
    shape and the documented gain, whatever the stored `scale` says; all 16 layers of the
    3-level nets are checked (G: dense, 4x4 conv, 2 convs per level, 3 to_rgb; D: 3 from_rgb,
    2 convs per level, conv and 2 dense layers at 4x4)."""
    g, d = nets()
    layers = list(scaled_layers(g, d))
    assert len(layers) == 9 + 10
    torch.manual_seed(2)
    for net, name, layer in layers:
        w = layer.weight.detach()
        with torch.no_grad():
            layer.bias.normal_()  # the bias is added unscaled
        fan_in = w[0].numel()
        gain = documented_gain(net, name)
        if isinstance(layer, ScaledLinear):
            x = torch.randn(3, w.shape[1])
            want = x @ (w * gain / math.sqrt(fan_in)).T + layer.bias
        else:
            x = torch.randn(2, w.shape[1], 5, 5)
            k = w.shape[-1]
            want = F.conv2d(x, w * gain / math.sqrt(fan_in), layer.bias, padding=k // 2)
        with torch.no_grad():
            got = layer(x)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (net, name, gain)
        assert abs(w.std().item() - 1.0) < 0.5, (net, name)  # stored weights ~ N(0, 1)


def test_without_equalized_lr_the_same_constants_are_in_the_initial_weights():
    """equalized_lr=false: no run-time scale; each layer's initial weights are N(0, c^2) with
    c = gain / sqrt(fan_in) (plain He init). Pooled per gain so each pool has >= 1,000 weights:
    the standard deviation of weight / c is 1 within 10 %."""
    g, d = nets(equalized_lr=False, seed=3)
    pools: dict[float, list[torch.Tensor]] = {}
    for net, name, layer in scaled_layers(g, d):
        gain = documented_gain(net, name)
        assert layer.scale == 1.0
        x = torch.randn(2, layer.weight.shape[1], *([4, 4] if layer.weight.ndim == 4 else []))
        want = (
            F.linear(x, layer.weight, layer.bias)
            if layer.weight.ndim == 2
            else F.conv2d(x, layer.weight, layer.bias, padding=layer.weight.shape[-1] // 2)
        )
        with torch.no_grad():
            assert torch.allclose(layer(x), want, atol=1e-6)
        c = gain / math.sqrt(layer.weight[0].numel())
        pools.setdefault(gain, []).append((layer.weight.detach() / c).flatten())
    assert set(pools) == {SQRT2 / 4, 1.0, SQRT2}
    for gain, parts in pools.items():
        w = torch.cat(parts)
        assert w.numel() >= 100
        assert abs(w.std().item() - 1.0) < 0.1 * (1 if w.numel() >= 1000 else 2), gain


# --- minibatch standard deviation (paper 3) ------------------------------------------------
def paper_mbstd(x: np.ndarray, group: int) -> np.ndarray:
    """The paper's statistic per sample: the population standard deviation of every feature at
    every pixel over the sample's group, averaged over features and pixels. Groups as in the
    authors' code (reshape to (group, -1, ...)): sample i is in group i mod (b / group)."""
    b = len(x)
    m = b // group
    out = np.empty(b)
    for j in range(m):
        members = x[j::m]  # samples j, j + m, j + 2m, ...
        assert len(members) == group
        out[j::m] = np.sqrt(members.var(axis=0) + 1e-8).mean()
    return out


@pytest.mark.parametrize(("b", "group"), [(4, 4), (8, 4), (6, 3), (8, 2)])
def test_minibatch_stddev_is_the_papers_statistic(b, group):
    rng = np.random.default_rng(b * 10 + group)
    x = rng.normal(size=(b, 3, 4, 4)) * rng.uniform(0.5, 3, size=(b, 1, 1, 1))
    out = minibatch_stddev(torch.from_numpy(x).float(), group_size=group)
    assert out.shape == (b, 4, 4, 4)
    assert torch.equal(out[:, :3], torch.from_numpy(x).float())
    want = paper_mbstd(x, group)
    extra = out[:, 3].double().numpy()
    assert np.allclose(extra, want[:, None, None] * np.ones((1, 4, 4)), rtol=1e-5)


def test_minibatch_stddev_on_a_known_batch():
    """Four samples, constant maps 0, 2, 4, 6 (one group of 4): mean 3, population variance
    (9 + 1 + 1 + 9) / 4 = 5, so every entry of the extra map is sqrt(5)."""
    x = torch.stack([torch.full((2, 3, 3), v) for v in (0.0, 2.0, 4.0, 6.0)])
    out = minibatch_stddev(x, group_size=4)
    assert torch.allclose(out[:, 2], torch.full((4, 3, 3), math.sqrt(5.0)), atol=1e-6)


def test_the_discriminator_sees_its_group_through_minibatch_stddev():
    """D's score of sample 0 depends on the other samples of its group (and only on them) when
    mbstd is on; with mbstd_group_size=0 each score depends on its own sample alone. Batch 8,
    groups of 4: sample 0's group is {0, 2, 4, 6}."""
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    for size in (4, 0):
        _, d = nets(mbstd_group_size=size)
        d.set_progress(0, 1.0)
        with torch.no_grad():
            base = d(x)
            same_group, other_group = x.clone(), x.clone()
            same_group[2] *= 3
            other_group[1] *= 3
            s_same, s_other = d(same_group), d(other_group)
        assert torch.equal(s_other[0], base[0])
        assert torch.equal(s_same[0], base[0]) == (size == 0), size
