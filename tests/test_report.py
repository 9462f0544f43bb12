"""The report (and generation) eval tasks on real checkpoints of every model family, through
the real `python -m genlab.eval` CLI; and the sweep comparison table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import CONF, FAST, TINY_CLASSIFIER, make_cfg, run_cli, tiles
from hydra.utils import instantiate
from omegaconf import open_dict

from genlab.evaluation.runner import evaluate
from genlab.train import train
from genlab.utils.checkpoint import load_model


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory) -> str:
    """A barely trained domain classifier: enough for the metrics' plumbing, not for quality."""
    summary = train(make_cfg(tmp_path_factory.mktemp("clf"), *FAST, *TINY_CLASSIFIER))
    return summary["last_ckpt"]


FAMILIES = {
    "ae": ["model=ae"],
    "vae": ["model=vae"],
    "gan": ["model=gan"],
}


def has_model(name: str) -> bool:
    return (CONF / "model" / f"{name}.yaml").is_file()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_report_for_each_model_family(family, tmp_path, classifier_ckpt):
    assert has_model(family), f"conf/model/{family}.yaml is missing"
    summary = train(
        make_cfg(tmp_path, *FAST, *FAMILIES[family], "test=false", "trainer.max_epochs=1")
    )
    ckpt = summary["last_ckpt"]
    options = [
        "tasks=[generation,report]",
        "trainer=cpu",
        f"tasks.generation.classifier_ckpt={classifier_ckpt}",
        "tasks.generation.n_samples=40",
        "tasks.generation.metrics=[fid,kid,is,precision_recall,density_coverage]",
        "tasks.report.scatter_n=100",
        "tasks.report.metric_images=50",
    ]
    if family == "ae":  # the real CLI once; in-process for the others (faster)
        run_cli(
            f"ckpt_path={ckpt}",
            f"paths.root_dir={tmp_path}",
            *options,
            cwd=tmp_path,
            module="genlab.eval",
        )
    else:
        cfg = make_cfg(tmp_path, f"ckpt_path={ckpt}", *options, config_name="eval")
        with open_dict(cfg):
            cfg.paths.output_dir = str(Path(summary["run_dir"]) / "eval" / "inprocess")
        evaluate(cfg)
    model, run_cfg = load_model(ckpt)
    datamodule = instantiate(run_cfg.data)
    datamodule.setup()
    evals = sorted((Path(summary["run_dir"]) / "eval").iterdir())
    out = evals[-1]
    result = json.loads((out / "metrics.json").read_text())
    rep = result["report"]
    text = (out / "report" / "report.md").read_text()
    for fig in rep["figures"].values():
        assert (out / "report" / fig).is_file() and f"]({fig})" in text
    assert "curves" in rep["figures"]  # from RUN/csv/metrics.csv

    gen = result["generation"]
    if family == "gan":
        assert set(rep["figures"]) == {"samples", "interpolation", "curves"}
        assert "latent_scatter" in rep["skipped"] and "reconstructions" in rep["skipped"]
        assert "reconstructions" not in gen
    else:
        assert {"reconstructions", "interpolation", "latent_scatter"} <= set(rep["figures"])
        assert rep["reconstruction"]["n_images"] == 50
        assert gen["reconstructions"]["provenance"]["fake_source"] == "reconstructions"
        # recomputed: 50 test images spread evenly over the split, reconstructed and clamped
        test = datamodule.dataset("test")
        index = torch.linspace(0, len(test) - 1, 50).long().tolist()
        x = torch.stack([test[i][0] for i in index])
        y = torch.tensor([int(test[i][1]) for i in index])
        with torch.no_grad():
            mse = float((model.reconstruct(x, y).clamp(0, 1) - x).square().mean())
        assert rep["reconstruction"]["mse_per_pixel"] == pytest.approx(mse, rel=1e-4)
        assert rep["reconstruction"]["psnr_db"] == pytest.approx(-10 * math.log10(mse), rel=1e-4)
        assert 0 < rep["reconstruction"]["ssim"] <= 1
    if family == "ae":
        assert "samples" not in gen and "samples" in rep["skipped"]
    else:
        # the sample grid holds the model's 64 samples of seed 0, read back from the PNG
        with torch.no_grad():
            want = model.sample(64, generator=torch.Generator().manual_seed(0))[:, 0]
        got = tiles(out / "report" / "samples.png", 8, 8).flatten(0, 1)
        assert (got - want).abs().max() <= 1 / 255 + 1e-5
        values, prov = gen["samples"]["values"], gen["samples"]["provenance"]
        assert {
            "fid_domain",
            "kid_domain",
            "is_domain",
            "precision_domain",
            "coverage_domain",
        } <= set(values)
        assert prov["n_real"] == prov["n_fake"] == 40 and prov["split"] == "test"
        assert prov["extractor"] == "genlab-classifier" and prov["dataset"] == "mnist_5k"
        assert prov["image_size"] == 28 and prov["resize"] == "none"
        assert "fid_domain" in text  # the report shows the generation task's results


def test_compare_runs_table(tmp_path):
    scores = {}
    for name, latent in (("a", 2), ("b", 16)):
        s = train(
            make_cfg(
                tmp_path / name,
                *FAST,
                "trainer.max_epochs=1",
                f"model.latent_dim={latent}",
                "test=false",
            )
        )
        scores[name] = s["best_score"]
    (tmp_path / "notes").mkdir()  # not a run: ignored
    proc = run_cli(
        str(tmp_path), "--out", str(tmp_path / "cmp"), cwd=tmp_path, module="genlab.compare"
    )
    with open(tmp_path / "cmp.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == [f"{n}/run" for n in sorted(scores, key=scores.get)]
    by_run = {r["run"].split("/")[0]: r for r in rows}
    # the config value that differs is a column (named by the shallowest of the keys that take
    # its values: these runs have no command-line overrides); ones that are equal are not
    assert by_run["a"]["model.latent_dim"] == "2" and by_run["b"]["model.latent_dim"] == "16"
    assert "data.batch_size" not in rows[0] and "model.encoder.out_dim" not in rows[0]
    assert float(by_run["a"]["best val/loss"]) == pytest.approx(scores["a"])
    markdown = (tmp_path / "cmp.md").read_text()
    assert markdown.startswith("## AutoEncoder: 2 runs\n\n| run | status |")
    assert "val/loss" in proc.stdout
    bad = run_cli(str(tmp_path / "notes"), cwd=tmp_path, module="genlab.compare", check=False)
    assert bad.returncode == 2 and "no run directories" in bad.stderr


def test_eval_on_another_data_option_resolves_against_the_run(tmp_path, classifier_ckpt):
    """`python -m genlab.eval ... data=mnist_5k`: the data config refers to the run's
    ${perf...} switches, which the eval config has not got; resolved against the run's config,
    with the overrides of the command (here data.val_fraction) on top."""
    cfg = make_cfg(
        tmp_path,
        f"ckpt_path={classifier_ckpt}",
        "tasks=[test]",
        "data=mnist_5k",
        "data.val_fraction=0.2",
        config_name="eval",
    )
    result = evaluate(cfg)
    assert result["data"]["_target_"] == "genlab.data.MNIST5k"
    assert result["data"]["val_fraction"] == 0.2 and result["data"]["channels_last"] is False
    assert 0.0 <= result["test"]["test/acc"] <= 1.0
