"""LightningDataModules: every batch is (images in [0, 1] of shape (B, C, H, W), labels)."""

from genlab.data.celeba import CelebA
from genlab.data.cifar import CIFAR10
from genlab.data.datamodules import ImageDataModule
from genlab.data.folder import ImageFolder
from genlab.data.mnist import MNIST5k, TorchvisionMNIST
from genlab.data.paired import PairedImages

__all__ = [
    "CIFAR10",
    "CelebA",
    "ImageDataModule",
    "ImageFolder",
    "MNIST5k",
    "PairedImages",
    "TorchvisionMNIST",
]
