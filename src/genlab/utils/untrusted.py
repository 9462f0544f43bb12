"""Reading files someone else may have written: run directories, checkpoints' configs, sweep
records. What they hold is data, never code: it is bounded in size and depth, never resolved as
an OmegaConf interpolation, and a config from such a file is instantiated only when every
`_target_` in it is one genlab trusts (`check_targets`).

genlab trusts your own config files and code (conf/, your `local/` configs, your overrides on
the command line); everything it reads at run time goes through this module first.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from genlab.utils.errors import GenlabError

# bounds on files genlab reads as records (a run's summary.json or config.yaml is a few KB)
MAX_RECORD_BYTES = 4 << 20
MAX_DEPTH = 64


def _read_bounded(path: Path, max_bytes: int, what: str) -> str:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise GenlabError(
                    f"{what} {path} is {size:,} bytes, more than the {max_bytes:,} genlab reads "
                    "from such a file: it was not written by genlab (or was altered). Remove it "
                    "or point genlab at a run directory it wrote."
                )
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise GenlabError(f"{what} {path} could not be read ({exc.strerror or exc}).") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GenlabError(f"{what} {path} is not UTF-8 text: not a file genlab wrote.") from exc


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of plain data (dicts and lists), counted up to `limit` + 1 without
    recursion, so a value nested 100,000 deep costs no stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, d + 1) for v in item)
    return deepest


def read_json(path: str | Path, *, what: str, max_bytes: int = MAX_RECORD_BYTES) -> Any:
    """A JSON file as plain data; a GenlabError naming the file when it is too large, not
    JSON, or nested deeper than MAX_DEPTH."""
    path = Path(path)
    text = _read_bounded(path, max_bytes, what)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise GenlabError(
            f"{what} {path} is not valid JSON ({type(exc).__name__}): it was cut short or "
            "altered. Remove it, or restore it from the run's other records."
        ) from exc
    if depth(data) > MAX_DEPTH:
        raise GenlabError(f"{what} {path} is nested deeper than {MAX_DEPTH} levels: not genlab's.")
    return data


def read_json_object(path: str | Path, *, what: str, max_bytes: int = MAX_RECORD_BYTES) -> dict:
    """`read_json` for a file that must hold a JSON object (a dict)."""
    data = read_json(path, what=what, max_bytes=max_bytes)
    if not isinstance(data, dict):
        raise GenlabError(
            f"{what} {path} holds a JSON {type(data).__name__}, not an object: it was not "
            "written by genlab (or was altered)."
        )
    return data


def _yaml_loader() -> type:
    import yaml
    from omegaconf._utils import get_yaml_loader

    base = get_yaml_loader()  # OmegaConf's own scalar rules, so values read as OmegaConf would

    class NoAliasLoader(base):  # type: ignore[misc, valid-type]
        """Refuses anchors and aliases: a 450-byte YAML of nested aliases expands to
        gigabytes ("billion laughs"); genlab never writes them."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.events.AliasEvent):
                event = self.peek_event()
                raise yaml.constructor.ConstructorError(
                    None, None, "YAML aliases (*name) are not accepted", event.start_mark
                )
            event = self.peek_event()
            if getattr(event, "anchor", None) is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "YAML anchors (&name) are not accepted", event.start_mark
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def read_yaml(path: str | Path, *, what: str, max_bytes: int = MAX_RECORD_BYTES) -> Any:
    """A YAML file as plain data (no anchors or aliases, bounded size and depth)."""
    import yaml

    path = Path(path)
    text = _read_bounded(path, max_bytes, what)
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GenlabError(f"{what} {path} is not YAML genlab can read ({first}).") from exc
    if depth(data) > MAX_DEPTH:
        raise GenlabError(f"{what} {path} is nested deeper than {MAX_DEPTH} levels: not genlab's.")
    return data


# --- configs from untrusted files ---------------------------------------------------------
def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(key path, value) for every node of plain data, depth first."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        yield where, item
        if isinstance(item, dict):
            for k, v in reversed(list(item.items())):
                stack.append((f"{where}.{k}" if where else str(k), v))
        elif isinstance(item, (list, tuple)):
            for i in reversed(range(len(item))):
                stack.append((f"{where}[{i}]", item[i]))


def interpolations(value: Any) -> list[str]:
    """Key paths whose string holds `${`: an OmegaConf interpolation once the data becomes a
    config. genlab stores configs resolved, so a file of its own never has one."""
    return [where for where, v in walk(value) if isinstance(v, str) and "${" in v]


def plain(value: Any) -> Any:
    """A config node or plain data as plain data, never resolving anything."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=False)
    return value


def literal_data(value: Any, *, source: str) -> Any:
    """Refuse data holding OmegaConf interpolations (`${...}`) before it becomes part of a
    config: resolving one can call any resolver, and Hydra's `oc.create` builds objects."""
    found = interpolations(value)
    if found:
        shown = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
        raise GenlabError(
            f"{source} holds OmegaConf interpolations (${{...}}) at {shown}. genlab stores its "
            "configs resolved, so this file was not written by genlab or was altered; "
            "genlab never resolves what it reads from a file. Use a run or checkpoint genlab "
            "wrote, or remove those values."
        )
    if depth(value) > MAX_DEPTH:
        raise GenlabError(f"{source} is nested deeper than {MAX_DEPTH} levels: not genlab's.")
    return value


# --- the targets genlab instantiates from a file ------------------------------------------
# Prefixes under which a `_target_` from a file may be looked up at all (looking a name up
# imports its module: only installed, trusted packages), and what the class must then be.
TRUSTED_PREFIXES = ("genlab.", "torch.nn.", "torch.optim.", "lightning.pytorch.", "lightning.")


def _trusted_bases() -> tuple[type, ...]:
    import lightning as L
    import torch
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.profilers import Profiler

    return (
        torch.nn.Module,
        L.LightningDataModule,
        L.Callback,
        Logger,
        torch.optim.Optimizer,
        torch.optim.lr_scheduler.LRScheduler,
        torch.optim.lr_scheduler.ReduceLROnPlateau,
        L.Trainer,
        Profiler,
    )


# genlab functions that build objects from configs (a logger made according to the machine)
TRUSTED_FUNCTIONS = frozenset({"genlab.utils.loggers.wandb_logger"})


def target_problem(target: Any, trusted: Iterable[str] = ()) -> str | None:
    """Why `target` may not be instantiated from a file (None when it may)."""
    if not isinstance(target, str):
        return f"a _target_ that is not a dotted name ({type(target).__name__})"
    if any(fnmatch.fnmatchcase(target, pattern) for pattern in trusted):
        return None
    if not target.startswith(TRUSTED_PREFIXES) or not all(
        part.isidentifier() and not part.startswith("__") for part in target.split(".")
    ):
        return "not a genlab, torch.nn, torch.optim or Lightning class"
    from hydra._internal.utils import _locate

    try:
        obj = _locate(target)
    except Exception:  # noqa: BLE001  (an unknown name: refused, whatever the reason)
        return "no such class"
    if target in TRUSTED_FUNCTIONS:
        return None
    if not inspect.isclass(obj):
        return "a function, not a class"
    # genlab's small value objects built from configs (pairings, sparsity forms) say so
    if getattr(obj, "config_object", False) and obj.__module__.startswith("genlab."):
        return None
    if not issubclass(obj, _trusted_bases()):
        return "not a module, optimizer, scheduler, datamodule, callback, logger or trainer"
    return None


def check_targets(value: Any, *, source: str, trusted: Iterable[str] = ()) -> None:
    """Refuse a config read from a file unless every `_target_` in it (at any depth, in
    `_args_` too) is a class genlab trusts: genlab's own, torch.nn modules, torch.optim
    optimizers and schedulers, Lightning's callbacks, loggers and trainer, or a name matching
    a pattern of `trusted` (the user's explicit opt-in, `trusted_targets`). Nothing is
    called before the whole tree passed."""
    data = literal_data(plain(value), source=source)
    trusted = [*trusted, *_TRUSTED_PATTERNS]
    bad = []
    for where, item in walk(data):
        if isinstance(item, dict) and "_target_" in item:
            why = target_problem(item["_target_"], trusted)
            if why:
                bad.append(f"{where or '<top>'}._target_={item['_target_']!r} ({why})")
    if bad:
        shown = "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise GenlabError(
            f"{source} asks genlab to build objects it does not trust: {shown}. A checkpoint "
            "or run directory is data and may come from anyone, so genlab only builds its own "
            "classes and those of torch and Lightning from it. If this file is yours and the "
            "class is your own code, allow it explicitly with "
            "trusted_targets=['your_package.*'] (docs/runs.md#trust)."
        )


# Classes that moved between genlab versions, by their old dotted prefix: a checkpoint or run
# written before the move names them by the old path (applied by `renamed`).
RENAMED = {
    "genlab.models.corruption.": "genlab.data.corruptions.",
    "genlab.callbacks.progressive.": "genlab.callbacks.",
    "genlab.utils.sweep.": "genlab.search.multirun.",
    "genlab.data.base.": "genlab.data.datamodules.",
    "genlab.models.base.": "genlab.models.genlab_module.",
    "genlab.losses.adversarial.": "genlab.losses.gan_losses.",
}


def renamed(value: Any) -> tuple[Any, list[str]]:
    """Plain config data with the `_target_`s of moved classes rewritten to where they live
    now, and a line per rewrite (to log: a checkpoint of an older genlab still loads, and says
    what changed)."""
    changes: list[str] = []

    def move(item: Any) -> Any:
        if isinstance(item, dict):
            out = {k: move(v) for k, v in item.items()}
            target = out.get("_target_")
            if isinstance(target, str):
                for old, new in RENAMED.items():
                    if target.startswith(old):
                        out["_target_"] = new + target[len(old) :]
                        changes.append(f"{target} -> {out['_target_']}")
            return out
        if isinstance(item, list):
            return [move(v) for v in item]
        return item

    return move(value), changes


# The user's explicit opt-in for their own classes in configs read from files: patterns from
# the `trusted_targets` option, set once by the entry point (as torch's add_safe_globals is
# set once per process for its weights-only unpickler).
_TRUSTED_PATTERNS: list[str] = []


def trust(patterns: Iterable[str] | None) -> None:
    """Set the user's `trusted_targets` patterns (fnmatch, e.g. `my_package.*`) for this
    process; every later `check_targets` accepts them."""
    bad = [p for p in (patterns or []) if not isinstance(p, str) or not p.strip(". *")]
    if bad:
        raise GenlabError(
            f"trusted_targets={list(patterns or [])!r}: each entry is a dotted name or a pattern "
            "of your own code such as 'my_package.*' (a bare '*' would trust any code)."
        )
    _TRUSTED_PATTERNS[:] = [str(p) for p in patterns or []]


def trusted_patterns() -> list[str]:
    return list(_TRUSTED_PATTERNS)
