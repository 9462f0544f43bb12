"""The `density` task: importance-weighted estimates of log p(x) (the IWAE bound, Burda et al.
2015) on a split, in nats and bits/dim, next to the ELBO.

log p(x) >= log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x); the bound tightens as K grows
and equals log p(x) as K -> infinity. The K samples are drawn `chunk` at a time and combined
with a running logsumexp, so memory is bounded by batch_size * chunk decoder outputs.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from genlab.data.subsets import spread_subset
from genlab.evaluation.context import EvalContext, accepts
from genlab.losses.likelihood import bits_per_dim
from genlab.models.protocols import HasLikelihood
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)


def check_likelihood_model(model: Any, task: str) -> None:
    """A GenlabError unless `model` defines a likelihood with importance weights (a VAE)."""
    if not isinstance(model, HasLikelihood):
        raise GenlabError(
            f"the {task} task estimates log p(x) and needs a model with a likelihood and an "
            f"encoder (model=vae, beta_vae or cvae); {type(model).__name__} has none. Drop "
            f"{task} from tasks=[...]."
        )


@torch.no_grad()
def iwae_log_px(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    k: int,
    chunk: int = 100,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The K-sample importance-weighted estimate of log p(x) per image (B,), in nats."""
    if k < 1 or chunk < 1:
        raise GenlabError(f"tasks.density.k={k} and chunk={chunk} must be >= 1.")
    parts = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        log_w = model.log_importance_weights(x, y, k=n, generator=generator)  # (n, b)
        parts.append(torch.logsumexp(log_w, dim=0))
    return torch.logsumexp(torch.stack(parts), dim=0) - math.log(k)


@torch.no_grad()
def score_dataset(
    model: Any,
    data: Dataset,
    *,
    k: int,
    chunk: int,
    batch_size: int,
    device: str,
    seed: int = 0,
    max_images: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image log p(x) estimates and negative ELBOs (nats) over a dataset: (N,) each.

    `max_images` takes that many images evenly spread over the dataset. The labels go to the
    model with the images (a conditional model scores log p(x|y)).
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)  # the one-sample ELBO draws from the global generator
    log_px, nelbo, binary = [], [], True
    for x, y in DataLoader(spread_subset(data, max_images), batch_size=batch_size):
        x, y = x.to(device), torch.as_tensor(y).to(device)
        binary = binary and bool(((x == 0) | (x == 1)).all())
        log_px.append(iwae_log_px(model, x, y, k=k, chunk=chunk, generator=gen).cpu())
        nelbo.append(model.elbo_terms(x, y)["nelbo"].cpu())
    if not log_px:
        raise GenlabError("the data to score is empty: check the split and max_images options.")
    return {"log_px": torch.cat(log_px), "nelbo": torch.cat(nelbo), "binary": torch.tensor(binary)}


@accepts("image")
def density(
    ctx: EvalContext,
    *,
    k: int = 1000,
    chunk: int = 100,
    split: str = "test",
    batch_size: int = 100,
    max_images: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """IWAE estimate of -log p(x) with `k` samples on `split`, and the one-sample -ELBO."""
    model = ctx.model
    check_likelihood_model(model, "density")
    data = ctx.datamodule.dataset(split)  # type: ignore[attr-defined]
    scores = score_dataset(
        model,
        data,
        k=k,
        chunk=chunk,
        batch_size=batch_size,
        device=ctx.device,
        seed=seed,
        max_images=max_images,
    )
    dims = int(data[0][0].numel())
    nll = float(-scores["log_px"].mean())
    nelbo = float(scores["nelbo"].mean())
    torch.save({k_: v for k_, v in scores.items()}, ctx.out_dir / f"density_{split}_scores.pt")
    result: dict[str, Any] = {
        "split": split,
        "k": k,
        "n_images": len(scores["log_px"]),
        "nll_nats": nll,
        "nll_bits_per_dim": float(bits_per_dim(nll, dims)),
        "nelbo_nats": nelbo,
        "nelbo_bits_per_dim": float(bits_per_dim(nelbo, dims)),
        "gap_nats": nelbo - nll,
    }
    if model.likelihood == "bernoulli" and not bool(scores["binary"]):
        result["note"] = (
            "the images are not binary (data.binarize=null): the Bernoulli 'log-likelihood' is "
            "a cross-entropy, not a normalized density; use data.binarize=static|dynamic for "
            "numbers comparable with published NLLs"
        )
        log.warning("density: %s", result["note"])
    log.info("density (%s, K=%d): -log p(x) %.2f nats, -ELBO %.2f nats", split, k, nll, nelbo)
    return result
