"""Small helpers shared by the entry points: errors, config resolvers, loggers, checkpoints."""

from genlab.utils.errors import GenlabError

__all__ = ["GenlabError"]
