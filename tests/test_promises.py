"""What the docs promise and no other test checked: each test reads back content (pixels,
losses recomputed by hand, the composed values), so it fails when the promise breaks.

Covered here: eval on another dataset; the representation task's max_train / probe /
label_index; hydra.searchpath, the `local` group and GENLAB_ROOT; multirun_on_error=raise; the
SLURM launcher config; the generation-metrics callback's schedule, sample count and time budget;
EMA in grids and GAN evaluation with seeded fakes; spectral_norm, label_smoothing and the
projection term through config; split_seed; early stopping; the latent CLI on GANs.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from itertools import islice
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CONF, FAST, REPO, TINY_CLASSIFIER, TINY_GAN, make_cfg, run_cli, tiles
from datafiles import write_celeba, write_mnist
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from genlab.data import CelebA
from genlab.evaluation.context import EvalContext
from genlab.evaluation.representation import representation
from genlab.evaluation.runner import evaluate
from genlab.models import AutoEncoder
from genlab.nets import MLPDecoder, MLPEncoder
from genlab.train import train
from genlab.utils.checkpoint import load_model
from genlab.utils.errors import GenlabError

EIGHT_BIT = 1 / 255 + 1e-5


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory) -> dict:
    """An autoencoder trained for one short epoch on mnist_5k."""
    root = tmp_path_factory.mktemp("ae")
    return train(make_cfg(root, *FAST, "trainer.max_epochs=1", "test=false"))


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory) -> dict:
    """A tiny GAN trained for two short epochs (8 iterations) on mnist_5k; G's learning rate
    is high so that G and its EMA visibly part."""
    root = tmp_path_factory.mktemp("gan")
    return train(make_cfg(root, *FAST, *TINY_GAN, "model.optimizer_g.lr=1e-2", "test=false"))


# --- evaluation ------------------------------------------------------------------------------
def test_eval_on_another_dataset_scores_its_images(tmp_path, ae_run):
    """`genlab.eval ... data=mnist data.data_dir=DIR`: the test task runs on that dataset's
    test images (here 20 IDX images written to DIR): its PSNR is the one recomputed here
    from those images and the model, not the mnist_5k one."""
    written = write_mnist(tmp_path, n_test=20)
    cfg = make_cfg(
        tmp_path,
        f"ckpt_path={ae_run['last_ckpt']}",
        "tasks=[test]",
        "data=mnist",
        f"data.data_dir={tmp_path}",
        "data.download=false",
        config_name="eval",
    )
    result = evaluate(cfg)
    assert result["data"]["_target_"] == "genlab.data.TorchvisionMNIST"
    model, _ = load_model(ae_run["last_ckpt"])
    x = torch.from_numpy(written["t10k"][0]).float().div(255)[:, None]  # (20, 1, 28, 28)
    with torch.no_grad():
        mse = float((model.reconstruct(x) - x).square().mean())
    assert result["test"]["test/psnr"] == pytest.approx(-10 * math.log10(mse), rel=1e-4)


def test_representation_max_train_and_probe_off(tmp_path, ae_run):
    """max_train / max_test take evenly spaced subsets, and PCA is fitted on exactly the
    max_train train images (its test error recomputed here with sklearn); probe=false and
    scatter=false leave out the probe accuracies and the figure."""
    model, run_cfg = load_model(ae_run["last_ckpt"])
    dm = instantiate(run_cfg.data)
    dm.setup()
    ctx = EvalContext(model.eval(), dm, run_cfg, tmp_path, lambda: None)  # type: ignore[arg-type]
    result = representation(ctx, max_train=100, max_test=50, probe=False, scatter=False)
    d = run_cfg.model.latent_dim
    assert (result["n_train"], result["n_test"], result["code_size"]) == (100, 50, d)
    assert all("probe_accuracy" not in m for m in result["methods"].values())
    assert result["files"] == ["representation.json", "representation.md"]
    assert not (tmp_path / "representation_scatter.png").exists()

    def flat(split: str, n: int) -> np.ndarray:
        data = dm.dataset(split)
        index = np.linspace(0, len(data) - 1, n).astype(int)
        return np.stack([data[i][0].flatten().double().numpy() for i in index])

    train_x, test_x = flat("train", 100), flat("test", 50)
    pca = PCA(n_components=d, random_state=0).fit(train_x)  # the task's seed
    err = ((pca.inverse_transform(pca.transform(test_x)) - test_x) ** 2).sum(1).mean()
    assert result["methods"]["PCA"]["mse_per_image"] == pytest.approx(err, rel=1e-6)


def test_representation_probes_the_chosen_attribute(tmp_path):
    """label_index picks the attribute of CelebA's 40 that the linear probe predicts: the
    accuracy is that of a probe fitted here on the same codes and that attribute's column."""
    attrs = (write_celeba(tmp_path, n=30) + 1) // 2  # (30, 40) in {0, 1}
    dm = CelebA(data_dir=str(tmp_path), download=False, image_size=16, channels=3)
    dm.prepare_data()
    dm.setup()
    torch.manual_seed(0)
    model = AutoEncoder(
        encoder=MLPEncoder(channels=3, image_size=16, out_dim=3, hidden_dims=[16]),
        decoder=MLPDecoder(channels=3, image_size=16, in_dim=3, hidden_dims=[16]),
        optimizer=torch.optim.Adam,
    ).eval()
    ctx = EvalContext(model, dm, None, tmp_path, lambda: None)  # type: ignore[arg-type]
    # the partition file puts image i in train / val / test by i % 3, in file order
    train_i, test_i = np.arange(0, 30, 3), np.arange(2, 30, 3)

    def codes(split: str) -> np.ndarray:
        data = dm.dataset(split)
        x = torch.stack([data[i][0] for i in range(len(data))])
        with torch.no_grad():
            return model.encode_latent(x).double().numpy()

    def expected(k: int) -> float:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
        probe.fit(codes("train"), attrs[train_i, k])
        return float(probe.score(codes("test"), attrs[test_i, k]))

    usable = [k for k in range(40) if len(set(attrs[train_i, k])) == 2]
    accuracy = {k: expected(k) for k in usable}
    # an attribute whose probe scores differently from attribute 0's, so a label_index that
    # were ignored would show
    k = next(k for k in usable if accuracy[k] != accuracy.get(0))
    result = representation(ctx, label_index=k, scatter=False)
    assert result["methods"]["AutoEncoder"]["probe_accuracy"] == pytest.approx(accuracy[k])


# --- configuration ---------------------------------------------------------------------------
def compose_from(conf_dir: Path, name: str, *overrides: str):
    """Compose `name` from `conf_dir` with the Hydra node, as the CLI does."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir)):
        return compose(name, overrides=list(overrides), return_hydra_config=True)


def test_searchpath_adds_your_own_recipes(tmp_path):
    """hydra.searchpath=[file://DIR]: DIR/experiment/my_recipe.yaml becomes an experiment,
    and its values land in the job's config (the docs' command, through the CLI)."""
    recipe = tmp_path / "my_conf" / "experiment" / "my_recipe.yaml"
    recipe.parent.mkdir(parents=True)
    recipe.write_text("# @package _global_\nmodel:\n  latent_dim: 5\ntags: [mine]\n")
    cfg = compose_from(
        CONF, "train", f"hydra.searchpath=[file://{recipe.parents[1]}]", "experiment=my_recipe"
    )
    assert cfg.model.latent_dim == 5 and list(cfg.tags) == ["mine"]
    assert cfg.model.encoder.out_dim == 5  # interpolated from it


@pytest.mark.slow
def test_searchpath_through_the_cli(tmp_path):
    recipe = tmp_path / "my_conf" / "experiment" / "my_recipe.yaml"
    recipe.parent.mkdir(parents=True)
    recipe.write_text("# @package _global_\nmodel:\n  latent_dim: 5\n")
    proc = run_cli(
        f"hydra.searchpath=[file://{recipe.parents[1]}]",
        "experiment=my_recipe",
        "--cfg",
        "job",
        cwd=tmp_path,
    )
    job = OmegaConf.create(proc.stdout)
    assert job.model.latent_dim == 5 and job.model._target_ == "genlab.models.AutoEncoder"


def test_local_group_is_read_by_every_command_and_ignored_by_git(tmp_path):
    """conf/local/default.yaml (the docs' example) changes every command's config when it
    exists; git ignores it. Checked on a copy of the config tree, so the real one is never
    touched."""
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "src/genlab/conf/local/default.yaml"], cwd=REPO
    )
    assert ignored.returncode == 0
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    (conf / "local" / "default.yaml").write_text(
        "# @package _global_\npaths:\n  data_dir: /datasets\nlogger:\n  wandb:\n"
        "    project: my-lab\n"
    )
    train_cfg = compose_from(conf, "train")
    assert train_cfg.paths.data_dir == "/datasets"
    assert train_cfg.logger.wandb.project == "my-lab"
    entry_points = sorted(p.stem for p in CONF.glob("*.yaml"))
    assert {"train", "eval", "sample", "latent"} <= set(entry_points)
    for name in entry_points:
        cfg = compose_from(conf, name, "ckpt_path=x") if name != "train" else train_cfg
        assert cfg.paths.data_dir == "/datasets", name
    # ... and without the file, the default
    assert compose_from(CONF, "train").paths.data_dir.endswith("/data")


def test_genlab_root_moves_data_and_runs(tmp_path, monkeypatch):
    """GENLAB_ROOT is the base of paths.data_dir and paths.log_dir, wherever you launch from:
    the run directory Hydra makes is under $GENLAB_ROOT/logs/train/runs/."""
    root = tmp_path / "lab"
    monkeypatch.setenv("GENLAB_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    cfg = compose_from(CONF, "train")
    assert cfg.paths.root_dir == str(root)
    assert cfg.paths.data_dir == f"{root}/data" and cfg.paths.log_dir == f"{root}/logs"
    assert cfg.hydra.run.dir.startswith(f"{root}/logs/train/runs/")
    assert cfg.hydra.sweep.dir.startswith(f"{root}/logs/train/multiruns/")
    monkeypatch.delenv("GENLAB_ROOT")
    assert compose_from(CONF, "train").paths.root_dir == str(tmp_path)  # the launch directory


def test_slurm_launcher_config_composes(tmp_path):
    """The docs' SLURM command composes into submitit's SLURM launcher: nodes from
    trainer.num_nodes, one task and one GPU per device, the partition typed; every key is one
    the launcher's own config schema knows, and the launcher builds (no SLURM needed)."""
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    cfg = compose_from(
        CONF,
        "train",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        f"paths.root_dir={tmp_path}",
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["partition"] == "gpu" and launcher["max_num_timeout"] == 3
    checked = OmegaConf.merge(OmegaConf.structured(SlurmQueueConf), launcher)  # unknown keys fail
    assert checked.timeout_min == 240
    built = instantiate(cfg.hydra.launcher)
    assert type(built).__name__ == "SlurmLauncher"


@pytest.mark.slow
def test_multirun_on_error_raise_stops_the_sweep(tmp_path):
    """A failing job stops the sweep (exit status != 0, the later job never runs) and is
    recorded as failed (the default, record, goes on: tests/test_sweeps.py)."""
    bad = ["model.optimizer.lr=-1", *FAST, "test=false"]
    proc = run_cli(
        "-m", "model.latent_dim=4,8", *bad, "multirun_on_error=raise", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "sweep stopped (multirun_on_error=raise)" in proc.stderr
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert not (sweep / "1").exists()
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    assert summary["status"] == "failed" and "lr" in summary["error"]


# --- data ------------------------------------------------------------------------------------
def test_split_seed_chooses_the_split(tmp_path):
    """data.split_seed picks which images go to val and test: the same seed the same split,
    another seed another one of the same sizes; set through config."""

    def split_images(seed: int) -> dict[str, set[bytes]]:
        cfg = make_cfg(tmp_path, f"data.split_seed={seed}")
        dm = instantiate(cfg.data)
        assert dm.split_seed == seed
        dm.setup()
        return {
            s: {dm.dataset(s)[i][0].numpy().tobytes() for i in range(len(dm.dataset(s)))}
            for s in ("val", "test")
        }

    a, again, b = split_images(0), split_images(0), split_images(1)
    assert a == again
    assert {s: len(v) for s, v in b.items()} == {s: len(v) for s, v in a.items()}
    assert a["test"] != b["test"] and a["val"] != b["val"]
    assert len(a["test"] & b["test"]) < len(a["test"]) // 2  # mostly other images


# --- callbacks -------------------------------------------------------------------------------
def test_early_stopping_stops_when_the_monitor_stops_improving(tmp_path):
    """callbacks=[default,early_stopping] patience=1, and an improvement must exceed a
    min_delta no loss can reach: val/loss never improves after the first epoch, so training
    stops after the second of 5 epochs."""
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            "callbacks=[default,early_stopping]",
            "callbacks.early_stopping.patience=1",
            "callbacks.early_stopping.min_delta=1e6",
            "trainer.max_epochs=5",
            "test=false",
        )
    )
    assert summary["status"] == "completed"
    assert summary["global_step"] == 2 * 4 and summary["epoch"] == 2  # 2 epochs completed


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory) -> str:
    """A barely trained domain classifier (the feature network of the generation metrics)."""
    root = tmp_path_factory.mktemp("clf")
    summary = train(
        make_cfg(
            root,
            *FAST,
            *TINY_CLASSIFIER,
        )
    )
    return summary["last_ckpt"]


def generation_run(tmp_path: Path, clf: str, *options: str) -> tuple[list[dict], list[dict]]:
    """A VAE run with the generation-metrics callback; (jsonl records, CSV rows)."""
    train(
        make_cfg(
            tmp_path,
            *FAST,
            "model=vae",
            "callbacks=[default,generation_metrics]",
            f"callbacks.generation_metrics.classifier_ckpt={clf}",
            "callbacks.generation_metrics.metrics=[fid]",
            "callbacks.generation_metrics.n_samples=40",
            "callbacks.generation_metrics.batch_size=15",
            f"callbacks.generation_metrics.cache_dir={tmp_path}/cache",
            "test=false",
            *options,
        )
    )
    run = tmp_path / "run"
    lines = (run / "metric-generation.jsonl").read_text().splitlines()
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/fid_domain")]
    return [json.loads(line) for line in lines], rows


def test_generation_metrics_every_n_steps_and_time_budget(tmp_path, classifier_ckpt, caplog):
    """every_n_steps=3 (8 steps): computed at steps 3 and 6; each validation logs the values
    of the computation before it. time_budget_s=0: the first evaluation stops after its first
    batch (15 of 40 samples) and that count is kept for the next one, with a warning."""
    records, rows = generation_run(
        tmp_path,
        classifier_ckpt,
        "callbacks.generation_metrics.every_n_epochs=null",
        "callbacks.generation_metrics.every_n_steps=3",
        "callbacks.generation_metrics.time_budget_s=0",
    )
    assert [r["step"] for r in records] == [3, 6]
    assert [r["provenance"]["n_fake"] for r in records] == [15, 15]
    assert all(r["provenance"]["n_real"] == 40 for r in records)
    assert "n_samples lowered from 40 to 15 to fit time_budget_s=0" in caplog.text
    logged = [float(r["val/fid_domain"]) for r in rows]  # epoch ends: steps 4 and 8
    want = [r["values"]["fid_domain"] for r in records]
    assert logged == pytest.approx(want, rel=1e-5)


def test_generation_metrics_every_epoch_draws_n_samples(tmp_path, classifier_ckpt):
    """The default schedule: every validation epoch, n_samples samples (no budget hit)."""
    records, rows = generation_run(tmp_path, classifier_ckpt)
    assert [(r["epoch"], r["step"]) for r in records] == [(0, 4), (1, 8)]
    assert [r["provenance"]["n_fake"] for r in records] == [40, 40]
    assert [float(r["val/fid_domain"]) for r in rows] == pytest.approx(
        [r["values"]["fid_domain"] for r in records], rel=1e-5
    )


# --- GANs ------------------------------------------------------------------------------------
def gan_from(ckpt: str):
    model, cfg = load_model(ckpt)
    return model.eval(), cfg


def test_grids_draw_from_the_ema_generator(gan_run):
    """The run's final sample grid is the EMA generator's image of the fixed noise (seed 0)
    at the last step, not the raw generator's."""
    model, _ = gan_from(gan_run["last_ckpt"])
    grid = tiles(Path(gan_run["run_dir"]) / "images" / "samples_e0001.png", 8, 8).flatten(0, 1)
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ema = ((model.generator_ema(z) + 1) / 2).clamp(0, 1)[:, 0]
        raw = ((model.generator(z) + 1) / 2).clamp(0, 1)[:, 0]
    assert (grid - ema).abs().max() <= EIGHT_BIT
    assert (grid - raw).abs().max() > 10 / 255


def test_gan_test_metrics_use_seeded_ema_fakes(gan_run):
    """test/ (and val/) losses: fakes from the EMA generator with noise seeded by
    (seed, batch index), recomputed here batch by batch; the same numbers on every call."""
    model, cfg = gan_from(gan_run["last_ckpt"])
    dm = instantiate(cfg.data)

    def run_test() -> dict[str, float]:
        trainer = L.Trainer(
            accelerator="cpu",
            limit_test_batches=2,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        return trainer.test(model, datamodule=dm, verbose=False)[0]

    first, second = run_test(), run_test()
    assert first == second
    sums, count = {"ema": [0.0, 0.0], "raw": [0.0, 0.0]}, 0
    with torch.no_grad():
        for i, (x, _) in enumerate(islice(dm.test_dataloader(), 2)):
            z = torch.randn(len(x), 8, generator=torch.Generator().manual_seed(42 * 7_919 + i))
            real = model.discriminator(x * 2 - 1)
            for name, net in (("ema", model.generator_ema), ("raw", model.generator)):
                fake = model.discriminator(net(z))
                loss_d = F.softplus(-real) + F.softplus(fake)  # BCE: real -> 1, fake -> 0
                sums[name][0] += float(loss_d.sum())
                sums[name][1] += float(F.softplus(-fake).sum())
            count += len(x)
    assert model.seed == 42
    assert first["test/loss_d"] == pytest.approx(sums["ema"][0] / count, rel=1e-5)
    assert first["test/loss_g"] == pytest.approx(sums["ema"][1] / count, rel=1e-5)
    assert abs(first["test/loss_g"] - sums["raw"][1] / count) > 1e-4


def test_spectral_norm_through_config(tmp_path):
    """model.discriminator.spectral_norm=true: every layer of D (MLP and DCGAN) carries a
    spectral-norm parametrization, and after a few training-mode passes (power iterations)
    each weight's largest singular value is 1."""
    from torch.nn.utils import parametrize

    for net in ("mlp", "dcgan"):
        cfg = make_cfg(
            tmp_path,
            "model=gan",
            f"model/discriminator={net}",
            "model.discriminator.spectral_norm=true",
        )
        d = instantiate(cfg.model).discriminator.train()
        layers = [m for m in d.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
        assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
        x = torch.rand(8, 1, 28, 28) * 2 - 1
        for _ in range(30):
            d(x)
        for m in layers:
            sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
            assert sigma == pytest.approx(1.0, abs=0.05), (net, m)
        plain = instantiate(make_cfg(tmp_path, "model=gan", f"model/discriminator={net}").model)
        assert not any(parametrize.is_parametrized(m) for m in plain.discriminator.modules())


class FirstStep(L.Callback):
    """Saves the first training batch and the weights before the first step (for tests)."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0:
            state = {k: v.clone() for k, v in pl_module.state_dict().items()}
            torch.save({"x": batch[0].clone(), "state": state}, self.out)


def test_label_smoothing_through_config(tmp_path):
    """model.label_smoothing=0.2: the first logged D loss is BCE against a real target of 0.8
    (recomputed from the first batch, the initial weights and the step's seeded noise); with
    the unsmoothed target it would differ."""
    summary = train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY_GAN,
            "model.label_smoothing=0.2",
            "trainer.max_epochs=1",
            "test=false",
            "+callbacks.first._target_=test_promises.FirstStep",
            f"+callbacks.first.out={tmp_path}/first.pt",
        )
    )
    model, _ = gan_from(summary["last_ckpt"])
    first = torch.load(tmp_path / "first.pt", weights_only=True)
    model.load_state_dict(first["state"])
    x = first["x"] * 2 - 1
    key = (42 * 1_000_003 + 0) * 1_009 + 0  # the noise of iteration 0 (seed, step, rank)
    z = torch.randn(len(x), 8, generator=torch.Generator().manual_seed(key))
    with torch.no_grad():
        real, fake = model.discriminator(x), model.discriminator(model.generator(z))
    smoothed = F.binary_cross_entropy_with_logits(real, torch.full_like(real, 0.8))
    plain = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        row = next(r for r in csv.DictReader(f) if r.get("train/loss_d") and r["step"] == "0")
    logged = float(row["train/loss_d"])
    assert logged == pytest.approx(float(smoothed + F.softplus(fake).mean()), rel=1e-5)
    assert abs(logged - float(plain + F.softplus(fake).mean())) > 1e-3


def test_projection_term_through_config(tmp_path):
    """model=cgan builds an MLP D with the projection term: its score is the head's output on
    the features plus <embed(y), features> (Miyato & Koyama 2018)."""
    model = instantiate(make_cfg(tmp_path, "model=cgan", "model.latent_dim=8").model)
    d = model.discriminator
    assert d.embed is not None and d.embed.weight.shape == (10, d.head.in_features)
    x, y = torch.rand(6, 1, 28, 28) * 2 - 1, torch.arange(6) % 10
    with torch.no_grad():
        h = d.body(torch.cat([x.flatten(1), F.one_hot(y, 10).float()], 1))
        want = d.head(h).squeeze(1) + (d.embed(y) * h).sum(1)
        assert torch.allclose(d(x, y), want, atol=1e-6)
        assert (d.embed(y) * h).sum(1).abs().min() > 0  # the term is there and not zero


def test_divergence_message_names_both_losses(tmp_path):
    """A GAN whose D learning rate explodes stops with both losses of the step in the
    message (the D loss and the G loss), in the documented form."""
    cfg = make_cfg(
        tmp_path,
        *FAST,
        *TINY_GAN,
        "trainer.max_epochs=2",
        "model.nan_check_every_n_steps=1",
        "model.optimizer_d.lr=1e30",
    )
    with pytest.raises(Exception) as err:  # noqa: B017  (the exact type is checked below)
        train(cfg)
    assert type(err.value).__name__ == "Diverged"
    assert re.fullmatch(
        r"training diverged: at step \d+ the loss became non-finite \(train/loss_d=\S+, "
        r"train/loss_g=\S+\)\. Training stopped and no checkpoint was written after that "
        r"step\. Lower the learning rates .*",
        str(err.value),
    ), str(err.value)


@pytest.mark.slow
def test_latent_cli_on_a_gan(tmp_path, gan_run):
    """op=interpolate picks source=prior for a GAN (no encoder): the rows' ends decode the
    seeded prior draws; op=attribute is refused with the message naming the missing encoder."""
    ckpt = gan_run["last_ckpt"]
    out = tmp_path / "out"
    run_cli(
        f"ckpt_path={ckpt}",
        "op=interpolate",
        "mode=spherical",
        "pairs=2",
        "steps=4",
        "device=cpu",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        module="genlab.latent",
    )
    result = json.loads((out / "latent.json").read_text())
    assert result["source"] == "prior" and result["pairs"] == 2
    model, _ = gan_from(ckpt)
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 8, generator=gen), torch.randn(2, 8, generator=gen)
    grid = tiles(out / "interpolate_spherical.png", 2, 4)
    with torch.no_grad():
        assert (grid[:, 0] - model.decode(z0)[:, 0]).abs().max() <= EIGHT_BIT
        assert (grid[:, -1] - model.decode(z1)[:, 0]).abs().max() <= EIGHT_BIT
    refused = run_cli(
        f"ckpt_path={ckpt}",
        "op=attribute",
        "attribute=7",
        "device=cpu",
        f"hydra.run.dir={tmp_path / 'refused'}",
        cwd=tmp_path,
        module="genlab.latent",
        check=False,
    )
    assert refused.returncode == 2
    assert (
        "GAN has no encoder (encode_latent): codes of real images cannot be computed. For "
        "GANs, interpolate between prior draws (source=prior)." in " ".join(refused.stderr.split())
    )


@pytest.mark.parametrize("on", [True, False])
def test_perf_switches_reach_the_run(tmp_path, on):
    """perf.channels_last (images and conv nets), perf.fused_optimizer (fused Adam) and
    perf.matmul_precision, seen from inside the first training step of a conv autoencoder."""
    before = torch.get_float32_matmul_precision()
    try:
        train(
            make_cfg(
                tmp_path,
                *FAST,
                "model/encoder=conv",
                "model/decoder=conv",
                "data.channels=3",  # one channel is trivially channels-last
                "trainer.max_epochs=1",
                "test=false",
                f"perf.channels_last={str(on).lower()}",
                f"perf.fused_optimizer={str(on).lower()}",
                f"perf.matmul_precision={'medium' if on else 'null'}",
                "+callbacks.perf._target_=probes.PerfProbe",
                f"+callbacks.perf.out={tmp_path}/perf.json",
            )
        )
        seen = json.loads((tmp_path / "perf.json").read_text())
    finally:
        torch.set_float32_matmul_precision(before)
    assert seen["batch_channels_last"] is on and seen["conv_weights_channels_last"] is on
    assert seen["fused"] == ([True] if on else [None])
    assert seen["matmul_precision"] == ("medium" if on else before)


def test_density_refuses_a_gan(gan_run, tmp_path):
    from genlab.evaluation.density import density

    model, cfg = gan_from(gan_run["last_ckpt"])
    ctx = EvalContext(model, None, cfg, tmp_path, lambda: None)  # type: ignore[arg-type]
    message = (
        "the density task estimates log p(x) and needs a model with a likelihood and an "
        "encoder (model=vae, beta_vae or cvae); GAN has none. Drop density from tasks=[...]."
    )
    with pytest.raises(GenlabError) as err:
        density(ctx, k=2)
    assert str(err.value) == message


def test_gan_step_checkpoints_count_iterations(tmp_path):
    """callbacks.model_checkpoint.every_n_train_steps=3 for a GAN (8 iterations): files at
    iterations 3 and 6, each holding that many G and D updates (Adam's own counters)."""
    train(
        make_cfg(
            tmp_path,
            *FAST,
            *TINY_GAN,
            "test=false",
            "+callbacks.model_checkpoint.every_n_train_steps=3",
            "callbacks.model_checkpoint.save_top_k=-1",
            "callbacks.model_checkpoint.monitor=null",
        )
    )
    found = {}
    for path in (tmp_path / "run" / "checkpoints").glob("best-*.ckpt"):
        ckpt = torch.load(path, weights_only=True)
        step = int(re.search(r"-s(\d+)", path.name).group(1))
        adam = [
            {float(s["step"]) for s in opt["state"].values()} for opt in ckpt["optimizer_states"]
        ]
        found[step] = (ckpt["global_step"], adam)
    assert {3, 6} <= set(found)
    for step, (global_step, adam) in found.items():
        assert global_step == step and adam == [{float(step)}, {float(step)}], (step, adam)


# resume=auto with no earlier run starting a new one, then continuing it: test_integrity.py::
# test_resume_continues_with_the_stored_config_and_never_rewrites_it; resume=RUN_DIR
# continuing that run in its directory: test_trust.py::
# test_interrupted_run_resumes_to_the_uninterrupted_result
