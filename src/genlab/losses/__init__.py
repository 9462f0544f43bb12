"""Losses as plain functions of tensors. Each returns one value per example (shape (B,))
unless its name says otherwise; the model decides how to reduce over the batch."""

from genlab.losses.reconstruction import reconstruction_loss

__all__ = ["reconstruction_loss"]
