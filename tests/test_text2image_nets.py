"""StackGAN's nets and text encoders (genlab.nets.stackgan, genlab.nets.text_encoders):
conditioning augmentation against the closed-form KL and its sampling distribution, the
matching-aware D's three pairings seen through a D that records its inputs, shapes at tiny
sizes, and the text encoders' independence from padding.

Broken variants each test was seen failing on (in a scratch copy): sigma = exp(logvar)
instead of exp(logvar / 2) (sampling test), the KL without the log-variance term (closed
form), D given the real images with the matching text for the wrong pair (pairings test),
wrong and fake weighted 1 each (the authors' weighting), the GRU reading the padding (padding
test), Stage-II G ignoring c (conditioning test).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from genlab.nets.stackgan import (
    ConditioningAugmentation,
    MatchingDiscriminator,
    StageIDiscriminator,
    StageIGenerator,
    StageIIDiscriminator,
    StageIIGenerator,
    gaussian_kl,
    matching_aware_terms,
    mismatch_index,
)
from genlab.nets.text_encoders import GRUTextEncoder, LookupTextEncoder, TransformerTextEncoder
from genlab.utils.errors import GenlabError


# --- conditioning augmentation ------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_is_the_closed_form(seed):
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(5, 7, generator=gen) * 2
    logvar = torch.randn(5, 7, generator=gen)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(gaussian_kl(mu, logvar), expected, atol=1e-5)
    assert torch.allclose(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))


def test_augmentation_samples_its_gaussian_and_returns_its_kl():
    """c ~ N(mu, sigma^2) with (mu, log sigma^2) from phi_t: over 40,000 draws for one caption
    the mean and standard deviation are mu and sigma, and the Monte-Carlo KL
    E[log q(c) - log p(c)] is the returned KL."""
    torch.manual_seed(0)
    ca = ConditioningAugmentation(embed_dim=6, cond_dim=4)
    text = torch.randn(1, 6).expand(40_000, -1)
    c, kl = ca(text, generator=torch.Generator().manual_seed(1))
    mu, logvar = ca.distribution(text[:1])
    sigma = (0.5 * logvar).exp()
    c, kl, mu, sigma = c.detach(), kl.detach(), mu.detach(), sigma.detach()
    assert torch.allclose(c.mean(0), mu[0], atol=4 * float(sigma.max()) / 200)
    assert torch.allclose(c.std(0), sigma[0], rtol=0.03)
    q, p = Normal(mu[0], sigma[0]), Normal(0.0, 1.0)
    monte_carlo = (q.log_prob(c) - p.log_prob(c)).sum(1).mean()
    assert torch.allclose(kl, kl[:1].expand_as(kl))
    assert abs(float(monte_carlo) - float(kl[0])) < 0.05 * float(kl[0]) + 0.02
    # the reparameterised sample carries gradients to the layer that makes (mu, sigma)
    ca(text[:2])[0].sum().backward()
    assert float(ca.fc.weight.grad.abs().sum()) > 0
    # without augmentation: c is mu, the KL 0
    plain = ConditioningAugmentation(embed_dim=6, cond_dim=4, augment=False)
    plain.load_state_dict(ca.state_dict())
    c0, kl0 = plain(text[:3])
    assert torch.equal(c0, plain.distribution(text[:3])[0]) and torch.equal(kl0, torch.zeros(3))


# --- the matching-aware discriminator --------------------------------------------------------
class RecordingD(nn.Module):
    """A D that records what it is shown and scores it by a fixed rule."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        self.calls.append((x, text))
        return x.flatten(1).mean(1) * 3 - text.mean(1)  # (b,)


def test_matching_aware_terms_see_the_three_pairings():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.rand(4, 1, 8, 8, generator=gen), torch.rand(4, 1, 8, 8, generator=gen)
    text = torch.randn(4, 5, generator=gen)
    wrong = text[mismatch_index(4, generator=gen)]
    d = RecordingD()
    terms = matching_aware_terms(d, real, fake, text, wrong)
    shown = [(x, t) for x, t in d.calls]
    assert len(shown) == 3
    pairs = {(id(x), id(t)) for x, t in shown}
    assert pairs == {(id(real), id(text)), (id(real), id(wrong)), (id(fake), id(text))}
    # labels: real + matching -> 1; real + mismatched and fake + matching -> 0 (by hand)
    logit = {(id(x), id(t)): x.flatten(1).mean(1) * 3 - t.mean(1) for x, t in shown}
    real_l, wrong_l, fake_l = (
        logit[id(real), id(text)],
        logit[id(real), id(wrong)],
        logit[id(fake), id(text)],
    )
    assert torch.allclose(terms.real, F.softplus(-real_l).mean())
    assert torch.allclose(terms.wrong, F.softplus(wrong_l).mean())
    assert torch.allclose(terms.fake, F.softplus(fake_l).mean())
    assert torch.allclose(terms.loss, terms.real + 0.5 * (terms.wrong + terms.fake))
    assert torch.equal(terms.wrong_logits, wrong_l)
    # the plain conditional D (the ablation): the wrong pair is scored but not trained on
    plain = matching_aware_terms(RecordingD(), real, fake, text, wrong, wrong_weight=0.0)
    assert torch.allclose(plain.loss, plain.real + plain.fake)


@pytest.mark.parametrize("n", [2, 3, 7, 64])
def test_mismatched_text_is_never_the_matching_one(n):
    for seed in range(20):
        idx = mismatch_index(n, generator=torch.Generator().manual_seed(seed))
        assert sorted(idx.tolist()) == list(range(n)) and bool((idx != torch.arange(n)).all())
    with pytest.raises(GenlabError):
        mismatch_index(1)


# --- shapes and conditioning -------------------------------------------------------------------
def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) > 1e-3 * float(a.abs().max())


@pytest.mark.parametrize("size", [16, 32, 64])
def test_stage_one_shapes(size):
    torch.manual_seed(0)
    g = StageIGenerator(latent_dim=3, cond_dim=4, channels=3, image_size=size, base_channels=2)
    d = StageIDiscriminator(channels=3, image_size=size, embed_dim=5, cond_dim=4, base_channels=2)
    x = g(torch.randn(2, 3), torch.randn(2, 4)).detach()
    assert x.shape == (2, 3, size, size) and float(x.abs().max()) <= 1.0
    assert d(x, torch.randn(2, 5)).shape == (2,)


@pytest.mark.parametrize("low, scale", [(16, 2), (16, 4), (32, 4)])
def test_stage_two_shapes_and_conditioning(low, scale):
    torch.manual_seed(0)
    g = StageIIGenerator(
        cond_dim=4, channels=1, low_size=low, scale=scale, base_channels=4, residual_blocks=1
    ).eval()
    d = StageIIDiscriminator(
        channels=1, image_size=low * scale, embed_dim=5, cond_dim=4, base_channels=2
    ).eval()
    image, c = torch.rand(2, 1, low, low) * 2 - 1, torch.randn(2, 4)
    out = g(image, c).detach()
    assert out.shape == (2, 1, low * scale, low * scale) and float(out.abs().max()) <= 1.0
    # the refinement depends on both the Stage-I image and the text (at init the outputs are
    # small: N(0, 0.02) weights through many layers, so compare relative to their size)
    assert differs(g(image, c + 1), out) and differs(g(-image, c), out)
    text = torch.randn(2, 5)
    assert d(out, text).shape == (2,)
    assert differs(d(out, text), d(out, text + 1))  # D reads the text
    with pytest.raises(GenlabError, match="refines 16x16"):
        StageIIGenerator(cond_dim=4, channels=1, low_size=16, base_channels=2)(
            torch.rand(1, 1, 32, 32), c[:1]
        )


def test_sizes_the_nets_cannot_take_are_named():
    with pytest.raises(GenlabError, match="not 48"):
        StageIGenerator(image_size=48, base_channels=2)
    with pytest.raises(GenlabError, match="not 20"):
        MatchingDiscriminator(image_size=20, base_channels=2)
    with pytest.raises(GenlabError, match="scale=3"):
        StageIIGenerator(low_size=16, scale=3, base_channels=2)


# --- text encoders ------------------------------------------------------------------------------
def padded(rows: list[list[int]], length: int) -> torch.Tensor:
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


@pytest.mark.parametrize(
    "make",
    [
        lambda: GRUTextEncoder(vocab_size=12, embed_dim=4, hidden_dim=5, out_dim=3),
        lambda: GRUTextEncoder(
            vocab_size=12, embed_dim=4, hidden_dim=5, out_dim=3, bidirectional=False
        ),
        lambda: TransformerTextEncoder(
            vocab_size=12, max_length=12, dim=8, heads=2, layers=1, out_dim=3
        ),
    ],
    ids=["gru", "gru_forward", "transformer"],
)
def test_text_encoders_ignore_padding(make):
    """A caption's embedding does not depend on how much padding follows it, nor on the other
    captions of the batch; different captions embed differently."""
    torch.manual_seed(0)
    enc = make().eval()
    rows = [[3, 4, 5], [7], [2, 9, 9, 4, 11]]
    short, long = enc(padded(rows, 6)), enc(padded(rows, 12))
    assert short.shape == (3, 3)
    assert torch.allclose(short, long, atol=1e-5)
    assert torch.allclose(enc(padded(rows[:1], 6)), short[:1], atol=1e-5)
    assert not torch.allclose(short[0], short[1])
    with pytest.raises(GenlabError, match="outside its vocabulary of 12"):
        enc(padded([[12]], 6))


def test_lookup_encoder_returns_each_captions_vector():
    keys = padded([[3, 4], [3, 4, 5], [6]], 4)
    vectors = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    enc = LookupTextEncoder(keys=keys, vectors=vectors)
    assert torch.equal(enc(keys[[2, 0, 1, 1]])[:, 0], torch.tensor([3.0, 1.0, 2.0, 2.0]))
    with pytest.raises(GenlabError, match="1 of 2 captions have no pretrained embedding"):
        enc(padded([[3, 4], [4, 3]], 4))
    assert set(enc.state_dict()) == {"keys", "hashes", "vectors"}  # a checkpoint carries it
