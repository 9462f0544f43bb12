"""Evaluation tasks run by `python -m genlab.eval ckpt_path=... tasks=[test,...]`.

A task is a plain function `task(ctx: EvalContext, **options) -> dict` configured in
`conf/tasks/<name>.yaml` as a `_partial_` target; it writes its files under `ctx.out_dir`
and returns JSON-able results, collected in metrics.json under the task's name.
"""

from genlab.evaluation.context import EvalContext

__all__ = ["EvalContext"]
