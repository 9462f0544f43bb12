"""Video prediction models, metrics and writer: metrics per step against hand-computed
values, teacher forcing, SVG-LP's KL against its closed form, sampling several futures, the
strips and GIFs on disk, a short real training that beats the copy-last-frame baseline, and
exact resume."""

from __future__ import annotations

import csv
import math
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF, FAST, TINY_CONVLSTM, make_cfg, options
from family_contract import FamilyContract
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from genlab.data.modality import video
from genlab.data.moving_mnist import MovingMNIST
from genlab.metrics.video_metrics import (
    MAX_PSNR,
    best_of_k,
    copy_last_frame,
    frame_sharpness,
    mean_frame,
    per_step_diversity,
    per_step_mse,
    per_step_psnr,
    per_step_sharpness,
    per_step_ssim,
)
from genlab.models.video_gan import VideoGAN
from genlab.models.video_prediction import SVGLP, VideoPredictor
from genlab.nets.convlstm import ConvLSTMPredictor
from genlab.nets.video_predictors import (
    GaussianLSTM,
    LSTMPredictor,
    PredictorLSTM,
    SVGFrameDecoder,
    SVGFrameEncoder,
)
from genlab.train import train
from genlab.writers import video_writer, writer_for

H = 12  # frames of 12 x 12: SSIM's 11 x 11 window fits
PIX = H * H


def const(values) -> torch.Tensor:
    """Clips of constant frames: values (B, T) -> (B, T, 1, H, H)."""
    v = torch.as_tensor(values, dtype=torch.float32)
    return v[:, :, None, None, None].expand(-1, -1, 1, H, H).clone()


# --- metrics -------------------------------------------------------------------------------
def test_metrics_per_step_against_hand_computed_values():
    """Constant frames a against black truth: MSE per frame = a^2 * pixels (summed, the
    OpenSTL convention), PSNR = -20 log10 a (averaged over clips per step), SSIM =
    C1 / (a^2 + C1) with C1 = 0.01^2 (no variance anywhere). Seen failing with the MSE
    averaged over pixels, and with PSNR computed from the MSE averaged over clips first."""
    a = [[0.1, 0.2, 0.0], [0.3, 0.2, 0.5]]  # (clips, steps)
    pred, truth = const(a), torch.zeros(2, 3, 1, H, H)
    mse = per_step_mse(pred, truth)
    expected = [PIX * (0.1**2 + 0.3**2) / 2, PIX * 0.2**2, PIX * 0.5**2 / 2]
    assert torch.allclose(mse, torch.tensor(expected), rtol=1e-5)
    psnr = per_step_psnr(pred, truth)
    db = lambda v: -20 * math.log10(v) if v else MAX_PSNR  # noqa: E731
    expected = [(db(0.1) + db(0.3)) / 2, db(0.2), (MAX_PSNR + db(0.5)) / 2]
    assert torch.allclose(psnr, torch.tensor(expected), rtol=1e-5)
    ssim = per_step_ssim(pred, truth)
    c1 = 0.01**2
    s = lambda v: c1 / (v**2 + c1)  # noqa: E731
    expected = [(s(0.1) + s(0.3)) / 2, s(0.2), (1.0 + s(0.5)) / 2]
    assert torch.allclose(ssim, torch.tensor(expected), atol=1e-4)


def test_baselines_copy_the_last_frame_and_average_the_context():
    context = const([[0.2, 0.4, 0.9], [0.0, 0.3, 0.3]])
    truth = torch.zeros(2, 2, 1, H, H)
    assert torch.allclose(
        per_step_mse(copy_last_frame(context, 2), truth),
        torch.full((2,), PIX * (0.9**2 + 0.3**2) / 2),
    )
    assert torch.allclose(
        per_step_mse(mean_frame(context, 2), truth),
        torch.full((2,), PIX * (0.5**2 + 0.2**2) / 2),
        rtol=1e-5,
    )


def test_sharpness_against_hand_computed_values():
    """A 0/1 checkerboard differs by 1 from every neighbour: sharpness 1 + 1 = 2; a constant
    frame 0; a frame scaled by a has a times the truth's; the ratio is of clip means per step.
    Seen failing with only the horizontal differences counted, and with the ratio inverted."""
    board = (torch.arange(H)[:, None] + torch.arange(H)[None, :]) % 2  # (h, w)
    truth = board.float().expand(2, 3, 1, H, H).clone()
    assert torch.allclose(frame_sharpness(truth), torch.full((2, 3), 2.0))
    assert torch.equal(frame_sharpness(const([[0.3, 0.7]])), torch.zeros(1, 2))
    pred = truth.clone()
    pred[0] *= 0.5  # clip 0 at half contrast: (0.5 * 2 + 2) / 2 / 2 = 0.75 at every step
    pred[:, 2] = 0.4  # a constant last step: 0
    assert torch.allclose(per_step_sharpness(pred, truth), torch.tensor([0.75, 0.75, 0.0]))


def test_best_of_k_and_diversity():
    """The best of k is chosen per clip (here sample 2 for clip 0, sample 0 for clip 1);
    diversity is the mean pairwise MSE per frame, 0 for identical samples. Seen failing with
    the worst sample chosen (argmax)."""
    samples = torch.stack(
        [
            const([[0.5, 0.5], [0.1, 0.1]]),
            const([[0.4, 0.4], [0.2, 0.2]]),
            const([[0.3, 0.1], [0.3, 0.3]]),
        ]
    )  # (k=3, b=2, t=2)
    truth = torch.zeros(2, 2, 1, H, H)
    best = best_of_k(samples, truth)
    assert torch.equal(best[0], samples[2, 0]) and torch.equal(best[1], samples[0, 1])
    div = per_step_diversity(samples)
    pairs0 = [
        (0.5 - 0.4) ** 2 + (0.1 - 0.2) ** 2,
        (0.5 - 0.3) ** 2 + (0.1 - 0.3) ** 2,
        (0.4 - 0.3) ** 2 + (0.2 - 0.3) ** 2,
    ]  # step 0: clip 0 + clip 1 per pair
    pairs1 = [
        (0.5 - 0.4) ** 2 + (0.1 - 0.2) ** 2,
        (0.5 - 0.1) ** 2 + (0.1 - 0.3) ** 2,
        (0.4 - 0.1) ** 2 + (0.2 - 0.3) ** 2,
    ]
    expected = [PIX * sum(p) / 2 / 3 for p in (pairs0, pairs1)]
    assert torch.allclose(div, torch.tensor(expected), rtol=1e-5)
    assert torch.equal(
        per_step_diversity(samples[:1].expand(4, -1, -1, -1, -1, -1)), torch.zeros(2)
    )


# --- the deterministic predictor ----------------------------------------------------------
def tiny_predictor(**kw) -> VideoPredictor:
    torch.manual_seed(0)
    net = ConvLSTMPredictor(
        channels=1, image_size=8, hidden_channels=[4], frame_channels=4, downsample=1
    )
    return VideoPredictor(net=net, optimizer=partial(torch.optim.Adam, lr=1e-3), **kw)


def test_teacher_forcing_feeds_the_true_previous_frame_and_free_running_its_own():
    """Seen failing with the true frame of the same step fed (truth[:, k + 1]), and with
    the prediction fed as logits rather than sigmoid(logits)."""
    model = tiny_predictor()
    g = torch.Generator().manual_seed(1)
    context, future = (
        torch.rand(2, 3, 1, 8, 8, generator=g),
        torch.rand(2, 3, 1, 8, 8, generator=g),
    )
    net = model.net
    with torch.no_grad():
        state = net.encode_context(context)
        forced, free = [], []
        s = state
        for frame in (context[:, -1], future[:, 0], future[:, 1]):
            out, s = net.step(frame, s)
            forced.append(out)
        s, frame = state, context[:, -1]
        for _ in range(3):
            out, s = net.step(frame, s)
            free.append(out)
            frame = torch.sigmoid(out)
        assert torch.equal(
            model.rollout(context, 3, truth=future, p_truth=1.0), torch.stack(forced, 1)
        )
        assert torch.equal(model.rollout(context, 3), torch.stack(free, 1))
        futures = model.predict(context, 3, samples=2)
        generated = model.generate(context)  # CanGenerate: future_frames after the context
    assert futures.shape == (2, 2, 3, 1, 8, 8)
    assert generated.shape == (2, model.future_frames, 1, 8, 8)
    assert torch.equal(generated[:, :3], futures[0])
    assert torch.equal(futures[0], futures[1]) and torch.equal(
        futures[0], torch.stack(free, 1).sigmoid()
    )


@pytest.mark.parametrize("net", ["convlstm", "lstm"])
def test_predictions_depend_on_the_whole_context(net):
    """Changing only the first context frame changes the predicted future: the forecaster
    starts from the encoder's state (a model given only the last frame cannot know the
    velocity). Seen failing with the rollout starting from a zero state instead of
    encode_context's."""
    torch.manual_seed(0)
    if net == "convlstm":
        model = tiny_predictor()
    else:
        lstm = LSTMPredictor(channels=1, image_size=8, hidden_size=8)
        model = VideoPredictor(net=lstm, optimizer=partial(torch.optim.Adam, lr=1e-3))
    context = torch.rand(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    other = context.clone()
    other[:, 0] = 1.0 - other[:, 0]
    with torch.no_grad():
        a, b = model.predict(context, 2)[0], model.predict(other, 2)[0]
    assert not torch.allclose(a, b)


# --- SVG-LP --------------------------------------------------------------------------------
def tiny_svg(**kw) -> SVGLP:
    torch.manual_seed(0)
    g, z = 6, 3
    return SVGLP(
        encoder=SVGFrameEncoder(channels=1, image_size=16, out_dim=g, hidden_channels=[4, 8]),
        decoder=SVGFrameDecoder(channels=1, image_size=16, in_dim=g, hidden_channels=[4, 8]),
        posterior=GaussianLSTM(in_dim=g, out_dim=z, hidden_size=8),
        prior=GaussianLSTM(in_dim=g, out_dim=z, hidden_size=8),
        predictor=PredictorLSTM(in_dim=g + z, out_dim=g, hidden_size=8),
        optimizer=partial(torch.optim.Adam, lr=1e-3),
        g_dim=g,
        z_dim=z,
        **kw,
    )


def test_svg_kl_is_the_closed_form_between_posterior_and_learned_prior():
    """Summed over steps t = 1..T-1: KL(N(mq, vq) || N(mp, vp)) = 1/2 sum(log vp/vq +
    (vq + (mq - mp)^2) / vp - 1), q reading the code of x_t, p that of x_{t-1}. Seen failing
    with the KL's direction swapped (KL(p || q)) and with the prior reading x_t."""
    model = tiny_svg().eval()
    g = torch.Generator().manual_seed(2)
    context, future = (
        torch.rand(3, 2, 1, 16, 16, generator=g),
        torch.rand(3, 3, 1, 16, 16, generator=g),
    )
    with torch.no_grad():
        kl = model.elbo_terms(context, future)["kl"]
        codes, _ = model.encode(torch.cat([context, future], 1))
        expected, sq, sp = torch.zeros(3), None, None
        for t in range(1, 5):
            mq, lq, sq = model.posterior(codes[:, t], sq)
            mp, lp, sp = model.prior(codes[:, t - 1], sp)
            expected += 0.5 * (lp - lq + (lq.exp() + (mq - mp) ** 2) / lp.exp() - 1).sum(1)
            ref = torch.distributions.kl_divergence(
                torch.distributions.Normal(mq, (0.5 * lq).exp()),
                torch.distributions.Normal(mp, (0.5 * lp).exp()),
            )
            assert (ref >= 0).all()
    assert torch.allclose(kl, expected, rtol=1e-5, atol=1e-6)
    assert (kl > 0).all()


def test_svg_kl_vanishes_when_the_prior_equals_the_posterior():
    """Prior = posterior (same weights) on a clip whose frames are all equal: q = p at every
    step, KL = 0. Seen failing with the KL taken to N(0, I) (a VAE's) instead of the learned
    prior."""
    model = tiny_svg(beta=5.0).eval()
    model.prior.load_state_dict(model.posterior.state_dict())
    frame = torch.rand(2, 1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    context, future = frame.expand(-1, 2, -1, -1, -1), frame.expand(-1, 3, -1, -1, -1)
    with torch.no_grad():
        terms = model.elbo_terms(context, future)
    assert torch.allclose(terms["kl"], torch.zeros(2), atol=1e-6)
    assert (terms["recon"] > 0).all()


def test_svg_samples_several_futures_reproducibly():
    """Seen failing with the prior draws taken from the global generator (not `generator`)."""
    model = tiny_svg().eval()
    context = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a = model.predict(context, 4, samples=3, generator=torch.Generator().manual_seed(7))
        g = model.generate(context, samples=3, generator=torch.Generator().manual_seed(7))
        b = model.predict(context, 4, samples=3, generator=torch.Generator().manual_seed(7))
        c = model.predict(context, 4, samples=3, generator=torch.Generator().manual_seed(8))
    assert a.shape == (3, 2, 4, 1, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert g.shape == (3, 2, model.future_frames, 1, 16, 16) and torch.equal(g[:, :, :4], a)
    assert (per_step_diversity(a) > 0).all()  # the samples differ from each other


# --- the writer ----------------------------------------------------------------------------
def test_strips_and_gifs_on_disk(tmp_path):
    """PNG: per clip a context row, one row per predicted future and a truth row; GIF: the
    context then the future, true clip beside the predicted one(s). Seen failing with the
    truth row put before the predictions."""
    g = torch.Generator().manual_seed(0)
    context = torch.rand(2, 3, 1, 8, 8, generator=g)
    truth = torch.rand(2, 2, 1, 8, 8, generator=g)
    preds = torch.rand(3, 2, 2, 1, 8, 8, generator=g)  # 3 samples
    png, gif = video_writer.save_prediction(context, preds, truth, tmp_path / "p", fps=5)
    rows, cols = 2 * (1 + 3 + 1), 3
    image = Image.open(png)
    assert image.size == (cols * 10 + 2, rows * 10 + 2)
    pixels = torch.from_numpy(np.array(image.convert("L"))).float()
    u8 = lambda t: (t.clamp(0, 1) * 255).round()  # noqa: E731
    # clip 1's second sample, frame 1: row 5 + 2 = 7, column 1
    assert torch.equal(pixels[7 * 10 + 2 : 7 * 10 + 10, 10 + 2 : 10 + 10], u8(preds[1, 1, 1, 0]))
    anim = Image.open(gif)
    assert anim.n_frames == 5 and anim.info["duration"] == 200
    anim.seek(4)  # the last future frame: columns truth, sample 0, 1, 2
    frame = torch.from_numpy(np.array(anim.convert("L"))).float()
    assert torch.equal(frame[2:10, 2:10], u8(truth[0, 1, 0]))
    assert torch.equal(frame[2:10, 12:20], u8(preds[0, 0, 1, 0]))
    clips = torch.rand(4, 5, 1, 8, 8, generator=g)
    modality = video(5, 1, 8, fps=4)
    writer = writer_for(modality)
    assert writer is video_writer
    files = writer.save(clips, tmp_path / "clips", modality=modality)
    assert [f.suffix for f in files] == [".png", ".gif"]
    assert Image.open(files[1]).n_frames == 5
    assert writer.preview(clips, modality=modality).shape == (3, 4 * 10 + 2, 5 * 10 + 2)
    media = writer.media(clips, modality=modality, captions=list("abcd"))
    assert len(media) == 4 and type(media[0]).__name__ == "Video"


# --- training ------------------------------------------------------------------------------
BASE = [
    "trainer=cpu",
    "logger=csv",
    "~callbacks.rich_progress_bar",
    "trainer.enable_model_summary=false",
    "extras.print_config=false",
]
# 16 x 16 frames, 3 -> 3, digits moving 2.25 pixels a frame; a one-layer ConvLSTM
SMALL = [
    "data=moving_mnist",
    "data.image_size=16",
    "data.context_frames=3",
    "data.future_frames=3",
    "data.step_length=0.25",
    "data.batch_size=16",
    "data.val_size=64",
    "data.test_size=64",
    "model=convlstm",
    "model.net.hidden_channels=[16]",
    "model.net.kernel_size=3",
    "model.net.frame_channels=8",
    "model.net.downsample=1",
    "model.reconstruction=bce",
]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_short_training_beats_copy_last_frame(tmp_path, seed):
    """100 steps (about 5 s): the test MSE per frame is below 0.8 x the copy-last-frame
    baseline and 0.9 x the mean-frame baseline on the same clips. Measured over seeds 0-8
    (2026-12-04, 2-core AMD EPYC): 0.51-0.61 x copy-last, 0.65-0.77 x mean-frame. At this budget
    the model is still in the blurry regime (a model given only the last frame scores alike;
    test_predictions_depend_on_the_whole_context guards the context). Seen failing with the
    val/test predictions scored as logits (sigmoid left out)."""
    summary = train(
        make_cfg(
            tmp_path,
            *BASE,
            *SMALL,
            f"seed={seed}",
            f"data.clip_seed={seed}",
            "data.train_size=1600",
            "model.optimizer.lr=1e-2",
            "trainer.max_epochs=1",
            "trainer.max_steps=100",
            "trainer.log_every_n_steps=50",
        )
    )
    m = summary["metrics"]
    assert m["test/mse_per_frame"] < 0.8 * m["test/mse_copy_last"], m
    assert m["test/mse_per_frame"] < 0.9 * m["test/mse_mean_frame"], m


SCHEDULED = (*TINY_CONVLSTM, "model.teacher_forcing=1.0", "model.teacher_forcing_decay_steps=8")


class TestScheduledSampling(FamilyContract):
    """The family contract (exact mid-epoch resume, no host sync) with teacher forcing
    decaying from 1 to 0 over 8 steps: random choices of the true frame at every step, and
    training clips new every epoch (4 batches an epoch: the resume stops in epoch 1). Seen
    failing with EpochClips not skipping the batches already served (the resumed epoch starts
    over) and with the decay reading a step counter of its own (restarted at 0 by a
    resume)."""

    overrides = SCHEDULED

    def test_the_logged_probability_follows_the_schedule(self, tmp_path):
        train(
            make_cfg(
                tmp_path,
                *FAST,
                *SCHEDULED,
                *self.epoch,
                "trainer.max_steps=10",
                "trainer.max_epochs=5",
                "test=false",
            )
        )
        (path,) = Path(tmp_path).glob("run/csv/**/metrics.csv")
        with open(path) as f:
            rows = [r for r in csv.DictReader(f) if r.get("train/teacher_forcing")]
        logged = {int(r["step"]): float(r["train/teacher_forcing"]) for r in rows}
        assert sorted(logged) == list(range(10))
        assert all(math.isclose(p, max(0.0, 1 - s / 8)) for s, p in logged.items()), logged


def test_svg_trains_and_logs_best_of_k_below_one_sample(tmp_path):
    """A few SVG-LP steps through genlab.train on the stochastic variant: the logged best of
    k futures is never worse than the first future, and the futures differ; the conditional
    grid (context | prediction, context | truth) is written as a PNG and a GIF through
    `generate`. Seen failing with the worst of k chosen."""
    summary = train(
        make_cfg(
            tmp_path,
            *BASE,
            *SMALL[:8],
            "data.stochastic=true",
            "data.train_size=64",
            "data.val_size=16",
            "data.test_size=16",
            "model=svg_lp",
            "model.g_dim=8",
            "model.z_dim=2",
            "model.encoder.hidden_channels=[4,8]",
            "model.posterior.hidden_size=8",
            "model.prior.hidden_size=8",
            "model.predictor.hidden_size=8",
            "model.eval_samples=3",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.log_every_n_steps=1",
        )
    )
    m = summary["metrics"]
    for stage in ("val", "test"):
        assert m[f"{stage}/mse_per_frame_best_of_k"] <= m[f"{stage}/mse_per_frame"] + 1e-6
        assert m[f"{stage}/diversity"] > 0
        assert m[f"{stage}/kl_per_frame_nats"] >= 0
    images = sorted(p.name for p in (tmp_path / "run" / "images").glob("generated_*"))
    assert {n.rsplit(".", 1)[1] for n in images} == {"png", "gif"}, images


# --- recipes -------------------------------------------------------------------------------
# experiment -> (model class, frames, context, future, stochastic, what the widths must be)
RECIPES = {
    "convlstm_mmnist": (VideoPredictor, 32, 5, 5, False, {"net.hidden_channels": [32, 32]}),
    "lstm_mmnist": (VideoPredictor, 32, 5, 5, False, {"net.hidden_size": 512}),
    "svg_mmnist": (SVGLP, 32, 5, 5, True, {"g_dim": 64, "encoder.hidden_channels": [32, 64, 128]}),
    "video_gan_mmnist": (
        VideoGAN,
        32,
        5,
        5,
        True,
        {"generator.hidden_channels": [32, 32], "discriminator.hidden_channels": [16, 32, 64]},
    ),
    # the papers' sizes: Shi et al.'s 128-64-64 ConvLSTM, Srivastava et al.'s 2048 units,
    # Denton & Fergus's SM-MNIST setting (5 -> 10)
    "convlstm_mmnist_paper": (
        VideoPredictor,
        64,
        10,
        10,
        False,
        {"net.hidden_channels": [128, 64, 64], "net.kernel_size": 5},
    ),
    "lstm_mmnist_paper": (VideoPredictor, 64, 10, 10, False, {"net.hidden_size": 2048}),
    "svg_mmnist_paper": (
        SVGLP,
        64,
        5,
        10,
        True,
        {"g_dim": 128, "z_dim": 10, "encoder.hidden_channels": [64, 128, 256, 512]},
    ),
    "video_gan_mmnist_paper": (
        VideoGAN,
        64,
        10,
        10,
        True,
        {
            "generator.hidden_channels": [128, 64, 64],
            "discriminator.hidden_channels": [64, 128, 256],
        },
    ),
}


def test_every_video_recipe_is_listed():
    video = {"convlstm", "lstm_predictor", "svg_lp", "video_gan"}
    found = {name for name in options("experiment") if recipe_model(name) in video}
    assert found == set(RECIPES)


def recipe_model(experiment: str) -> str:
    """The model option an experiment file overrides."""
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text()
    match = re.search(r"override /model: (\w+)", text)
    return match.group(1) if match else ""


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_the_recipes_compose_and_instantiate(tmp_path, experiment):
    """Each recipe builds its model and datamodule as described: the CPU ones 400 steps of 16
    clips at 32 x 32, 5 -> 5, on the CPU (the runs measured in docs/video.md), and their
    predictions come out shaped as the data's futures; the paper ones 64 x 64 on a GPU."""
    kind, size, t_c, t_f, stochastic, widths = RECIPES[experiment]
    cfg = make_cfg(tmp_path, f"experiment={experiment}")
    model, dm = instantiate(cfg.model), instantiate(cfg.data)
    assert isinstance(model, kind) and isinstance(dm, MovingMNIST)
    assert (dm.image_size, dm.context_frames, dm.future_frames) == (size, t_c, t_f)
    assert model.future_frames == t_f and bool(cfg.data.stochastic) == stochastic
    for key, value in widths.items():
        assert OmegaConf.select(cfg.model, key) == value, key
    if experiment.endswith("_paper"):
        assert cfg.trainer.accelerator == "gpu"
        return
    assert cfg.trainer.accelerator != "gpu" and cfg.trainer.max_epochs == 1
    assert cfg.data.train_size // cfg.data.batch_size == 400
    dm.setup("fit")
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (16, 5, 1, 32, 32) and y.shape == (16, 5, 1, 32, 32)
    with torch.no_grad():
        assert model.eval().generate(y).shape == x.shape
