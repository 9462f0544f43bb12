"""StackGAN on the adversarial loop (genlab.models.stackgan_model): the matching-aware D's three
pairings and the authors' weighting inside a real loop iteration, conditioning augmentation's
KL in G's loss with its weight (against the closed form of the CA's own mu and sigma), exact
resume in the middle of Stage-II (started at the checkpoint's step), the recipes, sampling
from text through genlab.sample (an unknown word refused, named), a short training whose
images put the digits where their captions say more often than the shuffled captions do,
and the options refused before training.

Broken variants each test was seen failing on (in a scratch copy): the wrong pairing given
the matching captions, wrong and fake weighted 1 each, the KL added with weight 1 (and left
out), the Stage-I checkpoint read again over a resumed run's weights (resume: its EMA drifted
back), `ckpt_path` dropped on resume (logged from step 0), sample() without captions drawing
unconditioned images instead of naming text=.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import FAST, assert_same_state, load, make_cfg, run_cli
from hydra.utils import instantiate
from runlogs import assert_resumed_at

from genlab.models.stackgan_model import StackGAN
from genlab.nets.stackgan import ConditioningAugmentation, StackDiscriminator, gaussian_kl
from genlab.train import train
from genlab.utils.errors import GenlabError, find_user_error

# a StackGAN small enough that a few iterations take a second: 32-pixel captioned digits,
# 2-4 channels, 8-dim text
TINY = [
    "experiment=stackgan_digits",
    *FAST,
    "data.n_train=64",
    "data.n_val=16",
    "data.n_test=16",
    "data.n_heldout=16",
    "data.batch_size=8",
    "trainer.max_steps=-1",
    "trainer.val_check_interval=1.0",
    "trainer.check_val_every_n_epoch=1",
    "callbacks.sample_grid.n=8",
    "model.latent_dim=4",
    "model.embed_dim=8",
    "model.cond_dim=4",
    "model.text_encoder.embed_dim=8",
    "model.text_encoder.hidden_dim=8",
    "model.stage1_generator.base_channels=2",
    "model.stage1_discriminator.base_channels=2",
    "model.stage2_generator.base_channels=4",
    "model.stage2_generator.residual_blocks=1",
    "model.stage2_discriminator.base_channels=2",
    "test=false",
]


def rows(run_dir: Path | str) -> list[dict[str, str]]:
    with open(Path(run_dir) / "csv" / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r.get("train/loss_g")]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


# --- the matching-aware D inside the loop --------------------------------------------------------
class Seen:
    """What D is shown (image, caption tokens, level) and what it answers, per call, and the
    training batches, recorded from the real loop."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor, str, torch.Tensor]] = []
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        d_forward, step = StackDiscriminator.forward, StackGAN.training_step

        def forward(d, x, tokens, level):
            out = d_forward(d, x, tokens, level)
            if d.training:  # the training steps, not validation
                self.calls.append((x.detach().clone(), tokens.clone(), level, out.detach()))
            return out

        def training_step(model, batch, batch_idx):
            self.batches.append((batch[0].clone(), batch[1].clone()))
            return step(model, batch, batch_idx)

        monkeypatch.setattr(StackDiscriminator, "forward", forward)
        monkeypatch.setattr(StackGAN, "training_step", training_step)


@pytest.mark.parametrize("matching_aware", [True, False])
def test_the_matching_aware_d_sees_the_three_pairings_in_a_loop_iteration(
    tmp_path, monkeypatch, matching_aware
):
    """One real iteration: D's step shows it (real image, its caption), (generated image, its
    caption) and (real image, another item's caption: a fixed-point-free shuffle of the
    batch's), and G's step the same generated images; the logged D loss is the authors'
    real + (wrong + fake) / 2 of exactly those scores. Without matching awareness D never
    sees the wrong pairing and its loss is real + fake."""
    seen = Seen(monkeypatch)
    summary = train(
        make_cfg(
            tmp_path,
            *TINY,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=0",
            f"model.matching_aware={str(matching_aware).lower()}",
        )
    )
    ((images, tokens),) = seen.batches
    real = images * 2 - 1
    assert all(level == "stage1" for *_, level, _ in seen.calls)
    shown = [(x, t) for x, t, _, _ in seen.calls]
    assert len(shown) == (4 if matching_aware else 3)
    is_real = [torch.equal(x, real) for x, _ in shown]
    matching = [torch.equal(t, tokens) for _, t in shown]
    # the fakes: the same images in D's step and G's step (one G pass per iteration)
    fakes = [i for i, r in enumerate(is_real) if not r]
    assert len(fakes) == 2 and torch.equal(shown[fakes[0]][0], shown[fakes[1]][0])
    assert all(matching[i] for i in fakes)
    pairs = [(r, m) for r, m in zip(is_real, matching, strict=True)]
    assert pairs.count((True, True)) == 1
    assert pairs.count((True, False)) == (1 if matching_aware else 0)
    scores = [s for *_, s in seen.calls]
    real_s, fake_s = scores[pairs.index((True, True))], scores[fakes[0]]
    loss = F.softplus(-real_s).mean() + F.softplus(fake_s).mean()
    if matching_aware:
        i = pairs.index((True, False))
        wrong_tokens, wrong_s = shown[i][1], scores[i]
        # another item's caption for every image: the batch's captions, shuffled without a
        # fixed point (every row differs from its own where the batch's captions differ)
        own = [(tokens == tokens[k]).all(1).sum() for k in range(len(tokens))]
        assert sorted(map(tuple, wrong_tokens.tolist())) == sorted(map(tuple, tokens.tolist()))
        for k in range(len(tokens)):
            if own[k] == 1:
                assert not torch.equal(wrong_tokens[k], tokens[k])
        loss = F.softplus(-real_s).mean() + 0.5 * (
            F.softplus(wrong_s).mean() + F.softplus(fake_s).mean()
        )
    (row,) = rows(summary["run_dir"])
    assert close(float(row["train/loss_d"]), float(loss))
    assert ("train/d_wrong" in row and row["train/d_wrong"] != "") == matching_aware


# --- conditioning augmentation's KL in G's loss ------------------------------------------------
@pytest.mark.parametrize("reduction, weight", [("sum", 3.0), ("mean", 2.0)])
def test_the_kl_of_ca_is_in_gs_loss_with_its_weight(tmp_path, monkeypatch, reduction, weight):
    """At every logged iteration: train/loss_g_kl is the closed-form KL of the CA's own
    (mu, log sigma^2) on the batch's captions (summed over c's dims, or their mean), and
    train/loss_g = loss_g_adv + kl_weight * loss_g_kl. With model.ca=false the KL is 0."""
    stats: list[torch.Tensor] = []
    distribution = ConditioningAugmentation.distribution

    def record(ca, text):
        mu, logvar = distribution(ca, text)
        if torch.is_grad_enabled():  # training steps (validation and grids run without)
            stats.append(gaussian_kl(mu.detach(), logvar.detach()).mean())
        return mu, logvar

    monkeypatch.setattr(ConditioningAugmentation, "distribution", record)
    common = [*TINY, "trainer.max_epochs=1", "trainer.limit_val_batches=0"]
    summary = train(
        make_cfg(
            tmp_path / "ca",
            *common,
            f"model.kl_weight={weight}",
            f"model.kl_reduction={reduction}",
        )
    )
    logged = rows(summary["run_dir"])
    assert len(logged) == len(stats) == 4
    per = 1.0 if reduction == "sum" else 4.0  # model.cond_dim=4
    for row, kl in zip(logged, stats, strict=True):
        assert float(kl) > 1e-4
        assert close(float(row["train/loss_g_kl"]), float(kl) / per)
        g = float(row["train/loss_g_adv"]) + weight * float(row["train/loss_g_kl"])
        assert close(float(row["train/loss_g"]), g)
    off = train(make_cfg(tmp_path / "off", *common, "model.ca=false"))
    for row in rows(off["run_dir"]):
        assert float(row["train/loss_g_kl"]) == 0.0
        assert close(float(row["train/loss_g"]), float(row["train/loss_g_adv"]))


# --- Stage-II after Stage-I, and its exact resume ----------------------------------------------
@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> dict:
    """A Stage-I run at 16 pixels (the first of two stages on 32-pixel data)."""
    tmp = tmp_path_factory.mktemp("stage1")
    return train(make_cfg(tmp, *TINY, "model.low_size=16", "trainer.max_epochs=1"))


def test_stage_two_resumes_exactly_mid_stage(tmp_path, stage1):
    """Stage-II on a frozen Stage-I, 2 epochs straight == 1 epoch, stop, resume for the 2nd:
    G, D, EMA, BN statistics and both optimizers equal bit for bit; the resumed run logged
    steps 4-7 only (it started at the checkpoint's step), with the straight run's values.
    Stage-I's weights are the Stage-I run's EMA weights throughout, Stage-II's moved."""
    common = [
        *TINY,
        "model.stage=2",
        "model.low_size=16",
        f"model.stage1_ckpt={stage1['last_ckpt']}",
    ]
    straight = train(make_cfg(tmp_path / "a", *common, "trainer.max_epochs=2"))
    first = train(make_cfg(tmp_path / "b", *common, "trainer.max_epochs=1"))
    # the resumed run's checkpoint holds Stage-I: the Stage-I file is not read again (here it
    # has moved away). Seen failing with Stage-I read in `setup`, where Lightning has not yet
    # set trainer.ckpt_path ("model.stage1_ckpt: ... not found").
    moved = [*common[:-1], f"model.stage1_ckpt={tmp_path / 'moved' / 'last.ckpt'}"]
    resumed = train(
        make_cfg(tmp_path / "c", *moved, "trainer.max_epochs=2", f"ckpt_path={first['last_ckpt']}")
    )
    a, b, c = load(straight["last_ckpt"]), load(resumed["last_ckpt"]), load(first["last_ckpt"])
    assert a["global_step"] == b["global_step"] == 8 and c["global_step"] == 4
    assert_same_state(a, b)
    assert_resumed_at(straight["run_dir"], resumed["run_dir"], 4, "train/loss_d")
    s1 = load(stage1["last_ckpt"])["state_dict"]
    for key, value in b["state_dict"].items():
        for prefix in ("generator.", "generator_ema."):
            if key.startswith(prefix + "stage1.") or key.startswith(prefix + "text_encoder."):
                assert torch.equal(value, s1["generator_ema." + key[len(prefix) :]]), key
    key = "generator.stage2.out.0.weight"
    assert not torch.equal(b["state_dict"][key], c["state_dict"][key])


def test_genlab_sample_draws_from_text_and_writes_captioned_grids(tmp_path, stage1):
    """`python -m genlab.sample ckpt_path=... text="the digit 2 is left of a 9" n=16`: a grid
    with the caption under every image (samples.png, .md, .html); the images are the data's
    size (a 16-pixel Stage-I's samples upsampled to 32)."""
    from PIL import Image

    text = "the digit 2 is left of a 9"
    proc = run_cli(
        f"ckpt_path={stage1['last_ckpt']}",
        f"text={text}",
        "n=16",
        "n_per_row=4",
        f"hydra.run.dir={tmp_path / 'out'}",
        module="genlab.sample",
        cwd=tmp_path,
    )
    out = tmp_path / "out"
    assert Path(proc.stdout.strip().splitlines()[-1]) == out / "samples.png"
    table = (out / "samples.md").read_text()
    assert table.count(f"| {text} |") == 4  # one row of n_per_row samples per caption
    assert text in (out / "samples.html").read_text()
    grid = Image.open(out / "samples.png")
    cell = 96  # 32-pixel images enlarged 3x, as the caption writer does
    assert grid.width == 4 * (cell + 2) + 2 and grid.height > cell + 12  # text under them


def test_genlab_sample_refuses_an_unknown_word_naming_it(tmp_path, stage1):
    """A caption with a word the model cannot read stops genlab.sample before anything is
    drawn: exit status 2, one paragraph naming the word, no traceback, no samples. 'small'
    is a word of the digit grammar that the training captions never use (no attributes), so
    the vocabulary built from them refuses it (words outside the grammar are refused by the
    parser first: test_text2image_data). Seen failing with the user's text encoded as the
    test split's is, an unknown word read as <unk> (in a scratch copy: exit status 0)."""
    proc = run_cli(
        f"ckpt_path={stage1['last_ckpt']}",
        "text=a small 7 is at the top left",
        "n=4",
        f"hydra.run.dir={tmp_path / 'out'}",
        module="genlab.sample",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "genlab: error:" in proc.stderr and "'small', not in the vocabulary" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "samples.png").exists()


# --- the text reaches the picture ----------------------------------------------------------------
# A StackGAN that learns from the text in a few seconds: 16-pixel canvases of one digit, 8-wide
# nets, a one-way GRU, lr 2e-3, 100 iterations of 32 captions, conditioning augmentation off
# (its KL pulls c to N(0, I) and, at this size, holds back what G learns from the text: with
# CA on and the paper's summed KL, the position gap below was 0.04-0.11 for seeds 0-2 at 100
# iterations). What 100 iterations learn is where the digit goes, not yet which digit it is.
LEARNS = [
    "experiment=stackgan_digits",
    *FAST,
    "data.image_size=16",
    "data.two_digit_fraction=0",
    "data.n_train=500",
    "data.n_val=20",
    "data.n_test=300",
    "data.n_heldout=20",
    "data.batch_size=32",
    "trainer.max_steps=100",
    "trainer.max_epochs=-1",
    "trainer.limit_train_batches=1.0",
    "trainer.limit_val_batches=0",
    "callbacks.sample_grid.n=8",
    "model.latent_dim=8",
    "model.embed_dim=16",
    "model.cond_dim=8",
    "model.text_encoder.embed_dim=16",
    "model.text_encoder.hidden_dim=16",
    "model.text_encoder.bidirectional=false",
    "model.stage1_generator.base_channels=8",
    "model.stage1_discriminator.base_channels=8",
    "model.optimizer_g.lr=2e-3",
    "model.optimizer_d.lr=2e-3",
    "model.ca=false",
    "test=false",
]


def caption_accuracy_and_shuffled(tmp_path: Path, seed: int) -> dict[str, dict[str, float]]:
    """Train LEARNS with `seed`; a caption reader (genlab.metrics.caption_metrics) trained on
    the run's training canvases reads the model's images of the 300 test canvases' first
    captions: {'model': accuracies against their own captions, 'shuffled': the same images
    against other canvases' captions (a fixed-point-free shuffle), 'real': the real canvases
    against their captions (the reader's ceiling)}."""
    from genlab.metrics.caption_metrics import spec_accuracy, train_reader
    from genlab.nets.stackgan import mismatch_index
    from genlab.utils.checkpoint import load_model

    cfg = make_cfg(tmp_path, *LEARNS, f"seed={seed}")
    model, _ = load_model(train(cfg)["last_ckpt"])
    dm = instantiate(cfg.data)
    dm.setup()
    seen, test = dm.dataset("train"), dm.dataset("test")
    reader = train_reader(seen.images, seen.layouts, steps=200, batch_size=32, seed=0)
    idx = list(range(0, len(test), test.per_image))  # each test canvas's first caption
    tokens = torch.stack([test.caption_tokens(i) for i in idx])
    drawn = model.generate(tokens, generator=torch.Generator().manual_seed(seed))
    specs = [test.spec(i) for i in idx]
    wrong = [
        specs[int(j)] for j in mismatch_index(len(idx), generator=torch.Generator().manual_seed(0))
    ]
    read = reader.read(drawn)
    return {
        "model": spec_accuracy(read, specs),
        "shuffled": spec_accuracy(read, wrong),
        "real": spec_accuracy(reader.read(test.images[: len(idx)]), specs),
    }


def test_a_short_training_puts_the_digits_where_its_captions_say(tmp_path):
    """100 iterations (~9 s): the reader finds the model's digits in the quadrants their own
    captions name far more often than in those of other canvases' captions (the shuffled-
    caption baseline). Measured with this helper for seeds 0-7 on this project's 2-core CPU
    (2026-12-04): position accuracy 0.38-1.00 against 0.13-0.23 shuffled, gaps 0.23-0.76.
    Seen failing with the text ignored (the caption tokens zeroed in prepare_batch and in
    sampling, monkeypatched in a scratch script, seeds 0-2): gaps 0.00-0.03.

    The whole caption (the named digit too) is not asserted: after 100 iterations the digits
    are not legible yet, and its gap over the shuffled captions was 0.003-0.087 for the same
    8 seeds (-0.003-0.003 with the text zeroed): too close to 0 on some seeds for a test. The
    measured comparison at a longer training is in docs/text-to-image.md."""
    acc = caption_accuracy_and_shuffled(tmp_path, seed=0)
    assert acc["real"]["position_acc"] > 0.95  # the reader finds real digits
    model, shuffled = acc["model"], acc["shuffled"]
    assert model["position_acc"] - shuffled["position_acc"] >= 0.15, acc
    assert model["caption_acc"] >= shuffled["caption_acc"], acc


# --- capabilities and refusals ------------------------------------------------------------------
def tiny_model(tmp_path: Path, *overrides: str) -> StackGAN:
    return instantiate(make_cfg(tmp_path, *TINY, *overrides).model).eval()


def test_sampling_needs_captions_and_gives_the_datas_size(tmp_path):
    model = tiny_model(tmp_path, "model.stage=joint", "model.low_size=16")
    tokens = torch.randint(1, 40, (3, 24))
    gen = torch.Generator().manual_seed(0)
    x = model.sample(3, y=tokens, generator=gen)
    assert x.shape == (3, 1, 32, 32) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert model.generate(tokens, samples=2).shape == (2, 3, 1, 32, 32)
    stages = model.generate_stages(tokens)
    assert set(stages) == {"stage1", "stage2"} and stages["stage1"].shape == x.shape
    again = model.sample(3, y=tokens, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    with pytest.raises(GenlabError, match="text="):
        model.sample(3)
    with pytest.raises(GenlabError, match="model.vocab_size"):
        model.sample(1, y=torch.full((1, 24), 48))


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["model.stage=3"], "model.stage='3'"),
        (["model.stage=2", "model.low_size=12"], "model.low_size=12"),
        (["model.stage=2", "model.low_size=32"], "32/32"),
        (["model.kl_reduction=max"], "model.kl_reduction"),
        (["model.wrong_weight=1.0"], "model.wrong_weight=1.0"),
        (["model.stage1_ckpt=x.ckpt"], "model.stage1_ckpt is read by model.stage=2 only"),
    ],
)
def test_bad_options_are_named(tmp_path, overrides, named):
    with pytest.raises(Exception) as info:  # noqa: PT011  (Hydra wraps what the model raises)
        tiny_model(tmp_path, *overrides)
    err = find_user_error(info.value)
    assert err is not None and named in str(err)


def test_stage_two_without_a_stage_one_is_refused_before_training(tmp_path):
    cfg = make_cfg(tmp_path, *TINY, "model.stage=2", "model.low_size=16")
    with pytest.raises(GenlabError, match="model.stage1_ckpt=RUN/checkpoints/last.ckpt"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize("experiment", ["stackgan_digits", "stackgan_cub"])
def test_the_recipes_compose_and_instantiate(tmp_path, experiment):
    cfg = make_cfg(tmp_path, f"experiment={experiment}")
    model = instantiate(cfg.model)
    data = instantiate(cfg.data)
    assert isinstance(model, StackGAN) and model.stage == "1"
    if experiment == "stackgan_cub":  # the paper's: 64 -> 256, halved every 100 epochs
        assert (model.low_size, model.image_size, model.latent_dim) == (64, 256, 100)
        assert (model.cond_dim, model.kl_weight) == (128, 1.0)
        assert cfg.trainer.max_epochs == 600 and cfg.trainer.accelerator == "gpu"
        assert type(data).__name__ == "CUBCaptions"
        two = instantiate(make_cfg(tmp_path, f"experiment={experiment}", "model.stage=2").model)
        assert two.generate_stages  # Stage-II at 256 on a frozen 64-pixel Stage-I
        assert two.generator.stage2.scale == 4 and two.generator.freeze_stage1
    else:
        assert (model.low_size, model.image_size) == (32, 32)
        assert type(data).__name__ == "CaptionedDigits" and data.image_size == 32
