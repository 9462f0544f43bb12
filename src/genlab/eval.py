"""Evaluate a checkpoint: `python -m genlab.eval ckpt_path=PATH [tasks=[test,...]] [data=...]`.

Rebuilds the model and data from the config stored in the checkpoint (or the run's
config.yaml), checks the weights fit, runs each configured task (conf/tasks/) and writes
metrics.json, one entry per task, to RUN/eval/<time>/ (genlab.evaluation.runner).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from genlab.evaluation.runner import evaluate  # torch loads when the command runs

    evaluate(cfg)


if __name__ == "__main__":
    main()
