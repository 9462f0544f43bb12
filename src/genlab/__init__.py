"""genlab: train, evaluate and compare autoencoders and GANs with Lightning and Hydra."""

__version__ = "0.1.0"
