"""Small building blocks shared by the nets."""

from __future__ import annotations

from torch import nn

from genlab.utils.errors import GenlabError

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def activation(name: str | None) -> nn.Module:
    """An activation module by name (`relu`, `leaky_relu` (0.2), `elu`, ...); None: Identity."""
    if name is None:
        return nn.Identity()
    if name not in _ACTIVATIONS:
        raise GenlabError(f"activation {name!r} is not known: use one of {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]()
