"""The `ood` task: score another dataset (a conf/data name or an image folder) by log p(x)
against the model's own test split: histogram PNG and the AUROC of telling them apart.

A high AUROC means in-distribution images get higher likelihood. Likelihood models are known
to fail this in some directions (Nalisnick et al. 2019: FashionMNIST-trained models score
MNIST higher); the task reports what it measures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from genlab.evaluation.context import EvalContext, accepts
from genlab.evaluation.density import check_likelihood_model, score_dataset
from genlab.utils.checkpoint import data_config
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)
CONF_DATA = Path(__file__).resolve().parents[1] / "conf" / "data"


def other_dataset(
    ctx: EvalContext,
    other_data: str | None,
    other_folder: str | None,
    split: str,
    options: Mapping[str, Any] | None = None,
) -> tuple[str, Dataset]:
    """The dataset to compare, shaped (size, channels, binarization) like the model's data.

    `other_data` names a file of conf/data/, resolved against the run's config (its
    paths.data_dir is where the files are looked for); `other_folder` is a folder of images.
    `options` override that data config's options (e.g. download=false).
    """
    if bool(other_data) == bool(other_folder):
        raise GenlabError(
            "the ood task needs exactly one of tasks.ood.other_data=NAME (a file in conf/data/, "
            "e.g. fashion_mnist) or tasks.ood.other_folder=DIR (a folder of images)."
        )
    own = ctx.datamodule
    shape = {
        "image_size": own.image_size,  # type: ignore[attr-defined]
        "channels": own.channels,  # type: ignore[attr-defined]
        "binarize": "static" if own.binarize else None,  # type: ignore[attr-defined]
    }
    if other_folder:
        cfg = {
            "_target_": "genlab.data.ImageFolder",
            "path": other_folder,
            "test_fraction": 1.0,
            "val_fraction": 0.0,
            "num_workers": 0,
            **(options or {}),
            **shape,
        }
        name, split = Path(other_folder).name, "test"
    else:
        file = CONF_DATA / f"{other_data}.yaml"
        if not file.is_file():
            names = ", ".join(sorted(p.stem for p in CONF_DATA.glob("*.yaml")))
            raise GenlabError(
                f"tasks.ood.other_data={other_data!r} is not a data config: use one of {names}."
            )
        cfg = data_config(ctx.run_cfg, OmegaConf.load(file), **{**(options or {}), **shape})
        cfg.pop("num_classes", None)
        name = str(other_data)
    datamodule = instantiate(cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    return name, datamodule.dataset(split)


def save_histogram(path: Path, scores: dict[str, torch.Tensor], bins: int, auroc: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, values in scores.items():
        ax.hist(
            values.numpy(), bins=bins, alpha=0.55, density=True, label=f"{label} (n={len(values)})"
        )
    ax.set_xlabel("log p(x) [nats]")
    ax.set_ylabel("density")
    ax.set_title(f"log-likelihood, AUROC {auroc:.3f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@accepts("image")
def ood(
    ctx: EvalContext,
    *,
    other_data: str | None = None,
    other_folder: str | None = None,
    other_options: Mapping[str, Any] | None = None,
    split: str = "test",
    k: int = 100,
    chunk: int = 100,
    batch_size: int = 100,
    max_images: int | None = 1000,
    bins: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """log p(x) of the model's `split` (in-distribution) vs another dataset; AUROC + histogram."""
    from sklearn.metrics import roc_auc_score

    model = ctx.model
    check_likelihood_model(model, "ood")
    if model.num_classes:
        raise GenlabError(
            "the ood task scores log p(x) without labels; a conditional VAE only gives "
            "log p(x|y). Use an unconditional model (model=vae or beta_vae)."
        )
    name, other = other_dataset(ctx, other_data, other_folder, split, other_options)
    opts = dict(
        k=k,
        chunk=chunk,
        batch_size=batch_size,
        device=ctx.device,
        seed=seed,
        max_images=max_images,
    )
    own = score_dataset(model, ctx.datamodule.dataset(split), **opts)["log_px"]  # type: ignore[attr-defined]
    theirs = score_dataset(model, other, **opts)["log_px"]
    labels = torch.cat([torch.ones(len(own)), torch.zeros(len(theirs))])
    auroc = float(roc_auc_score(labels.numpy(), torch.cat([own, theirs]).numpy()))
    png = ctx.out_dir / f"ood_{name}.png"
    save_histogram(png, {"in-distribution": own, name: theirs}, bins, auroc)
    log.info("ood: %s vs in-distribution, AUROC %.4f (histogram %s)", name, auroc, png)
    return {
        "other": name,
        "k": k,
        "n_in": len(own),
        "n_other": len(theirs),
        "auroc": auroc,
        "mean_log_px_in_nats": float(own.mean()),
        "mean_log_px_other_nats": float(theirs.mean()),
        "histogram": str(png),
    }
