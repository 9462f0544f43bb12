"""Draw samples from a checkpoint: `python -m genlab.sample ckpt_path=PATH n=64`.

Writes `samples.png` (a grid; one row per class for conditional models) and samples.json to
RUN/samples/<time>/, and with `save_individual=true` each of the n samples as its own PNG in
`images/` (for external FID tools). Works for every model satisfying `CanSample`
(genlab.analysis.samples).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

import genlab.utils.resolvers  # noqa: F401  (registers ${genlab.*} before Hydra composes)
from genlab.utils.errors import exit_on_user_error
from genlab.utils.run import output_folder

log = logging.getLogger("genlab.sample")


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the models load when the command runs, not for --help or a refusal
    import torch

    from genlab.analysis.samples import write_samples
    from genlab.utils.checkpoint import load_model, pick_device

    with output_folder(cfg, "samples folder") as out_dir:
        torch.manual_seed(cfg.seed)
        model, _ = load_model(cfg.ckpt_path)
        summary = write_samples(
            model.to(pick_device(cfg.device)),
            out_dir,
            n=cfg.n,
            n_per_row=cfg.n_per_row,
            temperature=cfg.temperature,
            seed=cfg.seed,
            save_individual=cfg.save_individual,
            classes=list(cfg.classes) if cfg.classes is not None else None,
            grid_max=cfg.grid_max,
            batch_size=cfg.batch_size,
        )
    log.info("samples written to %s", out_dir)
    print(summary["grid"])


if __name__ == "__main__":
    main()
