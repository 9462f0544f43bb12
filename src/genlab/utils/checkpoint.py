"""Checkpoints: loaded safely (`weights_only`, bounded in memory), checked against a model,
and turned back into the model that wrote them (`load_model`, used by every entry point that
reads one) only when every class its config names is one genlab trusts; and the device those
entry points run on (`pick_device`)."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from genlab.utils.errors import GenlabError
from genlab.utils.resolvers import run_dir_of
from genlab.utils.untrusted import check_targets, literal_data, read_yaml, renamed

log = logging.getLogger(__name__)

CONFIG_KEY = "genlab_config"
# the parts of a run's config that the tools rebuild from a checkpoint
BUILT = ("model", "data")
# torch.save stores a checkpoint's records uncompressed: what it expands to in memory is about
# its size on disk. Records deflated by hand can expand a thousandfold (a 10 MB file to
# gigabytes) before torch.load could say anything, so the zip directory is read first.
MAX_EXPANSION = 1.5
EXPANSION_SLACK_BYTES = 1 << 20


def check_expansion(path: Path) -> None:
    """Refuse a zip checkpoint whose records expand to much more than its size on disk."""
    if not zipfile.is_zipfile(path):
        return  # torch's legacy format: read as it is, bounded by its own size
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise GenlabError(
            f"ckpt_path={str(path)!r} is a damaged zip archive ({exc}): not a checkpoint "
            "torch.save wrote. Use last.ckpt or a best-*.ckpt of a finished run."
        ) from exc
    size = os.path.getsize(path)
    if expanded > MAX_EXPANSION * size + EXPANSION_SLACK_BYTES:
        raise GenlabError(
            f"ckpt_path={str(path)!r} would expand from {size:,} bytes on disk to "
            f"{expanded:,} bytes in memory: its records were compressed after torch.save "
            "wrote them (torch.save stores them as they are). genlab does not read such a "
            "file; use the checkpoint as genlab or Lightning wrote it."
        )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint with `weights_only=True`; a clear error if it is unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenlabError(
            f"ckpt_path={str(path)!r} does not exist. Pass the path of a .ckpt file, e.g. "
            "logs/train/runs/<run>/checkpoints/last.ckpt."
        )
    check_expansion(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
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


def checkpoint_for(path: str, *, option: str) -> tuple[dict[str, Any], dict]:
    """The state dict of the checkpoint an option names, read as weights only, and the model
    section of the config stored with it ({} when none), as data; a GenlabError naming
    `option` when the file is unusable."""
    try:
        ckpt = load_checkpoint(path)
    except GenlabError as exc:
        raise GenlabError(f"{option}: {exc}") from None
    config = ckpt.get(CONFIG_KEY)
    model_cfg = config.get("model") if isinstance(config, dict) else None
    return ckpt["state_dict"], model_cfg if isinstance(model_cfg, dict) else {}


def check_fits(
    own: dict[str, torch.Tensor],
    given: dict[str, torch.Tensor],
    path: str,
    *,
    option: str,
    advice: str,
    what: str = "this model",
) -> None:
    """Refuse weights (read from `path`, named by `option`) whose names or shapes differ from
    `own` (those of `what`), naming the first few differences and `advice`."""
    problems = sorted(set(own) ^ set(given)) + [
        f"{k}: {tuple(given[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in given and given[k].shape != v.shape
    ]
    if problems:
        raise GenlabError(
            f"{option}={path!r} does not fit {what} ("
            + "; ".join(problems[:4])
            + (" ..." if len(problems) > 4 else "")
            + f"): {advice}."
        )


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


def run_config(
    ckpt: dict[str, Any], ckpt_path: str | Path, trusted: Iterable[str] = ()
) -> DictConfig:
    """The training config of a checkpoint: stored inside it, else RUN/config.yaml; read as
    data (no interpolation anywhere in it) and checked: every `_target_` of what the tools
    build from it (its model and data) must be a class genlab trusts
    (genlab.utils.untrusted.check_targets) before anything is built."""
    if CONFIG_KEY in ckpt:
        data, source = ckpt[CONFIG_KEY], f"the config stored in checkpoint {str(ckpt_path)!r}"
    else:
        config_file = Path(run_dir_of(str(ckpt_path))) / "config.yaml"
        if not config_file.is_file():
            raise GenlabError(
                f"checkpoint {str(ckpt_path)!r} holds no genlab config and there is no "
                f"{config_file}: it was not written by genlab.train. Use a checkpoint from a "
                "genlab run directory."
            )
        data, source = read_yaml(config_file, what="run config"), str(config_file)
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise GenlabError(
            f"{source} is not a genlab run config (no model section): use a checkpoint "
            "written by genlab.train."
        )
    data, changes = renamed(literal_data(data, source=source))
    for change in changes:
        log.info("%s names a class that has moved since: %s", source, change)
    # what genlab builds from a checkpoint: its model and its data (callbacks and loggers of
    # the run are never built from it; a resumed run checks its whole config)
    check_targets({k: data.get(k) for k in BUILT if k in data}, source=source, trusted=trusted)
    return OmegaConf.create(data)


def load_model(
    ckpt_path: str | Path, *, expect: str | None = None, trusted: Iterable[str] = ()
) -> tuple[L.LightningModule, DictConfig]:
    """Rebuild the model of a checkpoint with its weights, in eval mode, on the CPU; returns
    (model, training config). The config is checked before anything is built (`run_config`):
    `trusted` adds patterns of your own classes (e.g. `my_package.*`) to what genlab builds.
    `expect`: the model class name the caller needs (e.g. "Classifier"), refused otherwise
    before the model is built."""
    ckpt = load_checkpoint(ckpt_path)
    cfg = run_config(ckpt, ckpt_path, trusted)
    target = str(cfg.model.get("_target_", ""))
    if expect is not None and target.rsplit(".", 1)[-1] != expect:
        raise GenlabError(
            f"{str(ckpt_path)!r} is a checkpoint of {target or 'no model'}, not of a genlab "
            f"{expect}: train one with `python -m genlab.train model={expect.lower()}` and pass "
            "its checkpoint."
        )
    model: L.LightningModule = instantiate(cfg.model)
    check_state_dict(model, ckpt["state_dict"], ckpt_path)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, cfg


def pick_device(name: str) -> str:
    """`auto` (a GPU when there is one, else the CPU), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise GenlabError(f"device={name!r}: use auto, cpu or cuda.")
    return name


def data_config(run_cfg: DictConfig, data: Any = None, **overrides: Any) -> dict[str, Any]:
    """The config of the data to rebuild a run's data with, for `instantiate`: the run's own,
    or `data` (another data option, e.g. `data=fashion_mnist` given to an evaluation), resolved
    against the run's config, whose `paths` and `perf` switches the data configs refer to;
    `overrides` (image size, channels, ...) on top."""
    full = OmegaConf.create(OmegaConf.to_container(run_cfg, resolve=False))
    if data is not None:
        raw = OmegaConf.to_container(data, resolve=False) if OmegaConf.is_config(data) else data
        full.data = OmegaConf.create(raw)
    if overrides:
        full.data.merge_with(overrides)
    return OmegaConf.to_container(full.data, resolve=True)  # type: ignore[return-value]
