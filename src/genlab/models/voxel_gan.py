"""The voxel GAN shape prior (3D-GAN, Wu et al. 2016), trained with WGAN-GP as ShapeHD trains
its prior (Wu et al. 2018), on the one adversarial loop (genlab.models.adversarial).

G maps z ~ N(0, I) to occupancy in [0, 1] (a sigmoid, genlab.nets.voxel_nets.VoxelGenerator);
D scores grids (VoxelDiscriminator, `norm: none` under WGAN-GP). Real grids arrive in {0, 1}
and D sees them as they are: both sides live in [0, 1]. The prior is unconditional: the
data's condition (the category, a sketch) is ignored. Its trained D is ShapeHD's
"naturalness" critic (genlab.models.voxel_models.ShapeCompletion, `prior_ckpt`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genlab.models.adversarial import AdversarialModule, Critic
from genlab.models.protocols import SampleFromPrior
from genlab.utils.errors import GenlabError


class VoxelGAN(SampleFromPrior, AdversarialModule):
    """A voxel grid prior: G z (B, latent_dim) -> (B, 1, N, N, N) occupancy in [0, 1]; D grid
    -> score (B,). Options beyond the loop's (AdversarialModule: `loss`, `n_critic`,
    `gp_weight`, `ema_decay`, optimizers, `seed`, ...): `latent_dim` (default: G's).

    Logs the loop's scalars; val/test add D's scores of real grids and of seeded fakes from the
    sampling G (`*/d_real`, `*/d_fake`, `*/loss_d`, `*/loss_g`) and the filled fraction of
    each (`*/fill_real`, `*/fill_fake`, voxels >= 0.5): a prior that draws empty or full
    grids shows it there first.

    Capabilities: `sample_latent(n)`, `decode(z)`, `sample(n)` -> (n, 1, N, N, N) in [0, 1]
    (CanSample, HasPrior; `y` is accepted and ignored).
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        latent_dim: int | None = None,
        **loop: Any,
    ) -> None:
        if getattr(generator, "output", "sigmoid") != "sigmoid":
            raise GenlabError(
                "model.generator.output must be sigmoid for the voxel GAN: D compares G's "
                "occupancies with the data's grids, both in [0, 1]."
            )
        g_size, d_size = getattr(generator, "size", None), getattr(discriminator, "size", None)
        if g_size is not None and d_size is not None and g_size != d_size:
            raise GenlabError(
                f"model.generator.size={g_size} but model.discriminator.size={d_size}: set "
                "both to ${data.size}."
            )
        super().__init__(generator=generator, discriminator=discriminator, **loop)
        self.latent_dim = int(latent_dim if latent_dim is not None else generator.latent_dim)
        self.size = g_size

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        modality = getattr(dm, "modality", None)
        if modality is None or self.size is None:
            return
        want = (1, self.size, self.size, self.size)
        if modality.kind != "voxels" or tuple(modality.shape) != want:
            raise GenlabError(
                f"model=voxel_gan draws voxel grids {want}, but the data give {modality.kind} "
                f"{tuple(modality.shape)}: use voxel data (data=voxel_shapes or "
                "shapenet_voxels) and leave model.generator.size and model.discriminator.size "
                "at ${data.size}."
            )

    # --- sampling (CanSample, HasPrior) -----------------------------------------------------
    def sample_latent(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """z ~ N(0, I) scaled by `temperature`: (n, latent_dim), on the model's device."""
        where = generator.device if generator is not None else self.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=where)
        return z.to(self.device) * temperature

    def decode(self, z: torch.Tensor, y: Any = None) -> torch.Tensor:
        """z (n, latent_dim) -> occupancy (n, 1, N, N, N) in [0, 1] from the sampling G."""
        return self.sampling_generator(z.to(self.device)).float().clamp(0.0, 1.0)

    def forward(self, z: torch.Tensor, y: Any = None) -> torch.Tensor:
        return self.decode(z, y)

    # --- the family's part of the loop -----------------------------------------------------
    def prepare_batch(self, batch: Any) -> tuple[torch.Tensor, None]:
        x, _ = batch  # (b, 1, n, n, n) in {0, 1}; the condition is not used
        return x.float(), None

    def make_fake(self, cond: Any, n: int, noise: torch.Generator) -> torch.Tensor:
        return self.generator(self.sample_latent(n, generator=noise))

    def critic(self, cond: Any) -> Critic:
        return self.discriminator  # (b, 1, n, n, n) -> (b,)

    def eval_scalars(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        real, _ = self.prepare_batch(batch)
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 7_919 + batch_idx)
        fake = self.sampling_generator(self.sample_latent(len(real), generator=gen))
        scalars = self.objective.evaluate(
            self.discriminator(real).float(), self.discriminator(fake).float()
        )
        scalars["fill_real"] = (real >= 0.5).float().mean()
        scalars["fill_fake"] = (fake >= 0.5).float().mean()
        return scalars
