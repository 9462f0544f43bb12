"""The one exception type for problems a user can fix (config, data, checkpoint), and the one
failure wrapper every entry point uses."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
# what an `on_error` hook returns to leave the exception to the wrapper's default handling
NOT_HANDLED: Any = object()


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


# what torch.distributed's backends say when another process of the job is gone
PEER_LOST = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Socket Timeout",
    "NCCL communicator was aborted",
    "NCCL error",
)


def lost_peer(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a distributed backend's report that another rank
    of the job went away."""
    seen = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        backend = type(err).__name__.startswith("Dist") or isinstance(err, RuntimeError)
        if backend and any(text in str(err) for text in PEER_LOST):
            return True
        err = err.__cause__ or err.__context__
    return False


def print_user_error(err: GenlabError) -> None:
    """The user's view of a GenlabError: its paragraph on stderr, no traceback."""
    print(f"\ngenlab: error: {err}\n", file=sys.stderr)


def refuse_now(err: GenlabError) -> None:
    """Stop the process with `err`'s paragraph and exit status 2, from code that runs before
    genlab's own wrapper can catch it: the resolvers Hydra calls while it works out the run
    directory, before it creates anything. (Hydra reports an ordinary exception raised there
    as a long traceback; a SystemExit passes through it.)"""
    print_user_error(err)
    sys.exit(2)


OnError = Callable[..., Any]


def exit_on_user_error(fn: F | None = None, *, on_error: OnError | None = None) -> Any:
    """The failure wrapper of every entry point (train, eval, sample, latent, compare, and
    each job of a sweep): a GenlabError, also one wrapped by Hydra's instantiate, becomes one
    paragraph on stderr and exit status 2, without a traceback; any other exception
    propagates with its traceback.

    `@exit_on_user_error` or `@exit_on_user_error(on_error=hook)`. The hook is called first,
    as `hook(exc, user_error, *args, **kwargs)` with the entry point's own arguments and
    `user_error` the GenlabError behind `exc` (or None). What it returns is the entry point's
    result, e.g. a multirun job records the failure in its summary.json and returns the worst
    objective so that the sweep goes on; it returns `NOT_HANDLED` for the default handling
    above, or raises.
    """

    def wrap(inner: F) -> F:
        @wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return inner(*args, **kwargs)
            except Exception as exc:
                user_error = find_user_error(exc)
                if on_error is not None:
                    result = on_error(exc, user_error, *args, **kwargs)
                    if result is not NOT_HANDLED:
                        return result
                if user_error is None:
                    raise
                print_user_error(user_error)
                sys.exit(2)

        return wrapper  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap
