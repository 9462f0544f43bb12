"""The `ood` eval task: another data option (mnist_5k; fashion_mnist read from real IDX files)
scored against the model's own test split, and the task's refusals, by their exact text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_cfg, trained
from datafiles import write_cifar10, write_mnist
from hydra.utils import instantiate

from genlab.evaluation.context import EvalContext
from genlab.evaluation.ood import ood
from genlab.evaluation.runner import evaluate
from genlab.utils.errors import GenlabError


def ood_eval(tmp_path: Path, ckpt: str, *overrides: str) -> dict:
    cfg = make_cfg(
        tmp_path,
        f"ckpt_path={ckpt}",
        "tasks=[ood]",
        "tasks.ood.k=4",
        "tasks.ood.max_images=40",
        *overrides,
        config_name="eval",
    )
    return evaluate(cfg)["ood"]


def test_other_data_mnist_5k_is_the_same_distribution(tmp_path):
    """mnist_5k against the model's own mnist_5k: the same 40 test images, scored with the same
    seeds, so the two score sets are equal and cannot be told apart (AUROC exactly 0.5)."""
    ckpt = trained("vae")["last_ckpt"]
    result = ood_eval(tmp_path, ckpt, "tasks.ood.other_data=mnist_5k")
    assert result["other"] == "mnist_5k" and result["n_in"] == result["n_other"] == 40
    assert result["auroc"] == pytest.approx(0.5, abs=1e-12)
    assert result["mean_log_px_other_nats"] == result["mean_log_px_in_nats"]
    assert Path(result["histogram"]).is_file()


def test_other_data_fashion_mnist_from_idx_files(tmp_path):
    """fashion_mnist read by torchvision from IDX files in the run's data directory (random
    8-bit noise, binarized like the model's data): far less likely than digits."""
    summary = trained("vae")
    raw = write_mnist(Path(summary["root"]) / "data", folder="FashionMNIST", n_test=30)
    result = ood_eval(tmp_path, summary["last_ckpt"], "tasks.ood.other_data=fashion_mnist")
    assert result["other"] == "fashion_mnist"
    assert result["n_in"] == 40 and result["n_other"] == len(raw["t10k"][0]) == 30
    assert result["auroc"] > 0.9
    assert result["mean_log_px_other_nats"] < result["mean_log_px_in_nats"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["ood"] == result


def test_other_data_cifar10_from_pickles_is_shaped_like_the_model_data(tmp_path):
    """CIFAR-10's 32x32 RGB pickles, made 28x28 grey like the model's data; download=false
    (other_options) as the files are not the real ones, which torchvision would re-fetch."""
    summary = trained("vae")
    write_cifar10(Path(summary["root"]) / "data", n_test=25)
    result = ood_eval(
        tmp_path,
        summary["last_ckpt"],
        "tasks.ood.other_data=cifar10",
        # random pickles: not the published files (their MD5 check would refuse them)
        "tasks.ood.other_options={download: false, check_md5: false}",
    )
    assert result["other"] == "cifar10" and result["n_other"] == 25
    assert result["auroc"] > 0.9


def refusal(tmp_path: Path, model: str, **options) -> str:
    cfg = make_cfg(tmp_path, f"model={model}")
    ctx = EvalContext(instantiate(cfg.model), None, cfg, tmp_path, lambda: None)  # type: ignore[arg-type]
    with pytest.raises(GenlabError) as err:
        ood(ctx, **options)
    return str(err.value)


def test_ood_refusals_name_what_to_do(tmp_path):
    assert refusal(tmp_path, "cvae", other_data="mnist_5k") == (
        "the ood task scores log p(x) without labels; a conditional VAE only gives "
        "log p(x|y). Use an unconditional model (model=vae or beta_vae)."
    )
    assert refusal(tmp_path, "wae", other_data="mnist_5k") == (
        "the ood task estimates log p(x) and needs a model with a likelihood and an encoder "
        "(model=vae, beta_vae or cvae); WAE has none. Drop ood from tasks=[...]."
    )
    neither_nor_both = (
        "the ood task needs exactly one of tasks.ood.other_data=NAME (a file in conf/data/, "
        "e.g. fashion_mnist) or tasks.ood.other_folder=DIR (a folder of images)."
    )
    assert refusal(tmp_path, "vae") == neither_nor_both
    assert refusal(tmp_path, "vae", other_data="mnist_5k", other_folder="x") == neither_nor_both
