"""Lightning callbacks: image grids and run bookkeeping."""

from genlab.callbacks.images import ReconstructionGrid, SampleGrid

__all__ = ["ReconstructionGrid", "SampleGrid"]
