"""The one exception type for problems a user can fix (config, data, checkpoint)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class GenlabError(Exception):
    """Bad input: a config option, a data path or a checkpoint the user has to change.

    The message is a short paragraph that names the file, path or option and what to do.
    """


def find_user_error(exc: BaseException) -> GenlabError | None:
    """The GenlabError behind `exc`, also when Hydra's instantiate wrapped it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, GenlabError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def exit_on_user_error(fn: F) -> F:
    """Turn a GenlabError into a one-paragraph message and exit status 2, no traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = find_user_error(exc)
            if err is None:
                raise
            print(f"\ngenlab: error: {err}\n", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
