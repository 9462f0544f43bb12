"""LightningModules: one per training loop."""

from genlab.models.autoencoder import AutoEncoder

__all__ = ["AutoEncoder"]
