"""Cheap per-iteration work in the adversarial loop, and the same values as the plain code it
replaced: the EMA of G in two foreach calls over cached lists (parameters lerped, buffers
copied) against a per-tensor loop; the lists follow conversions and loads; the non-finite
record in one copy per step that still names the first bad step.

Seen failing (in a scratch copy of src/): the EMA leaving buffers out, the cache not dropped
in `_apply` (a `.double()` model's EMA kept copying into the old buffers), the record naming
the last bad step of a buffer instead of the first, and losing a bad step at the buffer's
wrap."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_cfg
from hydra.utils import instantiate
from torch.profiler import ProfilerActivity, profile

from genlab.models.genlab_module import Diverged

DCGAN = (
    "model=dcgan",
    "data.image_size=32",
    "data.channels=1",
    "model.latent_dim=8",
    "model.generator.base_channels=4",
    "model.discriminator.base_channels=4",
)


@pytest.fixture
def gan(tmp_path, monkeypatch):
    """A DCGAN module (batch norm in G: buffers) whose `global_step` the test sets."""
    model = instantiate(make_cfg(tmp_path, "trainer=cpu", *DCGAN).model)
    model.step_now = 0
    monkeypatch.setattr(type(model), "global_step", property(lambda self: self.step_now))
    return model


def wander(model, seed: int) -> None:
    """Move G's weights and batch-norm statistics as a training step would."""
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.generator.parameters()).dtype
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.1)
    model.generator.train()
    model.generator(torch.randn(4, model.latent_dim, generator=gen, dtype=dtype))


def reference_ema(ema, g, decay: float) -> None:
    """The per-tensor update: each parameter lerped, each buffer copied."""
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), g.parameters(), strict=True):
            pe.lerp_(p, 1.0 - decay)
        for be, b in zip(ema.buffers(), g.buffers(), strict=True):
            be.copy_(b)


def test_ema_is_the_per_tensor_update_bit_for_bit(gan):
    assert len(list(gan.generator.buffers())) >= 3  # batch-norm statistics are covered
    gan.ema_batchnorm = "copy"  # the buffers copied here (own: test_gan_steps.py)
    ref = copy.deepcopy(gan.generator_ema)
    for step in range(6):
        gan.step_now = step
        wander(gan, step)
        gan._update_ema()
        reference_ema(ref, gan.generator, min(gan.ema_decay, (1.0 + step) / (10.0 + step)))
        for (name, a), b in zip(
            gan.generator_ema.state_dict().items(), ref.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), (step, name)
    # the buffers are G's own values (copied), the weights an average (not G's)
    assert torch.equal(
        gan.generator_ema.state_dict()["body.1.running_mean"],
        gan.generator.state_dict()["body.1.running_mean"],
    )
    first = next(gan.generator.parameters())
    assert not torch.equal(next(gan.generator_ema.parameters()), first)


def test_the_cached_lists_follow_conversions_and_loads(gan):
    """`.double()` puts new buffers in place; `load_state_dict(assign=True)` new parameters:
    the EMA must update the tensors the module holds now."""
    gan.ema_batchnorm = "copy"
    gan._update_ema()  # the lists are cached now
    gan.double()
    wander(gan, 1)
    gan._update_ema()
    for a, b in zip(gan.generator_ema.buffers(), gan.generator.buffers(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    state = {
        k: v.clone() + 1 if k.startswith("generator.") and v.is_floating_point() else v
        for k, v in gan.state_dict().items()
    }
    gan.load_state_dict(state, assign=True)  # new parameter objects
    before = [p.clone() for p in gan.generator_ema.parameters()]
    gan._update_ema()
    for old, new, g in zip(
        before, gan.generator_ema.parameters(), gan.generator.parameters(), strict=True
    ):
        assert torch.equal(new, torch.lerp(old, g, 1.0 - 0.1))


def kernels(fn) -> list[str]:
    """The top-level ATen operators `fn` runs that compute (views left out)."""
    views = {"aten::detach", "aten::select", "aten::reshape", "aten::view", "aten::slice"}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return [
        e.name
        for e in prof.events()
        if e.name.startswith("aten::") and e.cpu_parent is None and e.name not in views
    ]


def test_the_non_finite_record_costs_one_copy_a_step_and_names_the_first_bad_step(gan):
    good, nan, inf = torch.tensor(0.5), torch.tensor(float("nan")), torch.tensor(float("inf"))
    gan.track_finite(0, {"loss_d": good, "loss_g": good})

    def steps():
        for step in range(1, 33):
            gan.track_finite(step, {"loss_d": good, "loss_g": good})

    ops = kernels(steps)
    assert ops.count("aten::stack") == 32 and len(ops) <= 32 + 12, ops  # one fold at most
    gan.raise_if_diverged()  # all finite
    # 200 steps (several buffers' worth): the first bad step is 70, with its values
    for step in range(33, 200):
        loss_g = nan if step == 70 else inf if step in (71, 150) else good
        gan.track_finite(step, {"loss_d": good, "loss_g": loss_g})
    with pytest.raises(Diverged, match=r"at step 70 .*train/loss_d=0.5, train/loss_g=nan"):
        gan.raise_if_diverged()
