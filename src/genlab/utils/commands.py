"""The prologue of the entry points that work on a trained run's checkpoint (genlab.edit,
genlab.translate): the model rebuilt from its checkpoint on the asked device, and the run's
own datamodule (built, not set up: nothing is read), which says what the model's images are."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def load_for_command(
    cfg: DictConfig,
    *,
    seed: int,
    data: str = "required",
    check: Callable[[Any], Any] | None = None,
) -> tuple[Any, DictConfig, Any]:
    """(model on `cfg.device`, the run's config, the run's datamodule) for `cfg.ckpt_path`.

    The global torch seed is set first. `check` runs on the model as soon as it is rebuilt
    (a refusal of a model the command cannot use, said before anything else is built).
    `data="required"`: a datamodule that cannot be built is the error it raises;
    `data="optional"`: None then (its files live on another machine), logged."""
    import torch
    from hydra.utils import instantiate

    from genlab.utils.checkpoint import data_config, load_model, pick_device

    if data not in ("required", "optional"):
        raise ValueError(f"data={data!r}: required or optional")
    torch.manual_seed(int(seed))
    model, run_cfg = load_model(cfg.ckpt_path)
    if check is not None:
        check(model)
    model = model.to(pick_device(cfg.device))
    try:
        datamodule = instantiate(data_config(run_cfg))
    except Exception as exc:
        if data == "required":
            raise
        log.info("the run's data cannot be built here (%s): only input files can be used", exc)
        datamodule = None
    return model, run_cfg, datamodule
