"""Plain nn.Modules (no Lightning): encoders, decoders, generators, discriminators."""

from genlab.nets.conv import ConvDecoder, ConvEncoder
from genlab.nets.conv_classifier import ConvClassifier
from genlab.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from genlab.nets.gan_mlp import MLPDiscriminator, MLPGenerator
from genlab.nets.mlp import MLPDecoder, MLPEncoder
from genlab.nets.patchgan import PatchGAN
from genlab.nets.progressive_nets import ProgressiveDiscriminator, ProgressiveGenerator
from genlab.nets.recurrent import RecurrentDecoder, RecurrentEncoder
from genlab.nets.srresnet import SRGANDiscriminator, SRResNet
from genlab.nets.unet import UNet

__all__ = [
    "ConvClassifier",
    "ConvDecoder",
    "ConvEncoder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDecoder",
    "MLPDiscriminator",
    "MLPEncoder",
    "MLPGenerator",
    "PatchGAN",
    "ProgressiveDiscriminator",
    "ProgressiveGenerator",
    "RecurrentDecoder",
    "RecurrentEncoder",
    "SRGANDiscriminator",
    "SRResNet",
    "UNet",
]
