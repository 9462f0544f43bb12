"""LightningModules: one per training loop."""

from genlab.models.autoencoder import AutoEncoder
from genlab.models.classifier import Classifier
from genlab.models.gan import GAN
from genlab.models.progressive_gan import ProgressiveGAN
from genlab.models.translation import Translation
from genlab.models.vae import VAE
from genlab.models.wae import WAE

__all__ = ["AutoEncoder", "GAN", "ProgressiveGAN", "Translation", "VAE", "WAE", "Classifier"]
