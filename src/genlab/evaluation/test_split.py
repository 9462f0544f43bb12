"""The `test` task: the model's own test metrics on the test split, as in training."""

from __future__ import annotations

from typing import Any

from genlab.evaluation.context import EvalContext
from genlab.utils.run import scalar_metrics


def test_metrics(ctx: EvalContext) -> dict[str, Any]:
    """Run the model's test_step over the test split; return its logged metrics."""
    trainer = ctx.make_trainer()
    trainer.test(ctx.model, datamodule=ctx.datamodule, verbose=True)
    return scalar_metrics(trainer.callback_metrics)
