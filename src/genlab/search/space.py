"""The search space: Hydra's sweep grammar read into Optuna distributions, and a trial's
parameters written back as Hydra overrides.

`choice(a, b, ...)` (or `a,b,...`) is categorical; `range(start, stop, step=s)` an integer
(or float) grid with Hydra's half-open range, so `range(32, 129, step=32)` is 32..128;
`interval(low, high)` a float in [low, high]; `tag(log, ...)` samples on a log scale.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from genlab.utils.errors import GenlabError

GRAMMAR = (
    "choice(a, b, ...), range(start, stop, step=s), interval(low, high), "
    "tag(log, interval(low, high))"
)


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override (`key=choice(...)`, `key=range(...)`,
    `key=interval(...)`, optionally inside `tag(log, ...)`)."""
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    try:
        if isinstance(value, ChoiceSweep):
            return CategoricalDistribution(list(value.list))
        if isinstance(value, RangeSweep):
            grid = list(value.range())
            if not grid:
                raise ValueError("the range is empty")
            if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
                return IntDistribution(grid[0], grid[-1], step=int(value.step), log=log)
            return FloatDistribution(grid[0], grid[-1], step=float(value.step), log=log)
        if isinstance(value, IntervalSweep):
            return FloatDistribution(float(value.start), float(value.end), log=log)
    except ValueError as exc:
        raise GenlabError(
            f"search space: `{override.input_line}` is not a valid Optuna distribution: {exc}."
        ) from exc
    raise GenlabError(f"search space: `{override.input_line}` is not one of {GRAMMAR}.")


def search_space(
    params: Mapping[str, Any], arguments: Iterable[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The dimensions of a search and the overrides every trial shares.

    `params` is the sweeper config's `params` (key -> sweep expression); `arguments` are the
    command line's overrides. A sweep on the command line (`model.latent_dim=8,16`) adds or
    replaces a dimension; a plain value there (`model.latent_dim=16`) fixes it.
    """
    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    for key, expr in (params or {}).items():
        override = parser.parse_override(f"{key}={expr}")
        if not override.is_sweep_override():
            raise GenlabError(
                f"hydra.sweeper.params.{key}: `{expr}` is a single value, not a search "
                f"dimension. Write one of {GRAMMAR}, or set {key} in the config instead."
            )
        space[override.get_key_element()] = distribution(override)
    fixed = []
    for override in parser.parse_overrides(list(arguments)):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            space.pop(key, None)
            fixed.append(override.input_line)
    return space, fixed


_PLAIN = re.compile(r"[A-Za-z_][\w./-]*")


def as_override(key: str, value: Any) -> str:
    """`key=value` in Hydra's override syntax (strings quoted where the grammar needs it)."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif _PLAIN.fullmatch(str(value)) and str(value) not in ("true", "false", "null"):
        text = str(value)
    else:
        text = "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={text}"
