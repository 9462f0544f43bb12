"""Every model family passes the shared checks of family_contract.FamilyContract (exact resume
that starts at the checkpoint's step; no host-device sync between logging steps), each with a
configuration small enough for a few seconds of CPU."""

from __future__ import annotations

from conftest import TINY_CONVLSTM, TINY_GAN, TINY_VIDEO, TINY_WAVENET
from family_contract import FamilyContract

TINY_AE = (
    "model.encoder.hidden_dims=[32]",
    "model.decoder.hidden_dims=[32]",
    "model.latent_dim=8",
)


class TestAutoEncoder(FamilyContract):
    overrides = TINY_AE


class TestSparseTopK(FamilyContract):
    overrides = ("model=sparse_ae", "model/sparsity=topk", *TINY_AE[:2])


class TestDenoisingOnTheDataLoaderPath(FamilyContract):
    # a random corruption drawn from the global generator, the DataLoader path
    overrides = ("model=denoising_ae", *TINY_AE, "data.device_resident=false")


class TestVAE(FamilyContract):
    overrides = ("model=vae", *TINY_AE[:2])


class TestConditionalVAE(FamilyContract):
    overrides = ("model=cvae",)


class TestWAE(FamilyContract):
    overrides = ("model=wae", *TINY_AE[:2])


class TestClassifier(FamilyContract):
    overrides = ("model=classifier", "model.net.hidden_channels=[4,8]")


class TestGAN(FamilyContract):
    overrides = (*TINY_GAN, "model.n_critic=2")
    loss_key = "train/loss_g"


class TestConditionalWGANGP(FamilyContract):
    overrides = (*TINY_GAN, "model=cgan", "model.loss=wgan_gp", "model.n_critic=2")
    loss_key = "train/loss_g"


class TestProgressiveGAN(FamilyContract):
    overrides = (
        "experiment=pggan_mnist",
        "model.latent_dim=8",
        "model.generator.max_channels=8",
        "model.discriminator.max_channels=8",
        "data.batch_size=8",
        # a fade-in within the 10 steps: 4x4 for 32 images, then 8x8 fading in over 32
        "model.stabilise_images=32",
        "model.fade_images=32",
    )
    sync_overrides = ("model.stabilise_images=100000",)
    loss_key = "train/loss_g"


class TestPix2Pix(FamilyContract):
    overrides = (
        "experiment=pix2pix_edges_mnist",
        "model.generator.base_channels=4",
        "model.discriminator.base_channels=4",
        "data.batch_size=8",
    )
    loss_key = "train/loss_g"


class TestConvLSTM(FamilyContract):
    overrides = TINY_CONVLSTM


class TestSVGLP(FamilyContract):
    overrides = (
        "model=svg_lp",
        *TINY_VIDEO,
        "model.g_dim=8",
        "model.z_dim=2",
        "model.encoder.hidden_channels=[4,8]",
        "model.posterior.hidden_size=8",
        "model.prior.hidden_size=8",
        "model.predictor.hidden_size=8",
        "model.eval_samples=2",
    )


class TestVideoGAN(FamilyContract):
    overrides = (
        "model=video_gan",
        *TINY_VIDEO,
        "model.generator.hidden_channels=[4]",
        "model.generator.frame_channels=4",
        "model.generator.downsample=1",
        "model.discriminator.hidden_channels=[4,8]",
    )
    loss_key = "train/loss_g"


class TestWaveNet(FamilyContract):
    overrides = (
        *TINY_WAVENET,
        "data.speakers=2",
        "data.takes=3",
        "data.length=256",
        "data.batch_size=4",
        "callbacks.sample_grid.n=2",
    )


# voxel grids are ray-cast from several views and as turntable GIFs at every validation: two
# shapes per grid keep the contracts about resume and syncs, not about rendering
FEW_RENDERS = (
    "callbacks.sample_grid.n=2",
    "callbacks.reconstruction_grid.n=2",
    "callbacks.conditional_grid.n=2",
)


class TestVoxelVAE(FamilyContract):
    overrides = (
        "model=voxel_vae",
        "data.size=16",
        "data.shapes_per_category=4",
        "data.batch_size=4",
        "model.latent_dim=8",
        "model.encoder.base_channels=4",
        "model.decoder.base_channels=4",
        *FEW_RENDERS,
    )


class TestShapeCompletion(FamilyContract):
    overrides = (
        "model=shape_completion",
        "data.size=16",
        "data.image_size=16",
        "data.shapes_per_category=4",
        "data.batch_size=4",
        "model.net.encoder_channels=4",
        "model.net.decoder_channels=4",
        "model.net.latent_dim=8",
        *FEW_RENDERS,
    )


class TestWaveGAN(FamilyContract):
    # clips of 16 * 4^2 samples; phase shuffle on, its shifts drawn from the iteration's noise
    overrides = (
        "model=wavegan",
        "data.speakers=2",
        "data.takes=3",
        "data.length=256",
        "data.batch_size=4",
        "model.latent_dim=8",
        "model.generator.model_size=4",
        "model.discriminator.model_size=4",
        "model.n_critic=2",
        "callbacks.sample_grid.n=2",
    )
    loss_key = "train/loss_g"


class TestVoxelGAN(FamilyContract):
    overrides = (
        "model=voxel_gan",
        "data.size=16",
        "data.shapes_per_category=4",
        "data.batch_size=4",
        "model.latent_dim=8",
        "model.generator.base_channels=4",
        "model.discriminator.base_channels=4",
        "model.n_critic=2",
        *FEW_RENDERS,
    )
    loss_key = "train/loss_g"
