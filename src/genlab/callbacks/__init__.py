"""Lightning callbacks: image grids and run bookkeeping."""

from genlab.callbacks.images import ConditionalGrid, ReconstructionGrid, SampleGrid
from genlab.callbacks.last_checkpoint import LastCheckpoint, RandomState
from genlab.callbacks.latent_interpolation import LatentInterpolation
from genlab.callbacks.metrics import GenerationMetrics
from genlab.callbacks.prior_interpolation import PriorInterpolation, WeightsDigest
from genlab.callbacks.stage_snapshots import StageSnapshots
from genlab.callbacks.translation_grid import TranslationGrid

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
