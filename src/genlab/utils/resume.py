"""What `resume=RUN` continues with: the run's own stored config, never the options of the
command that resumes it. Only options that cannot change what is being trained may differ
(the budget, logging and callback intervals, loggers, paths, performance switches); any other
difference the user asks for is refused with a table of key, stored value and new value.

The stored config is a file of the run directory, so it is read as data (genlab.utils.untrusted):
bounded, never resolved, every `_target_` checked, its paths moved to where the run directory
is now, and every place its callbacks and loggers write to inside the run directory.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from genlab.utils.errors import GenlabError
from genlab.utils.untrusted import check_targets, literal_data, read_yaml, renamed

log = logging.getLogger(__name__)

# options that may differ when a run is continued: they change how long it runs, what is
# logged or shown, where files are, and how fast it goes, not what is trained
SAFE_TO_CHANGE = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.min_epochs",
    "trainer.min_steps",
    "trainer.log_every_n_steps",
    "trainer.check_val_every_n_epoch",
    "trainer.val_check_interval",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
    "trainer.num_sanity_val_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.profiler",
    "trainer.profiler.*",
    "trainer.accelerator",
    "trainer.default_root_dir",
    "callbacks",
    "callbacks.*",
    "logger",
    "logger.*",
    "extras",
    "extras.*",
    "paths",
    "paths.*",
    "perf.steps_per_batch",
    "perf.channels_last",
    "perf.async_checkpoints",
    "data.num_workers",
    "data.eval_batch_size",
    "data.download",
    "data.device_resident",
    "data.cache",
    "data.data_dir",
    "data.path",
    "threads",
    "run_name",
    "tags",
    "train",
    "test",
    "resume",
    "ckpt_path",
    "multirun_on_error",
    "multirun_fail_exit",
    "optimized_metric",
    "trusted_targets",
    "compile",
    "compile_backend",
)
# ...except these, which decide which checkpoint is "best" and where checkpoints go
NOT_SAFE = (
    "callbacks.model_checkpoint.monitor",
    "callbacks.model_checkpoint.mode",
    "callbacks.model_checkpoint.dirpath",
    "callbacks.last_checkpoint.dirpath",
)
# what genlab may trust comes from this command only, never from the run directory
TRUST_OPTIONS = ("trusted_targets", "model.trust_feature_code")
W_AND_B_ID = re.compile(r"[a-z0-9]{8}")


def safe_to_change(key: str) -> bool:
    if any(key == k or key.startswith(k + ".") for k in NOT_SAFE):
        return False
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in SAFE_TO_CHANGE)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of plain data by dotted key (a list is one leaf: compared whole)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def select(data: dict[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split(".") if key else []:
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def assign(data: dict[str, Any], key: str, value: Any) -> None:
    """Set (or, for _ABSENT, delete) `key` in nested dicts."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            if value is _ABSENT:
                return
            node[part] = {}
        node = node[part]
    if value is _ABSENT:
        node.pop(last, None)
    else:
        node[last] = value


# --- which keys an attempt's overrides touch -------------------------------------------------
def override_targets(overrides: list[str], conf_dir: Path) -> list[tuple[str, bool]]:
    """(key, is_group) for the config keys each command-line override sets: `a.b=1`,
    `+a.b=1`, `~a.b` set `a.b`; a config group choice (`model=vae`, `model/encoder=conv`) sets
    the group's package (`model`, `model.encoder`), and a group of `# @package _global_` files
    (`experiment=...`) sets the whole config (the empty key)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = []
    for override in OverridesParser.create().parse_overrides(overrides):
        name = override.key_or_group
        if name.startswith("hydra.") or name == "hydra":
            continue
        group_dir = conf_dir / name
        if not group_dir.is_dir():
            keys.append((name, False))
        elif override.package is not None:
            keys.append((override.package.removeprefix("_global_").lstrip("."), True))
        else:
            keys.append((_group_package(group_dir, override, name), True))
    return keys


def _group_package(group_dir: Path, override: Any, group: str) -> str:
    choices = override.value() if not override.is_delete() else None
    options = choices if isinstance(choices, list) else [choices]
    for option in options:
        if not isinstance(option, str):
            continue
        file = group_dir / f"{option}.yaml"
        try:
            header = file.read_text().splitlines()[:5]
        except OSError:
            continue
        for line in header:
            match = re.match(r"#\s*@package\s+(\S+)", line)
            if match:
                package = match.group(1)
                if package.startswith("_global_"):
                    return package.removeprefix("_global_").lstrip(".")
                if package != "_group_":
                    return package
    return group.replace("/", ".")


# --- the stored config, moved to where the run is now ----------------------------------------
def stored_config(run_dir: Path) -> tuple[dict[str, Any], str]:
    """The run's stored config as plain data, and where it was read from: RUN/config.yaml,
    else the config inside RUN/checkpoints/last.ckpt (runs of older versions)."""
    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        data, source = read_yaml(config_file, what="run config"), str(config_file)
    else:
        from genlab.utils.checkpoint import CONFIG_KEY, load_checkpoint

        last = run_dir / "checkpoints" / "last.ckpt"
        data, source = load_checkpoint(last).get(CONFIG_KEY), f"the config stored in {last}"
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise GenlabError(
            f"{source} is not a genlab run config (no model section): the run directory "
            f"{run_dir} cannot be continued. Start a new run."
        )
    data, changes = renamed(literal_data(data, source=source))
    for change in changes:
        log.info("%s names a class that has moved since: %s", source, change)
    return data, source


def relocate(data: dict[str, Any], moves: list[tuple[str, str]]) -> dict[str, Any]:
    """Every string that is one of the `moves`' old paths, or lies under one, rewritten to the
    new path (longest old path first)."""
    moves = sorted(((o, n) for o, n in moves if o and o != n), key=lambda m: -len(m[0]))

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str):
            for old, new in moves:
                if value == old or value.startswith(old.rstrip("/") + "/"):
                    return new + value[len(old) :]
        return value

    return move(data)


def check_writers_inside(data: dict[str, Any], run_dir: Path, source: str) -> None:
    """Every absolute path a callback, logger or the trainer would write to lies inside the run
    directory (a stored config could point them anywhere)."""
    outside = []
    for section in ("callbacks", "logger", "trainer"):
        for key, value in flatten(data.get(section) or {}, section).items():
            if isinstance(value, str) and os.path.isabs(value):
                path = Path(os.path.normpath(value))
                if path != run_dir and run_dir not in path.parents:
                    outside.append(f"{key}={value}")
    if outside:
        raise GenlabError(
            f"{source} makes the run write outside its directory {run_dir}: "
            + "; ".join(outside[:5])
            + ". A run directory is data and may come from anyone: genlab continues a run only "
            "when its writers stay inside it. Start a new run instead."
        )


def wandb_id(summary: dict[str, Any], run_dir: Path) -> str | None:
    value = summary.get("wandb_id")
    if value is None:
        return None
    if not isinstance(value, str) or not W_AND_B_ID.fullmatch(value):
        raise GenlabError(
            f"{run_dir}/summary.json gives wandb_id={value!r}, which is not a W&B run id (8 "
            "lowercase letters and digits): the file was altered. Fix or remove that entry "
            "to continue the run (a new W&B run is started without it)."
        )
    return value


# --- the config a resumed run continues with -------------------------------------------------
def resumed_config(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    conf_dir: Path,
    summary: dict[str, Any],
) -> DictConfig:
    """The config to continue `run_dir` with: its stored config, moved to the current paths,
    with this attempt's overrides of options that are safe to change applied; a GenlabError
    with a table when an override asks for anything else to differ."""
    stored, source = stored_config(run_dir)
    check_targets(stored, source=source)
    current = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(current, dict)
    old_paths = stored.get("paths") or {}
    new_paths = dict(current.get("paths") or {}, output_dir=str(run_dir))
    moves = [(str(old_paths.get(k, "")), str(new_paths.get(k, ""))) for k in new_paths]
    stored = relocate(stored, moves)
    check_writers_inside(stored, run_dir, source)

    result = dict(stored)
    rows = []
    for key, is_group in override_targets(overrides, conf_dir):
        if key and safe_to_change(key):  # e.g. logger=csv, ~callbacks.sample_grid
            assign(result, key, select(current, key))
            continue
        new_leaves = flatten(select(current, key), key) if key else flatten(current)
        old_leaves = flatten(select(stored, key), key) if key else flatten(stored)
        # a group choice is compared where both configs have the option (a newer or older
        # genlab may add or drop options); a single option also when it is added or removed
        both, either = set(new_leaves) & set(old_leaves), set(new_leaves) | set(old_leaves)
        leaves = both if is_group else either
        for leaf in sorted(leaves):
            new = new_leaves.get(leaf, _ABSENT)
            old = old_leaves.get(leaf, _ABSENT)
            if new == old:
                continue
            if safe_to_change(leaf):
                assign(result, leaf, new)
            elif (leaf, old, new) not in rows:
                rows.append((leaf, old, new))
    if rows:
        shown = [(k, repr(o), repr(n)) for k, o, n in rows[:40]]
        kw, ow = max(len(r[0]) for r in shown), max(len(r[1]) for r in shown)
        table = "\n".join(f"    {k:<{kw}}  stored: {o:<{ow}}  now: {n}" for k, o, n in shown)
        raise GenlabError(
            f"resume continues {run_dir} with its own config ({source}), and this command asks "
            f"for {len(rows)} option(s) to differ that would change what is trained:\n{table}\n"
            "Leave them out to continue the run as it was (only the budget, intervals, loggers, "
            "paths and speed switches may change), or start a new run with ckpt_path="
            f"{run_dir}/checkpoints/last.ckpt to fine-tune with new options."
        )
    for key, value in current.items():  # options newer than the run: their defaults
        result.setdefault(key, value)
    for key in TRUST_OPTIONS:
        assign(result, key, select(current, key))
    result["resume"] = current.get("resume")
    result["ckpt_path"] = str(run_dir / "checkpoints" / "last.ckpt")
    wid = wandb_id(summary, run_dir)
    logger = result.get("logger")
    if isinstance(logger, dict) and isinstance(logger.get("wandb"), dict):
        logger["wandb"]["id"] = wid
    return OmegaConf.create(result)
