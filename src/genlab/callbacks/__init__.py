"""Lightning callbacks: image grids and run bookkeeping."""

from genlab.callbacks.images import ReconstructionGrid, SampleGrid
from genlab.callbacks.latent import LatentInterpolation

__all__ = ["LatentInterpolation", "ReconstructionGrid", "SampleGrid"]
