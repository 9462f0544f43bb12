"""The `representation` task: an autoencoder's codes against PCA of the same size.

Encodes the train and test splits with the model and fits PCA (scikit-learn) with as many
components as the code has dimensions on the same train images. For both it reports
- the test reconstruction error: squared error summed over the pixels of an image (in the
  data's [0, 1] scale), averaged over the test images, and per pixel;
- a linear probe: logistic regression on standardised codes, fitted on train, accuracy on test;
and draws a 2-D scatter of the test codes coloured by label (the first two principal
components of the codes when they have more than two dimensions). Files under the eval
folder: representation.json, representation.md, representation_scatter.png.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from genlab.analysis.plots import pca_2d, scatter_plot
from genlab.analysis.tables import markdown_table
from genlab.data.subsets import spread_subset
from genlab.evaluation.context import EvalContext, accepts
from genlab.models.protocols import CanEncode, CanReconstruct
from genlab.utils.errors import GenlabError


def _split(ctx: EvalContext, split: str, limit: int | None) -> Any:
    return spread_subset(ctx.datamodule.dataset(split), limit)  # type: ignore[attr-defined]


def _labels(y: torch.Tensor, label_index: int) -> torch.Tensor:
    """Class labels (B,), or one column of attribute vectors (B, A) such as CelebA's."""
    y = torch.as_tensor(y)
    return y[:, label_index] if y.ndim == 2 else y


@torch.no_grad()
def encode_split(
    model: Any, data: Any, *, device: str, batch_size: int, label_index: int, reconstruct: bool
) -> dict[str, np.ndarray]:
    """Images (N, D) flattened, codes (N, latent), labels (N,) and reconstructions (N, D)."""
    xs, codes, ys, recons = [], [], [], []
    for x, y in DataLoader(data, batch_size=batch_size):
        xd, yd = x.to(device), torch.as_tensor(y).to(device)
        codes.append(model.encode_latent(xd, yd).flatten(1).float().cpu())
        if reconstruct:
            recons.append(model.reconstruct(xd, yd).flatten(1).float().cpu())
        xs.append(x.flatten(1))
        ys.append(_labels(y, label_index))
    out = {
        "x": torch.cat(xs).double().numpy(),
        "code": torch.cat(codes).double().numpy(),
        "y": torch.cat(ys).numpy(),
    }
    if reconstruct:
        out["recon"] = torch.cat(recons).double().numpy()
    return out


def linear_probe(
    train_codes: np.ndarray,
    train_y: np.ndarray,
    test_codes: np.ndarray,
    test_y: np.ndarray,
    *,
    max_iter: int,
    seed: int,
) -> float:
    """Test accuracy of a logistic regression fitted on standardised train codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed)
    )
    probe.fit(train_codes, train_y)
    return float(probe.score(test_codes, test_y))


def squared_error(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    sse = ((x_hat - x) ** 2).sum(1)  # (n,) per image
    return {"mse_per_image": float(sse.mean()), "mse_per_pixel": float(sse.mean() / x.shape[1])}


def summary_table(result: dict[str, Any]) -> str:
    """representation.md: one row per representation."""

    def number(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    rows = [
        (
            name,
            number(row.get("mse_per_image"), ".3f"),
            number(row.get("mse_per_pixel"), ".5f"),
            number(row.get("probe_accuracy"), ".4f"),
        )
        for name, row in result["methods"].items()
    ]
    table = markdown_table(
        ["representation", "test MSE per image", "test MSE per pixel", "linear-probe accuracy"],
        rows,
        align="lrrr",
    )
    return (
        f"Code size {result['code_size']}; train {result['n_train']} / test {result['n_test']} "
        "images. Reconstruction error: squared error summed over an image's pixels (data in "
        "[0, 1]), mean over test images.\n\n" + table
    )


@accepts("image")
def representation(
    ctx: EvalContext,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
    batch_size: int = 256,
    probe: bool = True,
    probe_max_iter: int = 1000,
    label_index: int = 0,
    scatter: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Model codes vs PCA codes of the same size: test reconstruction MSE, linear-probe
    accuracy, 2-D scatter. `max_train`/`max_test` subsample the splits (evenly spaced);
    `label_index` picks the attribute probed when labels are vectors (CelebA)."""
    from sklearn.decomposition import PCA

    model = ctx.model
    if not isinstance(model, CanEncode):
        raise GenlabError(
            f"tasks=[representation] needs a model with an encoder; {type(model).__name__} has "
            "no encode_latent(x). Evaluate an autoencoder or VAE checkpoint."
        )
    can_reconstruct = isinstance(model, CanReconstruct)
    started = time.perf_counter()
    kw = {"device": ctx.device, "batch_size": batch_size, "label_index": label_index}
    train = encode_split(model, _split(ctx, "train", max_train), reconstruct=False, **kw)
    test = encode_split(model, _split(ctx, "test", max_test), reconstruct=can_reconstruct, **kw)
    d = train["code"].shape[1]
    if d > min(train["x"].shape):
        raise GenlabError(
            f"the code has {d} dimensions but PCA of {train['x'].shape[0]} train images of "
            f"{train['x'].shape[1]} values can have at most {min(train['x'].shape)}: raise "
            "tasks.representation.max_train (or null) or evaluate a model with a smaller code."
        )

    pca = PCA(n_components=d, random_state=seed).fit(train["x"])
    pca_train, pca_test = pca.transform(train["x"]), pca.transform(test["x"])
    pca_recon = pca.inverse_transform(pca_test)
    model_name = type(model).__name__
    methods: dict[str, dict[str, Any]] = {
        model_name: squared_error(test["x"], test["recon"]) if can_reconstruct else {},
        "PCA": squared_error(test["x"], pca_recon),
        # PCA's reconstruction may leave [0, 1]; clipping can only bring it closer to the data
        "PCA, clipped to [0, 1]": squared_error(test["x"], np.clip(pca_recon, 0.0, 1.0)),
    }
    methods["PCA"]["explained_variance"] = float(pca.explained_variance_ratio_.sum())
    if probe:
        for name, (tr, te) in {
            model_name: (train["code"], test["code"]),
            "PCA": (pca_train, pca_test),
        }.items():
            methods[name]["probe_accuracy"] = linear_probe(
                tr, train["y"], te, test["y"], max_iter=probe_max_iter, seed=seed
            )

    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    files = ["representation.json", "representation.md"]
    if scatter:
        panels = {
            f"{model_name} codes (d={d})": pca_2d(test["code"], fit_on=train["code"])[0],
            f"PCA codes (d={d})": pca_2d(pca_test[:, :2])[0],
        }
        scatter_plot(panels, test["y"], ctx.out_dir / "representation_scatter.png")
        files.append("representation_scatter.png")
    result = {
        "code_size": d,
        "n_train": int(train["x"].shape[0]),
        "n_test": int(test["x"].shape[0]),
        "model": model_name,
        "methods": methods,
        "seconds": round(time.perf_counter() - started, 2),
        "files": files,
    }
    (ctx.out_dir / "representation.json").write_text(json.dumps(result, indent=2))
    (ctx.out_dir / "representation.md").write_text(summary_table(result))
    return result
