"""The adversarial video predictor (model=video_gan) on the one adversarial loop: what the
temporal discriminator sees in training (whole clips: the context, then the true or the
predicted frames), D frozen and untouched in G's step, the MSE twin (adv_weight=0) never
touching D, and a short run through genlab.train writing its strips and GIFs. Exact resume and
the no-sync check: tests/test_family_contracts.py::TestVideoGAN."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import FAST, make_cfg, short_trainer
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from test_gan import WatchGeneratorStep

from genlab.models.video_prediction import rollout
from genlab.train import train
from genlab.utils.errors import GenlabError

T_C, T_F = 3, 2
TINY = [
    "model=video_gan",
    "data.image_size=16",
    f"data.context_frames={T_C}",
    f"data.future_frames={T_F}",
    "data.batch_size=4",
    "data.train_size=32",
    "data.val_size=8",
    "data.test_size=8",
    "model.generator.hidden_channels=[4]",
    "model.generator.frame_channels=4",
    "model.generator.downsample=1",
    "model.discriminator.hidden_channels=[4,8]",
]


class SeenByD(L.Callback):
    """Records every clip D is given in training, and for each batch the clips D should see:
    [context, truth] and [context, G's prediction] (G as it is before the batch's steps)."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []
        self.expected: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handle = None

    def on_fit_start(self, trainer, pl_module) -> None:
        def record(module, args):
            if module.training:
                self.seen.append(args[0].detach().clone())

        self.handle = pl_module.discriminator.register_forward_pre_hook(record)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.handle.remove()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        truth, context = batch
        with torch.no_grad():
            pred = torch.sigmoid(rollout(pl_module.generator, context, truth.shape[1]))
        real = torch.cat([context, truth], 1)
        self.expected.append((real, torch.cat([context, pred], 1)))


def fit(tmp_path, *overrides: str, steps: int = 3):
    cfg = make_cfg(tmp_path, *FAST, *TINY, *overrides, "test=false")
    model, datamodule = instantiate(cfg.model), instantiate(cfg.data)
    watch, seen = WatchGeneratorStep(), SeenByD()
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    trainer = short_trainer(steps, watch, seen, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    d_changed = not all(
        torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters(), strict=True)
    )
    return watch, seen, d_changed


def test_temporal_d_judges_context_then_prediction_and_is_frozen_in_g_step(tmp_path):
    """Per iteration D sees three clips of T_c + T_f frames: [context, truth] and
    [context, prediction] in its step, [context, prediction] again in G's step; the G step
    leaves D frozen, without gradient and unchanged (WatchGeneratorStep), while D's own steps
    change it. Seen failing with the critic judging the predicted frames alone (no context)
    and with the frames put before the context."""
    watch, seen, d_changed = fit(tmp_path)
    assert watch.g_steps == 3 and d_changed
    assert len(seen.seen) == 3 * 3
    for i, (real, fake) in enumerate(seen.expected):
        d_real, d_fake, g_fake = seen.seen[3 * i : 3 * i + 3]
        assert d_real.shape == (4, T_C + T_F, 1, 16, 16)
        assert torch.equal(d_real, real)
        assert torch.allclose(d_fake, fake, atol=1e-6) and torch.allclose(g_fake, fake, atol=1e-6)
        assert not torch.allclose(fake[:, T_C:], real[:, T_C:], atol=1e-2)  # a prediction


def test_the_mse_twin_never_runs_or_steps_d(tmp_path):
    """model.adv_weight=0: G learns from the reconstruction alone; D is never called in
    training and its weights stay as built. Seen failing with the family saying D takes part
    whatever the weight (`adversarial = True` on VideoGAN)."""
    watch, seen, d_changed = fit(tmp_path, "model.adv_weight=0")
    assert watch.g_steps == 3 and not seen.seen and not d_changed


def test_a_short_run_writes_strips_and_logs_the_video_metrics(tmp_path):
    """A few iterations through genlab.train: val/test log the video metrics beside the
    baselines and D's view; the conditional grid writes context | prediction | truth strips
    and a GIF from the EMA generator."""
    summary = train(make_cfg(tmp_path, *FAST, *TINY, "trainer.max_epochs=1"))
    m = summary["metrics"]
    for key in ("mse_per_frame", "ssim", "sharpness", "mse_copy_last", "d_real", "d_fake"):
        assert m[f"test/{key}"] is not None, key
    assert m["test/sharpness_copy_last"] == pytest.approx(1.0, abs=0.5)  # a real frame
    images = sorted(p.name for p in (tmp_path / "run" / "images").glob("generated_*"))
    assert {n.rsplit(".", 1)[1] for n in images} == {"png", "gif"}, images


def test_wrong_horizon_and_nothing_to_learn_are_refused(tmp_path):
    """Both before the first step: no checkpoint is written."""
    for i, (option, message) in enumerate(
        (
            ("model.recon_weight=0", "recon_weight are both 0"),
            ("model.future_frames=4", "model.future_frames=4"),
        )
    ):
        cfg = make_cfg(tmp_path / str(i), *FAST, *TINY, "model.adv_weight=0", option)
        # (the CLI shows the GenlabError inside Hydra's InstantiationException alone)
        with pytest.raises((GenlabError, InstantiationException), match=message):
            train(cfg)
        assert not list((tmp_path / str(i)).rglob("*.ckpt"))
