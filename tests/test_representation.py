"""Representation learning against PCA: a deep autoencoder trained briefly on real MNIST digits
beats PCA of the same code size on test reconstruction, through the eval entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_cfg
from sklearn.decomposition import PCA

from genlab.analysis.plots import pca_2d
from genlab.data import MNIST5k
from genlab.evaluation.representation import squared_error
from genlab.evaluation.runner import evaluate
from genlab.train import train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a busy 2-core machine two OpenMP threads spin against each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_squared_error_of_pca_matches_discarded_variance():
    """On the data PCA was fitted on, the mean squared error per image is the sum of the
    discarded eigenvalues (times (n-1)/n): the closed form the task's numbers rest on."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    pca = PCA(n_components=4).fit(x)
    err = squared_error(x, pca.inverse_transform(pca.transform(x)))
    eigen = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    assert err["mse_per_image"] == pytest.approx(eigen[4:].sum() * 399 / 400, rel=1e-6)
    assert err["mse_per_pixel"] == pytest.approx(err["mse_per_image"] / 12)
    assert pca_2d(x[:5], fit_on=x)[0].shape == (5, 2)


def test_deep_ae_beats_pca_at_equal_code_size(tmp_path):
    # 784-256-8-256-784, BCE, 3 epochs on the 4,000 training digits
    summary = train(
        make_cfg(
            tmp_path,
            "experiment=ae_vs_pca",
            "model.encoder.hidden_dims=[256]",
            "model.decoder.hidden_dims=[256]",
            "model.optimizer.lr=3e-3",
            "trainer.max_epochs=3",
            "trainer=cpu",
            "callbacks=model_checkpoint",
            "logger=csv",
            "test=false",
            "extras.print_config=false",
            "trainer.enable_progress_bar=false",
            "trainer.limit_val_batches=1",
        )
    )
    # what `python -m genlab.eval ckpt_path=... tasks=[test,representation]` runs, in-process
    cfg = make_cfg(
        tmp_path / "eval",
        f"ckpt_path={summary['last_ckpt']}",
        "tasks=[test,representation]",
        "trainer=cpu",
        config_name="eval",
    )
    evaluate(cfg)
    eval_dir = tmp_path / "eval" / "run"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    rep = metrics["representation"]
    assert rep["code_size"] == 8 and rep["n_train"] == 4000 and rep["n_test"] == 500
    ae, pca = rep["methods"]["AutoEncoder"], rep["methods"]["PCA"]
    clipped = rep["methods"]["PCA, clipped to [0, 1]"]
    assert ae["mse_per_image"] < 0.9 * pca["mse_per_image"], rep
    # the targets lie in [0, 1], so clipping PCA's output can only bring it closer
    assert clipped["mse_per_image"] <= pca["mse_per_image"]
    assert 0.0 < pca["explained_variance"] < 1.0
    # both codes carry the digit's identity: far above chance (0.1) for a linear probe
    assert ae["probe_accuracy"] > 0.6 and pca["probe_accuracy"] > 0.6, rep
    # the task's PCA is PCA, written here from its definition (not sklearn, which the task
    # uses): the top 8 right singular vectors of the centred train images span the code; a
    # test image is reconstructed as mean + its projection onto them, and the explained
    # variance is the share of the top 8 squared singular values. Seen failing (in a scratch
    # copy of src/) with PCA fitted on the test split and with one component left out of the
    # explained variance.
    dm = MNIST5k(image_size=28, channels=1)
    flat = {
        s: np.stack([dm.dataset(s)[i][0].flatten().numpy() for i in range(len(dm.dataset(s)))])
        for s in ("train", "test")
    }
    train_x, test_x = flat["train"].astype(np.float64), flat["test"].astype(np.float64)
    mean = train_x.mean(0)
    _, sv, vt = np.linalg.svd(train_x - mean, full_matrices=False)
    basis = vt[:8]  # (8, 784), orthonormal rows
    recon = mean + (test_x - mean) @ basis.T @ basis
    assert pca["mse_per_image"] == pytest.approx(((recon - test_x) ** 2).sum(1).mean(), rel=1e-4)
    share = (sv[:8] ** 2).sum() / (sv**2).sum()
    assert pca["explained_variance"] == pytest.approx(share, rel=1e-4)
    # the model's own test loss sees the same images
    assert "test/loss" in metrics["test"]
    assert (eval_dir / "representation.json").is_file()
    table = (eval_dir / "representation.md").read_text()
    assert "| AutoEncoder |" in table and "| PCA |" in table
    assert (eval_dir / "representation_scatter.png").stat().st_size > 5000
