"""Losses as plain functions of tensors. Each returns one value per example (shape (B,))
unless its name says otherwise; the model decides how to reduce over the batch."""

from genlab.losses.reconstruction import reconstruction_loss
from genlab.losses.sparsity import kl_sparsity_batch, l1_sparsity, top_k

__all__ = ["kl_sparsity_batch", "l1_sparsity", "reconstruction_loss", "top_k"]
