"""Layers point down (docs/architecture.md#layers): no module imports from a layer above its
own, statically or inside a function, and no shipped config names a class above the layer
of the group that builds it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "genlab"
CONF = PACKAGE / "conf"

# from the ground up; modules of one layer may import each other
LAYERS = {
    "utils": 0,
    "nets": 1,
    "losses": 1,
    "data": 1,
    "writers": 1,
    "distributions": 1,
    "metrics": 2,
    "models": 3,
    "analysis": 4,
    "callbacks": 5,
    "evaluation": 6,
    "training": 6,
    "search": 6,
    "conf": 7,
    # entry points: command lines, imported by nothing
    "train": 7,
    "eval": 7,
    "sample": 7,
    "latent": 7,
    "translate": 7,
    "compare": 7,
    "edit": 7,
    "reconstruct3d": 7,
}
ENTRY_POINTS = {name for name, layer in LAYERS.items() if layer == 7 and name != "conf"}
# the config groups and the layer of what they build
GROUP_LAYERS = {"model": 3, "data": 1, "callbacks": 5, "tasks": 6, "logger": 0, "trainer": 7}


def layer_of(module: str) -> int | None:
    """The layer of a dotted genlab module (None outside genlab)."""
    parts = module.split(".")
    if parts[0] != "genlab":
        return None
    if len(parts) == 1:
        return 0  # genlab/__init__.py
    top = parts[1]
    if top not in LAYERS:
        raise AssertionError(f"genlab.{top} has no layer: add it to LAYERS and the docs")
    return LAYERS[top]


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def imports(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported genlab module, line) for every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{prefix}.{base}" if base else prefix
            found.append((base, node.lineno))
    return [(m, line) for m, line in found if m == "genlab" or m.startswith("genlab.")]


def test_no_module_imports_from_a_layer_above_its_own():
    violations = []
    for module, path in modules():
        own = layer_of(module)
        for imported, line in imports(path, module):
            other = layer_of(imported)
            top = imported.split(".")[1] if "." in imported else ""
            if top in ENTRY_POINTS and module.split(".")[1] != top:
                violations.append(f"{path.relative_to(SRC)}:{line} imports the CLI {imported}")
            elif other is not None and own is not None and other > own:
                violations.append(
                    f"{path.relative_to(SRC)}:{line} (layer {own}) imports {imported} "
                    f"(layer {other})"
                )
    assert not violations, "\n".join(violations)


def targets(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "_target_" and isinstance(v, str):
                found.append(v)
            targets(v, found)
    elif isinstance(node, list):
        for v in node:
            targets(v, found)
    return found


@pytest.mark.parametrize("group", sorted(GROUP_LAYERS))
def test_shipped_configs_name_classes_of_their_layer_or_below(group):
    import yaml

    violations = []
    for file in sorted((CONF / group).rglob("*.yaml")):
        text = re.sub(r"\$\{[^}]*\}", "x", file.read_text())  # interpolations are not targets
        for target in targets(yaml.safe_load(text) or {}, []):
            module = target.rsplit(".", 1)[0]
            other = layer_of(module) if module.startswith("genlab") else None
            if other is not None and other > GROUP_LAYERS[group]:
                violations.append(f"{file.relative_to(CONF)} names {target} (layer {other})")
    assert not violations, "\n".join(violations)


def test_every_module_name_is_unique_in_the_package():
    """A stack trace or a go-to-file names one module: no two modules of genlab share a file
    name (package __init__ files aside). (Seen failing before data/base.py, models/base.py and
    losses/adversarial.py were renamed datamodules.py, genlab_module.py and gan_losses.py.)"""
    seen: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py" and "conf" not in path.relative_to(PACKAGE).parts:
            seen.setdefault(path.name, []).append(str(path.relative_to(SRC)))
    twice = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not twice, twice


def test_checkpoints_naming_the_old_module_paths_still_load():
    """A config written before the renames names its classes by the old module paths; the
    untrusted-config reader rewrites them to the modules they live in now, and each rewritten
    path imports."""
    import importlib

    from genlab.utils.untrusted import renamed

    old = {
        "data": {"_target_": "genlab.data.base.ImageDataModule"},
        "model": {"_target_": "genlab.models.base.GenlabModule"},
        "loss": {"_target_": "genlab.losses.adversarial.discriminator_loss"},
    }
    new, changes = renamed(old)
    assert len(changes) == 3
    for node in new.values():
        module, name = node["_target_"].rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), node
