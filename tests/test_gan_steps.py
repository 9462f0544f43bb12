"""The GAN loop's bookkeeping in closed form, without a Trainer run: the noise seed of an
iteration, the EMA update with its warm-up, and the trainer options the GAN takes over."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import make_cfg
from hydra.utils import instantiate

from genlab.models.gan import GAN
from genlab.utils.errors import GenlabError

TINY = [
    "model=gan",
    "model.latent_dim=4",
    "model.generator.hidden_dims=[8]",
    "model.discriminator.hidden_dims=[8]",
]


@cache
def model_config(*extra: str):
    return make_cfg(Path(tempfile.mkdtemp()), *TINY, *extra).model


def tiny_gan(tmp_path, *extra: str) -> GAN:
    torch.manual_seed(0)
    return instantiate(model_config(*extra))


def at_step(model: GAN, step: int, rank: int = 0) -> GAN:
    """Pretend the model is attached to a trainer at `step` on `rank`."""
    model._trainer = SimpleNamespace(global_step=step, global_rank=rank)  # type: ignore
    return model


def test_noise_is_seeded_by_seed_step_rank_and_salt(tmp_path):
    model = tiny_gan(tmp_path, "seed=5")
    assert model.seed == 5
    for step, rank, salt in ((0, 0, 0), (7, 0, 0), (7, 1, 0), (7, 1, 3)):
        at_step(model, step, rank)
        key = (5 * 1_000_003 + step) * 1_009 + rank * 31 + salt
        got = torch.randn(6, generator=model._noise(salt))
        assert torch.equal(got, torch.randn(6, generator=torch.Generator().manual_seed(key)))


@pytest.mark.parametrize("step", [0, 40, 100_000])
def test_ema_moves_towards_g_with_a_warm_up(tmp_path, step):
    """ema <- ema + (1 - decay) (g - ema), decay = min(ema_decay, (1 + t) / (10 + t)) after t
    G updates; buffers are copied."""
    model = at_step(tiny_gan(tmp_path, "model.generator.batch_norm=true"), step)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
        for b in model.generator.buffers():
            if b.is_floating_point():
                b.add_(2.0)
    before = [p.clone() for p in model.generator_ema.parameters()]
    model._update_ema()
    decay = min(0.999, (1 + step) / (10 + step))
    pairs = zip(
        before, model.generator.parameters(), model.generator_ema.parameters(), strict=True
    )
    for old, g, ema in pairs:
        assert torch.allclose(ema, old + (1 - decay) * (g - old), atol=1e-6)
    for g, ema in zip(model.generator.buffers(), model.generator_ema.buffers(), strict=True):
        assert torch.equal(g, ema)
    off = tiny_gan(tmp_path, "model.ema_decay=null")
    off._update_ema()  # no EMA: nothing to do, and sampling uses G itself
    assert off.generator_ema is None and off.sampling_generator is off.generator


def test_trainer_options_the_gan_takes_over(tmp_path):
    model = tiny_gan(tmp_path)
    assert model.adopt_trainer_options({"gradient_clip_val": None}) == []
    assert model.gradient_clip_val is None
    taken = model.adopt_trainer_options(
        {
            "gradient_clip_val": 0.5,
            "gradient_clip_algorithm": "value",
            "accumulate_grad_batches": 1,
        }
    )
    assert taken == ["gradient_clip_val", "gradient_clip_algorithm"]
    assert (model.gradient_clip_val, model.gradient_clip_algorithm) == (0.5, "value")
    model.adopt_trainer_options({"gradient_clip_val": 2})
    assert model.gradient_clip_algorithm == "norm"
    with pytest.raises(GenlabError, match=r"^trainer.accumulate_grad_batches=3: the GAN loop"):
        model.adopt_trainer_options({"accumulate_grad_batches": 3})
