"""The non-adversarial 3D models: the voxel VAE (a shape prior) and ShapeHD's completion step
(a 2.5D sketch -> a voxel grid), trained with voxel cross-entropy.

Voxel grids are (B, 1, N, N, N), occupancy in [0, 1] (genlab.data.modality, `voxels`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab.distributions import DiagonalGaussian, std_normal_log_prob
from genlab.losses.gan_objectives import objective as make_objective
from genlab.losses.likelihood import bits_per_dim
from genlab.metrics.shape_metrics import chamfer_batch, iou
from genlab.models.genlab_module import OptimizerFactory, SchedulerFactory, StepModule
from genlab.models.protocols import SampleFromPrior
from genlab.nets.voxel_nets import DepthEstimator
from genlab.utils.checkpoint import check_fits, checkpoint_for
from genlab.utils.errors import GenlabError


def voxel_bce(logits: torch.Tensor, x: torch.Tensor, filled_weight: float = 1.0) -> torch.Tensor:
    """Per-voxel cross-entropy -(w x log p + (1 - x) log(1 - p)), p = sigmoid(logits), with
    w = `filled_weight` on filled voxels: (B, 1, N, N, N) -> same shape. w = 1 is the
    Bernoulli negative log-likelihood; w > 1 counts missed filled voxels more (shapes fill a
    few percent of the grid, and an unweighted loss favours empty predictions)."""
    weight = None if filled_weight == 1.0 else torch.as_tensor(filled_weight, device=x.device)
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none", pos_weight=weight)


def _checkpoint_part(
    path: str, *, option: str, model: str, prefixes: tuple[str, ...]
) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a checkpoint's state dict under `prefixes`, read as weights only, and
    the model section of the config stored with them ({} when none), as data; a GenlabError
    naming `option` when the file is unusable or of another model than `model`."""
    state, model_cfg = checkpoint_for(path, option=option)
    target = str(model_cfg.get("_target_", ""))
    if target and target.rsplit(".", 1)[-1] != model:
        raise GenlabError(
            f"{option}={path!r} is a checkpoint of {target}, not of a {model}: give the "
            f"last.ckpt of a {model} run."
        )
    if not isinstance(state, dict):
        raise GenlabError(f"{option}={path!r} holds no state dict of tensors.")
    part = {k: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefixes)}
    if not part or not all(isinstance(v, torch.Tensor) for v in part.values()):
        raise GenlabError(
            f"{option}={path!r} holds no {model} weights ({', '.join(prefixes)}): give the "
            f"last.ckpt of a {model} run."
        )
    return part, model_cfg


def _check_weight(filled_weight: float) -> float:
    if not filled_weight > 0:
        raise GenlabError(f"model.filled_weight={filled_weight} must be > 0 (1 = plain BCE).")
    return float(filled_weight)


class VoxelVAE(SampleFromPrior, StepModule):
    """A VAE over voxel grids: `encoder` (B, 1, N, N, N) -> 2 * latent_dim numbers (mean and
    log-variance of q(z|x)), `decoder` z -> logits (B, 1, N, N, N), p(x|z) Bernoulli per voxel.

    Loss per shape: the voxel cross-entropy summed over voxels (filled voxels weighted by
    `filled_weight`) + beta * KL(q(z|x) || N(0, I)), averaged over the batch (`*/loss`). The
    true negative ELBO (`*/nelbo_nats`, unweighted, beta 1) is logged beside it and is the
    default metric; val/test also log the IoU of the reconstructions at 0.5 (`*/iou`).

    Capabilities (genlab.models.protocols): `encode_latent(x)`, `decode(z)` (occupancy in
    [0, 1]), `reconstruct(x)`, `sample_latent(n)`, `sample(n)` (n grids (n, 1, N, N, N) in
    [0, 1]), `elbo_terms(x)` and `log_importance_weights(x, k=...)` (nats). `y` is accepted and
    ignored everywhere (the prior is unconditional).
    """

    likelihood = "bernoulli"

    def __init__(
        self,
        *,
        encoder: nn.Module,
        decoder: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        latent_dim: int,
        filled_weight: float = 1.0,
        beta: float = 1.0,
        monitor: str = "val/nelbo_nats",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        out_dim = getattr(encoder, "out_dim", None)
        if out_dim is not None and out_dim != 2 * latent_dim:
            raise GenlabError(
                f"the voxel encoder outputs {out_dim} numbers but the VAE needs 2 x "
                f"model.latent_dim={latent_dim}: leave model.encoder.out_dim at its default."
            )
        if beta < 0:
            raise GenlabError(f"model.beta={beta} must be >= 0.")
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim, self.beta = latent_dim, beta
        self.filled_weight = _check_weight(filled_weight)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.monitor, self.monitor_mode = monitor, monitor_mode

    # --- the model ------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor, y: Any = None) -> DiagonalGaussian:
        return DiagonalGaussian.from_params(self.encoder(x))

    def decoder_logits(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., B, d) -> logits (..., B, 1, N, N, N)."""
        out = self.decoder(z.reshape(-1, z.shape[-1]))
        return out.reshape(*z.shape[:-1], *out.shape[1:])

    def nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) summed over voxels: logits (..., B, 1, N, N, N) -> (..., B)."""
        return voxel_bce(logits, x.expand_as(logits)).flatten(-4).sum(-1)

    # --- capabilities -----------------------------------------------------------------------
    def encode_latent(self, x: torch.Tensor, y: Any = None) -> torch.Tensor:
        return self.posterior(x).mean

    def decode(self, z: torch.Tensor, y: Any = None) -> torch.Tensor:
        return torch.sigmoid(self.decoder_logits(z))

    def reconstruct(self, x: torch.Tensor, y: Any = None) -> torch.Tensor:
        return self.decode(self.encode_latent(x))

    def forward(self, x: torch.Tensor, y: Any = None) -> torch.Tensor:
        return self.reconstruct(x)

    def sample_latent(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        return temperature * torch.randn(
            n, self.latent_dim, generator=generator, device=self.device
        )

    def elbo_terms(self, x: torch.Tensor, y: Any = None) -> dict[str, torch.Tensor]:
        """One-sample negative ELBO terms per shape (B,), nats: recon, kl, nelbo; and z."""
        q = self.posterior(x)
        z = q.rsample()
        recon = self.nll(self.decoder_logits(z), x)
        kl = q.kl()
        return {"recon": recon, "kl": kl, "nelbo": recon + kl, "z": z}

    def log_importance_weights(
        self,
        x: torch.Tensor,
        y: Any = None,
        *,
        k: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for k draws z_i ~ q(z | x): (k, B)."""
        q = self.posterior(x)
        z = q.rsample((k,), generator=generator)
        return -self.nll(self.decoder_logits(z), x) + std_normal_log_prob(z) - q.log_prob(z)

    # --- training -------------------------------------------------------------------------
    def step(self, batch: tuple[torch.Tensor, Any], stage: str) -> torch.Tensor:
        x, _ = batch  # (b, 1, n, n, n) in {0, 1}
        q = self.posterior(x)
        z = q.rsample()
        logits = self.decoder_logits(z)
        bce = voxel_bce(logits, x, self.filled_weight).flatten(1).sum(1)
        kl = q.kl()
        loss = (bce + self.beta * kl).mean()
        if self.logs_now(stage):
            with torch.no_grad():
                recon = bce if self.filled_weight == 1.0 else self.nll(logits, x)
                nelbo = (recon + kl).mean()
                scalars = {
                    "loss": loss.detach(),
                    "nelbo_nats": nelbo,
                    "bits_per_voxel": bits_per_dim(nelbo, x[0].numel()),
                    "recon_nats": recon.mean(),
                    "kl_nats": kl.mean(),
                }
                if stage != "train":
                    recon_x = torch.sigmoid(self.decoder_logits(q.mean))
                    scalars["iou"] = iou(recon_x, x).mean()
            bar = ("loss",) if stage == "train" else ("loss", "nelbo_nats")
            self.log_scalars(stage, scalars, batch_size=len(x), prog_bar=bar)
        return loss


# thresholds of the IoU logged in validation and test (`*/iou@0.3`, ...)
SWEEP = (0.2, 0.3, 0.4, 0.5)


class ShapeCompletion(StepModule):
    """ShapeHD's completion step: a 2.5D sketch of one view (depth + silhouette,
    (B, 2, H, W)) -> `net` -> voxel logits (B, 1, N, N, N), trained with the voxel
    cross-entropy (filled voxels weighted by `filled_weight`), averaged over voxels and shapes
    (`*/loss`). With an `estimator` (genlab.nets.voxel_nets.DepthEstimator) the input is an
    RGB render (B, 3, H, W), turned into a sketch first and trained end to end through the
    voxel loss (the full single-view pipeline; data.condition=rgb).

    val/test log the IoU at the thresholds of SWEEP (`*/iou@0.3`, ...; `*/iou` is 0.5) and test
    also the Chamfer distance at 0.5 (`test/chamfer`, genlab.metrics.shape_metrics). The
    default metric is `val/loss`: early in training the probabilities stay below 0.5 and the
    IoU at 0.5 says little (choose the threshold on the validation split, docs/3d.md).

    ShapeHD's fine-tuning (Wu et al. 2018; experiment=shapehd_shapes): with
    `naturalness_weight` w > 0 the loss adds w times the "naturalness" of the predicted
    occupancies p = sigmoid(logits), the generator loss of the prior's game (`naturalness_loss`:
    -mean D(p) under wgan_gp) through `prior_discriminator`, the D of a trained voxel GAN
    (genlab.models.voxel_gan.VoxelGAN). That D is frozen: built without gradients, kept in
    eval mode, left out of the optimizer; its weights are read from `prior_ckpt` when training
    starts (not when resuming: the run's own checkpoint holds them). `init_ckpt` starts the
    completion net (and estimator) from a trained completion run's checkpoint. Both files are
    read as untrusted (weights only, genlab.utils.checkpoint) and checked against the nets
    before the first step. Logged besides `*/loss` (the total): `*/loss_voxel` and
    `*/loss_natural`.

    Capabilities: `generate(views)` (CanGenerate: the data's conditions -> occupancy
    probabilities (B, 1, N, N, N) in [0, 1]; the model is deterministic, so `samples` > 1
    repeats the one answer) and `reconstruct3d(views)`, the same for callers that name the
    task. Before training it checks that the data's condition is what it takes (2.5D sketches,
    or RGB renders with an estimator).
    """

    def __init__(
        self,
        *,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        estimator: nn.Module | None = None,
        filled_weight: float = 1.0,
        init_ckpt: str | None = None,
        prior_discriminator: nn.Module | None = None,
        prior_ckpt: str | None = None,
        naturalness_weight: float = 0.0,
        naturalness_loss: str = "wgan_gp",
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        if estimator is not None and not isinstance(estimator, DepthEstimator):
            raise GenlabError("model.estimator must be a DepthEstimator (RGB -> 2.5D sketch).")
        if not naturalness_weight >= 0:
            raise GenlabError(f"model.naturalness_weight={naturalness_weight} must be >= 0.")
        if naturalness_weight > 0 and prior_discriminator is None:
            raise GenlabError(
                f"model.naturalness_weight={naturalness_weight} needs the prior's D: use "
                "experiment=shapehd_shapes (or model=shapehd), which builds "
                "model.prior_discriminator, and give model.prior_ckpt."
            )
        self.net, self.estimator = net, estimator
        self.filled_weight = _check_weight(filled_weight)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.monitor, self.monitor_mode = monitor, monitor_mode
        self.input_channels = 3 if estimator is not None else int(getattr(net, "in_channels", 2))
        self.init_ckpt, self.prior_ckpt = init_ckpt, prior_ckpt
        self.naturalness_weight = float(naturalness_weight)
        self.naturalness_loss = naturalness_loss
        # the prior's D: a fixed judge of how natural a shape is, never trained here
        self.prior_discriminator = prior_discriminator
        self.naturalness = None
        if prior_discriminator is not None:
            prior_discriminator.requires_grad_(False).eval()
            self.naturalness = make_objective(naturalness_loss)

    def logits(self, view: torch.Tensor) -> torch.Tensor:
        """Voxel logits (B, 1, N, N, N) of sketches (or RGB renders, with an estimator)."""
        if view.shape[1] != self.input_channels:
            what = "RGB renders (data.condition=rgb)" if self.estimator else "2.5D sketches"
            raise GenlabError(
                f"this completion model takes {what} with {self.input_channels} channels, but "
                f"was given {view.shape[1]}: use data.condition="
                f"{'rgb' if self.estimator else 'sketch'}."
            )
        if self.estimator is not None:
            view = DepthEstimator.to_sketch(self.estimator(view))
        return self.net(view)

    def reconstruct3d(self, sketch: torch.Tensor, y: Any = None) -> torch.Tensor:
        """Sketches (B, 2, H, W) (or RGB (B, 3, H, W) with an estimator) -> occupancy
        probabilities (B, 1, N, N, N)."""
        return torch.sigmoid(self.logits(sketch))

    def generate(
        self, y: torch.Tensor, *, generator: torch.Generator | None = None, samples: int = 1
    ) -> torch.Tensor:
        """Views (B, C, H, W) -> occupancy (B, 1, N, N, N); (samples, B, ...) for samples > 1
        (the same grid: the completion is deterministic)."""
        out = self.reconstruct3d(y)
        return out if samples == 1 else out.expand(samples, *out.shape)

    def forward(self, sketch: torch.Tensor, y: Any = None) -> torch.Tensor:
        return self.reconstruct3d(sketch)

    def train(self, mode: bool = True) -> ShapeCompletion:
        super().train(mode)
        if self.prior_discriminator is not None:
            self.prior_discriminator.eval()  # frozen: its batch norm (if any) never updates
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        # the frozen prior's D is no parameter of the optimizer
        return [p for p in self.parameters() if p.requires_grad]

    def on_fit_start(self) -> None:
        # The start files, read before the first step; a resumed run's checkpoint holds both
        # nets, so it reads neither file (GenlabModule.fit_resumed).
        if self.fit_resumed:
            return
        if self.init_ckpt:
            self.load_completion(self.init_ckpt)
        if self.prior_discriminator is not None and self.naturalness_weight > 0:
            self.load_prior(self.prior_ckpt)

    def setup(self, stage: str) -> None:
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer
            return
        # the data's condition, before any step: a class label or a sketch where an RGB
        # render is needed is named now, not at the first batch
        condition = getattr(trainer.datamodule, "condition", None)
        if condition is None:
            return
        want = self.input_channels
        if condition.kind != "image" or condition.shape[0] != want:
            cond = "rgb" if self.estimator is not None else "sketch"
            raise GenlabError(
                f"model=shape_completion takes {'RGB renders' if want == 3 else '2.5D sketches'}"
                f" ({want} channels) as its condition, but the data give {condition.kind} "
                f"{tuple(condition.shape)}: use data.condition={cond} (data=voxel_sketches, "
                "voxel_shapes or shapenet_voxels)."
            )

    # --- ShapeHD's fine-tuning: the two files it starts from -------------------------------
    def load_completion(self, path: str) -> None:
        """The completion net (and estimator) of a trained ShapeCompletion checkpoint."""
        parts = ("net.", "estimator.")
        state, _ = _checkpoint_part(
            path, option="model.init_ckpt", model="ShapeCompletion", prefixes=parts
        )
        own = {k: v for k, v in self.state_dict().items() if k.startswith(parts)}
        check_fits(
            own,
            state,
            path,
            option="model.init_ckpt",
            advice="the completion run must have the same model.net and model.estimator "
            "options and the same data.size and data.image_size",
        )
        self.load_state_dict(state, strict=False)
        logging.getLogger(__name__).info("completion net read from %s", path)

    def load_prior(self, path: str | None) -> None:
        """The prior's D of a trained VoxelGAN checkpoint, into `prior_discriminator`."""
        if not path:
            raise GenlabError(
                "the naturalness loss needs a trained shape prior: give model.prior_ckpt="
                "PRIOR_RUN/checkpoints/last.ckpt of a voxel GAN run (experiment=voxel_gan_shapes"
                " with the same data.size)."
            )
        state, model_cfg = _checkpoint_part(
            path, option="model.prior_ckpt", model="VoxelGAN", prefixes=("discriminator.",)
        )
        loss = model_cfg.get("loss")
        if isinstance(loss, str) and loss != self.naturalness_loss:
            raise GenlabError(
                f"model.prior_ckpt={path!r} was trained with model.loss={loss}, but "
                f"model.naturalness_loss={self.naturalness_loss}: set model.naturalness_loss="
                f"{loss} (the naturalness is the generator loss of the prior's own game)."
            )
        state = {k.removeprefix("discriminator."): v for k, v in state.items()}
        assert self.prior_discriminator is not None
        check_fits(
            self.prior_discriminator.state_dict(),
            state,
            path,
            option="model.prior_ckpt",
            advice="set model.prior_discriminator's size, base_channels and norm to the prior "
            "run's model.discriminator (and data.size to its data.size)",
        )
        self.prior_discriminator.load_state_dict(state)
        logging.getLogger(__name__).info("prior discriminator read from %s", path)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, view = batch  # (b, 1, n, n, n), (b, 2 or 3, h, w)
        logits = self.logits(view)
        loss = voxel_loss = voxel_bce(logits, x, self.filled_weight).mean()
        natural = None
        if self.naturalness is not None and self.naturalness_weight > 0:
            # the prior's generator loss on the predicted occupancies; D is frozen (no
            # requires_grad): the gradient reaches the completion net only
            natural = self.naturalness.generator_loss(
                self.prior_discriminator, torch.sigmoid(logits)
            )
            loss = voxel_loss + self.naturalness_weight * natural
        if self.logs_now(stage):
            scalars: dict[str, torch.Tensor] = {"loss": loss.detach()}
            if natural is not None:
                scalars["loss_voxel"] = voxel_loss.detach()
                scalars["loss_natural"] = natural.detach()
            if stage != "train":
                with torch.no_grad():
                    p = torch.sigmoid(logits)
                    for t in SWEEP:
                        scalars[f"iou@{t:g}"] = iou(p, x, t).mean()
                    scalars["iou"] = scalars["iou@0.5"]
                    if stage == "test":
                        scalars["chamfer"] = chamfer_batch(p.cpu(), x.cpu()).mean()
            self.log_scalars(stage, scalars, batch_size=len(x), prog_bar=("loss",))
        return loss
