"""Lightning callbacks: image grids and run bookkeeping."""

from genlab.callbacks.gan import PriorInterpolation, WeightsDigest
from genlab.callbacks.images import ReconstructionGrid, SampleGrid
from genlab.callbacks.latent import LatentInterpolation
from genlab.callbacks.metrics import GenerationMetrics

__all__ = [
    "GenerationMetrics",
    "LatentInterpolation",
    "PriorInterpolation",
    "ReconstructionGrid",
    "SampleGrid",
    "WeightsDigest",
]
