"""Loading checkpoints safely (`weights_only`) and checking them against a model."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.utils.errors import GenlabError

CONFIG_KEY = "genlab_config"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint with `weights_only=True`; a clear error if it is unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenlabError(
            f"ckpt_path={str(path)!r} does not exist. Pass the path of a .ckpt file, e.g. "
            "logs/train/runs/<run>/checkpoints/last.ckpt."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise GenlabError(
            f"ckpt_path={str(path)!r} could not be read as a checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). It may be truncated or not a "
            "genlab/Lightning checkpoint; use last.ckpt or a best-*.ckpt of a finished run."
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise GenlabError(
            f"ckpt_path={str(path)!r} holds no 'state_dict': not a Lightning checkpoint."
        )
    return ckpt


def check_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path
) -> None:
    """Raise a GenlabError naming the differences if `state_dict` does not fit `model`."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append(
            "shape mismatches: " + "; ".join(shapes[:5]) + (" ..." if len(shapes) > 5 else "")
        )
    if missing:
        parts.append(
            f"missing in checkpoint: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )
    if unexpected:
        parts.append(
            f"not in the model: {', '.join(unexpected[:5])}"
            + (" ..." if len(unexpected) > 5 else "")
        )
    raise GenlabError(
        f"checkpoint {str(path)!r} does not match the model built from the config ("
        + "; ".join(parts)
        + "). Use the same model/data options as the run that wrote it (its config.yaml), "
        "or start a new run without ckpt_path."
    )
