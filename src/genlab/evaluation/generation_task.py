"""The `generation` task: FID/KID/IS/precision-recall/density-coverage of a checkpoint's
samples (models with `sample`) and reconstructions (models with `reconstruct`) against real
images of a split, in one feature space, with the provenance of every number.

    python -m genlab.eval ckpt_path=RUN/checkpoints/last.ckpt tasks=[generation] \
        tasks.generation.classifier_ckpt=CLF_RUN/checkpoints/best-....ckpt
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from genlab.evaluation.context import EvalContext, accepts
from genlab.metrics.generation import MetricSpec, real_indices
from genlab.models.protocols import CanReconstruct, CanSample
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)


def sampler(model: Any, *, temperature: float = 1.0):
    """`sample(b, generator)` for a model with `sample()`."""

    def sample(b: int, gen: torch.Generator) -> torch.Tensor:
        return model.sample(b, generator=gen, temperature=temperature)

    return sample


def reconstructor(model: Any, datamodule: Any, split: str, n: int):
    """`sample(b, generator)` returning reconstructions of the same `n` real images the real
    features come from, in order (the generator is not used)."""
    data = datamodule.dataset(split)
    idx = real_indices(len(data), n)
    pos = 0

    def sample(b: int, gen: torch.Generator) -> torch.Tensor:  # noqa: ARG001
        nonlocal pos
        items = [data[j] for j in idx[pos : pos + b]]
        pos += b
        x = torch.stack([x for x, _ in items]).to(model.device)
        y = torch.stack([torch.as_tensor(y) for _, y in items]).to(model.device)
        return model.reconstruct(x, y)

    return sample, len(idx)


@accepts("image")
def generation(
    ctx: EvalContext,
    *,
    n_samples: int = 1000,
    split: str = "test",
    batch_size: int = 250,
    seed: int = 0,
    temperature: float = 1.0,
    reconstructions: bool = True,
    **spec: Any,
) -> dict[str, Any]:
    """Measure samples and/or reconstructions; returns {samples: {values, provenance}, ...}.

    Which metrics, in which feature space: the options of
    `genlab.metrics.generation.MetricSpec` (metrics, extractor, classifier_ckpt, ...)."""
    model = ctx.model
    can_sample = isinstance(model, CanSample)
    can_reconstruct = reconstructions and isinstance(model, CanReconstruct)
    if not (can_sample or can_reconstruct):
        raise GenlabError(
            f"{type(model).__name__} neither samples nor reconstructs: the generation task "
            "measures models with sample() or reconstruct(); remove it from tasks."
        )
    evaluator = MetricSpec.from_options("tasks.generation", spec).evaluator(
        ctx.datamodule, split=split, n_real=n_samples, batch_size=batch_size, device=ctx.device
    )
    out: dict[str, Any] = {}
    model.eval()
    if can_sample:
        out["samples"] = evaluator.evaluate(
            sampler(model, temperature=temperature), n_samples, seed=seed, source="samples"
        )
        log.info("generation metrics (samples): %s", out["samples"]["values"])
    if can_reconstruct:
        recon, n = reconstructor(model, ctx.datamodule, split, n_samples)
        out["reconstructions"] = evaluator.evaluate(recon, n, source="reconstructions")
        log.info("generation metrics (reconstructions): %s", out["reconstructions"]["values"])
    return out
