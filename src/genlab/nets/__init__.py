"""Plain nn.Modules (no Lightning): encoders, decoders, generators, discriminators."""

from genlab.nets.conv import ConvDecoder, ConvEncoder
from genlab.nets.mlp import MLPDecoder, MLPEncoder
from genlab.nets.recurrent import RecurrentDecoder, RecurrentEncoder

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "RecurrentDecoder",
    "RecurrentEncoder",
]
