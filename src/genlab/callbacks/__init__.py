"""Lightning callbacks: image grids and run bookkeeping."""

from genlab.callbacks.checkpoint import LastCheckpoint, RandomState
from genlab.callbacks.gan import PriorInterpolation, WeightsDigest
from genlab.callbacks.images import ConditionalGrid, ReconstructionGrid, SampleGrid
from genlab.callbacks.latent import LatentInterpolation
from genlab.callbacks.metrics import GenerationMetrics
from genlab.callbacks.progressive import StageSnapshots
from genlab.callbacks.translation import TranslationGrid

__all__ = [
    "ConditionalGrid",
    "GenerationMetrics",
    "LastCheckpoint",
    "LatentInterpolation",
    "PriorInterpolation",
    "RandomState",
    "ReconstructionGrid",
    "SampleGrid",
    "StageSnapshots",
    "TranslationGrid",
    "WeightsDigest",
]
