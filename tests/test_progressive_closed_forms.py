"""The progressive GAN's components (src/genlab/nets/progressive_nets.py) against closed forms
written from the paper (Karras et al. 2018, sections 4.1-4.2 and 3) and docs/progressive-gan.md,
not from the code: pixel norm, the equalized-learning-rate scale of every layer, G's invariance
to the scale of z, minibatch standard deviation.

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

from genlab.nets.progressive_nets import (
    ProgressiveDiscriminator,
    ProgressiveGenerator,
    ScaledConv2d,
    ScaledLinear,
    _act,
    channel_widths,
    crop_to,
    downsample,
    minibatch_stddev,
    pad_to,
    pixel_norm,
    power_of_two_above,
    stage_reals,
)
from genlab.utils.errors import GenlabError

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
    groups of 4: sample 0's group is {0, 2, 4, 6}; groups of 2: {0, 4}."""
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    # (group size, a sample in sample 0's group, one outside it); size 2: groups i mod 4
    for size, inside, outside in ((4, 2, 1), (2, 4, 2), (0, 2, 1)):
        _, d = nets(mbstd_group_size=size)
        d.set_progress(0, 1.0)
        with torch.no_grad():
            base = d(x)
            same_group, other_group = x.clone(), x.clone()
            same_group[inside] *= 3
            other_group[outside] *= 3
            s_same, s_other = d(same_group), d(other_group)
        assert torch.equal(s_other[0], base[0]), size
        assert torch.equal(s_same[0], base[0]) == (size == 0), size


# --- the rest of the documented contract (kills the mutants `make mutate` found) ----------
def test_layout_kernels_and_widths_as_documented():
    """docs/progressive-gan.md's layout: 1x1 to_rgb / from_rgb, 3x3 convs everywhere else
    ('same' convolutions: the spatial size is kept, also for a 5x5 kernel); the width of level
    r is min(max_channels, channel_base / r), at least 1; the paper's defaults 16384 and 512,
    minibatch groups of 4, pixel norm on."""
    g, d = nets()
    for net, name, layer in scaled_layers(g, d):
        if isinstance(layer, ScaledConv2d):
            k = layer.weight.shape[-1]
            assert k == (1 if "rgb" in name else 3), (net, name, k)
    assert ScaledConv2d(2, 3, 5)(torch.randn(1, 2, 7, 9)).shape == (1, 3, 7, 9)
    assert channel_widths(32, 64, 8) == {4: 8, 8: 8, 16: 4, 32: 2}
    assert channel_widths(32, 16, 64) == {4: 4, 8: 2, 16: 1, 32: 1}
    # the defaults, as built: 512 channels at 4x4 and 8x8 (16384 / 8 = 2048 capped), pixel
    # norm, minibatch groups of 4
    g8 = ProgressiveGenerator(latent_dim=4, channels=1, image_size=8)
    d8 = ProgressiveDiscriminator(channels=1, image_size=8)
    assert g8.blocks[0].c == 512 and g8.blocks[1].conv2.weight.shape[:2] == (512, 512)
    assert d8.from_rgb[1].weight.shape[0] == 512 and d8.blocks[0].dense.weight.shape[0] == 512
    assert g8.blocks[0].norm and g8.blocks[1].norm and d8.blocks[0].group_size == 4
    # leaky ReLU with slope 0.2 (the paper's), seen through G's 4x4 block without pixel norm
    lrelu = torch.tensor([-2.0, -0.5, 0.0, 1.5])
    assert torch.equal(_act(lrelu), torch.tensor([-0.4, -0.1, 0.0, 1.5]))


def test_tapering_widths_run_at_every_level_and_alpha():
    """Widths 16, 8, 4 at 4, 8, 16 (each level its own width): G and D run at every level and
    alpha; fresh nets start at the 4x4 level with alpha 1."""
    torch.manual_seed(0)
    kw = dict(image_size=16, channel_base=64, max_channels=64)
    g = ProgressiveGenerator(latent_dim=6, channels=2, **kw)
    d = ProgressiveDiscriminator(channels=2, **kw)
    assert channel_widths(16, 64, 64) == {4: 16, 8: 8, 16: 4}
    assert (g.level, g.alpha, d.level, d.alpha) == (0, 1.0, 0, 1.0)
    z = torch.randn(4, 6)
    with torch.no_grad():
        assert g(z).shape == (4, 2, 4, 4) and d(g(z)).shape == (4,)
        for level in (1, 2):
            for alpha in (0.0, 0.5, 1.0):
                g.set_progress(level, alpha)
                d.set_progress(level, alpha)
                x = g(z)
                assert x.shape == (4, 2, 4 * 2**level, 4 * 2**level)
                assert d(x).shape == (4,)


def test_progress_and_image_checks_refuse_with_their_messages():
    g, d = nets()
    for level, alpha in ((3, 1.0), (-1, 1.0), (1, 1.5), (1, -0.1)):
        with pytest.raises(ValueError) as err:
            g.set_progress(level, alpha)
        assert str(err.value) == f"level {level} of 3, alpha {alpha} in [0, 1]"
    g.set_progress(2, 1.0)
    assert (g.level, g.alpha, g.current_resolution) == (2, 1.0, 16)
    d.set_progress(0, 1.0)
    for shape in ((2, 3, 4, 8), (2, 3, 8, 4)):
        with pytest.raises(ValueError) as err:
            d(torch.zeros(shape))
        assert str(err.value) == (
            f"ProgressiveDiscriminator at stage 4x4 got images of {tuple(shape[-2:])}"
        )


def test_option_refusals_name_the_option():
    common = dict(channels=1, channel_base=64, max_channels=8)
    cases = [
        (
            lambda: ProgressiveGenerator(latent_dim=4, image_size=16, num_classes=3, **common),
            "ProgressiveGenerator (model.generator) is unconditional, but model.num_classes=3: "
            "set model.num_classes=0 (class-conditional progressive GANs are not implemented).",
        ),
        (
            lambda: ProgressiveDiscriminator(image_size=16, num_classes=2, **common),
            "ProgressiveDiscriminator (model.discriminator) is unconditional, but "
            "model.num_classes=2: set model.num_classes=0 (class-conditional progressive GANs "
            "are not implemented).",
        ),
        (
            lambda: ProgressiveGenerator(latent_dim=4, image_size=3, **common),
            "ProgressiveGenerator (model.generator): data.image_size=3 must be at least 4.",
        ),
        (
            lambda: ProgressiveDiscriminator(image_size=2, **common),
            "ProgressiveDiscriminator (model.discriminator): data.image_size=2 must be at least "
            "4.",
        ),
        (
            lambda: ProgressiveDiscriminator(image_size=16, mbstd_group_size=-1, **common),
            "model.discriminator.mbstd_group_size=-1: use 0 (off) or a group size >= 2 (the "
            "paper: 4).",
        ),
    ]
    for build, message in cases:
        with pytest.raises(GenlabError) as err:
            build()
        assert str(err.value) == message
    # the smallest size: one 4x4 level
    assert ProgressiveGenerator(latent_dim=4, image_size=4, **common).levels == 1
    assert ProgressiveDiscriminator(image_size=4, **common).levels == 1


def test_sizes_padding_and_cropping():
    """The nets' size is the smallest power of two >= the data's (and >= 4); padding repeats
    the border pixels (also an odd amount: one more row and column at the end); cropping takes
    the central window, also when the image has as many channels as the window is wide."""
    got = {s: power_of_two_above(s) for s in (1, 3, 4, 5, 8, 9, 28, 32, 33)}
    assert got == {1: 4, 3: 4, 4: 4, 5: 8, 8: 8, 9: 16, 28: 32, 32: 32, 33: 64}
    x = torch.arange(9.0).view(1, 1, 3, 3) + 1  # no zero border: replication shows
    p = pad_to(x, 4)
    assert p.shape == (1, 1, 4, 4)
    assert torch.equal(
        p[0, 0], torch.tensor([[1, 2, 3, 3], [4, 5, 6, 6], [7, 8, 9, 9], [7, 8, 9, 9.0]])
    )
    assert torch.equal(pad_to(x, 3), x)
    p5 = pad_to(x, 5)
    assert torch.equal(p5[0, 0, 0], torch.tensor([1, 1, 2, 3, 3.0]))
    assert torch.equal(crop_to(p5, 3), x)
    y = torch.rand(2, 4, 8, 8)  # 4 channels, a 4-pixel window
    assert torch.equal(crop_to(y, 4), y[..., 2:6, 2:6])


def test_stage_reals_at_4x4_are_only_box_filtered():
    """The 4x4 level has no coarser level to fade from: its reals are the box-filtered images
    whatever alpha says."""
    x = torch.rand(2, 1, 16, 16)
    for alpha in (0.0, 0.5, 1.0):
        assert torch.allclose(stage_reals(x, 4, alpha), downsample(x, 4), atol=1e-6)


def test_minibatch_stddev_keeps_the_dtype_and_its_default_group():
    """bfloat16 features get a bfloat16 map (computed in float32); the default group of 4 on a
    batch of 5 falls back to groups of 1 (5 has no divisor 2-4): no spread, sqrt(eps)."""
    x = torch.randn(4, 2, 3, 3).to(torch.bfloat16)
    out = minibatch_stddev(x)
    assert out.dtype == torch.bfloat16 and out.shape == (4, 3, 3, 3)
    five = minibatch_stddev(torch.randn(5, 2, 3, 3))
    assert torch.allclose(five[:, 2], torch.full((5, 3, 3), 1e-4))


def test_a_minibatch_group_of_one_is_refused_as_the_message_says():
    """A group of one has no spread, so D would get a constant map (found by this test: the
    check was `< 0` while its message said 0 or >= 2)."""
    with pytest.raises(GenlabError, match="mbstd_group_size=1: use 0"):
        ProgressiveDiscriminator(channels=1, image_size=8, mbstd_group_size=1)
