"""GAN inversion: the code of a real image in a trained generator's latent space, by
optimisation with a pixel and a feature loss, started from a prior draw or from an encoder
trained on the generator's own samples (Zhu et al. 2016; the encoder-initialised variant of
Zhu et al. 2020), and the reconstruction's quality: PSNR, SSIM and an LPIPS-like feature
distance.

Works for any model with a prior to decode codes from (HasPrior: GANs, and VAEs, WAEs and the
CAAE, which also encode): the loss is back-propagated through `decode`, the model's weights
frozen.

Feature distances (`feature_distance`) follow LPIPS (Zhang et al. 2018) without its learned
weights: the activations of each nonlinearity of a network, unit-normalised over channels,
squared differences summed over channels, averaged over positions and layers. The network is
the GAN's own discriminator (`discriminator_features`), always at hand, or a genlab classifier
(`classifier_features`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genlab.models.adversarial import AdversarialModule, frozen
from genlab.models.protocols import HasPrior
from genlab.utils.errors import GenlabError

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)
INITS = ("prior", "encoder")


class ActivationFeatures:
    """The outputs of every nonlinearity of `net` when `call(x, y)` runs it on images x in
    [0, 1] (B, C, H, W): a list of (B, C_l, ...) tensors, differentiable in x."""

    def __init__(
        self,
        net: nn.Module,
        call: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
        *,
        name: str,
    ) -> None:
        self.net, self.call, self.name = net, call, name
        self.layers = [m for m in net.modules() if isinstance(m, ACTIVATIONS)]
        if not self.layers:
            raise GenlabError(f"{name} has no nonlinearity to take features from.")

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> list[torch.Tensor]:
        found: list[torch.Tensor] = []
        hooks = [
            m.register_forward_hook(lambda _m, _i, out: found.append(out)) for m in self.layers
        ]
        try:
            self.call(x, y)
        finally:
            for hook in hooks:
                hook.remove()
        return found


def discriminator_features(model: nn.Module) -> ActivationFeatures:
    """The activations of an unconditional GAN's discriminator (images mapped to its [-1, 1])."""
    if not isinstance(model, AdversarialModule) or isinstance(model.discriminator, nn.ModuleDict):
        raise GenlabError(
            f"{type(model).__name__} has no single discriminator to take features from: use "
            "a classifier's features (feature=classifier with classifier_ckpt=...) or "
            "feature_weight=0."
        )
    if getattr(model, "num_classes", 0):
        raise GenlabError(
            "the discriminator of a class-conditional GAN needs each image's class: use a "
            "classifier's features (feature=classifier with classifier_ckpt=...) or "
            "feature_weight=0."
        )
    net = model.discriminator
    return ActivationFeatures(
        net, lambda x, y: net(x.to(model.device) * 2.0 - 1.0), name="the GAN's discriminator"
    )


def classifier_features(ckpt_path: str, device: torch.device | str = "cpu") -> ActivationFeatures:
    """The activations of a genlab classifier checkpoint (`model=classifier`), read as
    weights only; grey and RGB images are converted to its channels and resized to its size."""
    from genlab.metrics.features import DomainFeatures, match_channels

    domain = DomainFeatures(ckpt_path=ckpt_path)
    net = domain.net.to(device)

    def call(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x = match_channels(x.to(device), domain.channels)
        if x.shape[-1] != domain.input_size:
            size = (domain.input_size, domain.input_size)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return net(x)

    return ActivationFeatures(net, call, name=f"the classifier {ckpt_path}")


def feature_distance(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """LPIPS-like distance between two lists of activations (one per layer, (B, C, ...)):
    per layer, unit-normalise over channels, sum the squared differences over channels,
    average over positions; then average over layers. (B,); 0 for identical activations,
    at most 4."""
    total = None
    for fa, fb in zip(a, b, strict=True):
        fa = fa.float().flatten(2) if fa.ndim > 2 else fa.float()[:, :, None]  # (b, c, s)
        fb = fb.float().flatten(2) if fb.ndim > 2 else fb.float()[:, :, None]
        fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
        fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
        d = (fa - fb).pow(2).sum(1).mean(-1)  # (b,)
        total = d if total is None else total + d
    if total is None:
        raise GenlabError("feature distance: no layers to compare.")
    return total / len(a)


@torch.no_grad()
def reconstruction_quality(
    x: torch.Tensor, x_hat: torch.Tensor, features: ActivationFeatures | None = None
) -> dict[str, float]:
    """PSNR (dB), SSIM and (with `features`) the LPIPS-like feature distance of
    reconstructions `x_hat` against images `x` (B, C, H, W) in [0, 1], means over the batch."""
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    x, x_hat = x.float().cpu(), x_hat.float().cpu().clamp(0, 1)
    psnr = peak_signal_noise_ratio(x_hat, x, data_range=1.0, reduction="none", dim=(1, 2, 3))
    out = {
        "psnr_db": float(psnr.mean()),
        "ssim": float(structural_similarity_index_measure(x_hat, x, data_range=1.0)),
        "mse": float((x_hat - x).pow(2).mean()),
    }
    if features is not None:
        out["feature_distance"] = float(feature_distance(features(x), features(x_hat)).mean())
    return out


# --- inversion -------------------------------------------------------------------------------
@dataclass
class Inverted:
    """The codes found for a batch (B, d), and the mean loss over the batch before each step
    and after the last (steps + 1,)."""

    codes: torch.Tensor
    losses: torch.Tensor


def _check_invertible(model: nn.Module) -> None:
    if not isinstance(model, HasPrior):
        raise GenlabError(
            f"{type(model).__name__} has no prior to decode codes from (sample_latent, decode): "
            "it cannot be inverted."
        )


def inversion_loss(
    model: HasPrior,
    z: torch.Tensor,
    target: torch.Tensor,
    y: torch.Tensor | None,
    *,
    features: ActivationFeatures | None,
    target_features: list[torch.Tensor] | None,
    pixel_weight: float,
    feature_weight: float,
) -> torch.Tensor:
    """Per-image loss (B,): pixel_weight * MSE + feature_weight * feature distance."""
    x_hat = model.decode(z, y).float()
    loss = pixel_weight * (x_hat - target).pow(2).flatten(1).mean(1)
    if feature_weight and features is not None and target_features is not None:
        loss = loss + feature_weight * feature_distance(features(x_hat, y), target_features)
    return loss


def invert(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    steps: int = 300,
    lr: float = 0.05,
    pixel_weight: float = 1.0,
    feature_weight: float = 0.0,
    features: ActivationFeatures | None = None,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Inverted:
    """Codes z with decode(z, y) close to images x (B, C, H, W) in [0, 1]: Adam on z,
    started from `init` (e.g. an encoder's codes) or a prior draw, minimising per image
    `pixel_weight` * pixel MSE + `feature_weight` * feature distance (`features`). The
    model's weights are frozen and it runs in eval mode (batch norm with its running
    statistics), its mode restored afterwards."""
    _check_invertible(model)
    if steps < 0 or lr <= 0:
        raise GenlabError(f"inversion steps={steps} must be >= 0 and lr={lr} > 0.")
    if feature_weight and features is None:
        raise GenlabError("inversion: feature_weight > 0 needs a feature network (features=).")
    was_training = model.training
    model.eval()
    target = x.to(model.device).float()
    try:
        with torch.enable_grad(), frozen(model):
            target_features = None
            if feature_weight:
                with torch.no_grad():
                    target_features = [f.detach() for f in features(target, y)]
            start = init if init is not None else model.sample_latent(len(x), generator=generator)
            z = start.detach().clone().to(model.device).float().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            losses = []

            def loss_of(codes: torch.Tensor) -> torch.Tensor:
                return inversion_loss(
                    model,
                    codes,
                    target,
                    y,
                    features=features,
                    target_features=target_features,
                    pixel_weight=pixel_weight,
                    feature_weight=feature_weight,
                )

            for _ in range(steps):
                loss = loss_of(z)
                losses.append(loss.detach().mean())
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()  # each image's code gets its own gradient
                opt.step()
            with torch.no_grad():
                losses.append(loss_of(z).mean())
    finally:
        model.train(was_training)
    return Inverted(z.detach(), torch.stack(losses).cpu())


def fit_inversion_encoder(
    model: nn.Module,
    *,
    steps: int = 500,
    batch_size: int = 64,
    lr: float = 1e-3,
    hidden_channels: Sequence[int] = (32, 64),
    generator: torch.Generator | None = None,
    y: Callable[[int], torch.Tensor | None] | None = None,
) -> tuple[nn.Module, torch.Tensor]:
    """An encoder E: image -> code trained on the model's own samples (z from the prior,
    x = decode(z)) to regress z (MSE): the initialisation of `invert`. Returns E (in eval
    mode, on the model's device, taking images in [0, 1]) and its loss per step (steps,)."""
    from genlab.nets.conv import ConvEncoder

    _check_invertible(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probe = model.decode(model.sample_latent(1, generator=generator), y(1) if y else None)
        channels, size = int(probe.shape[1]), int(probe.shape[-1])
        encoder = ConvEncoder(
            channels=channels,
            image_size=size,
            out_dim=int(model.latent_dim),
            hidden_channels=list(hidden_channels),
            batch_norm=True,
        ).to(model.device)
        opt = torch.optim.Adam(encoder.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            with torch.no_grad():
                z = model.sample_latent(batch_size, generator=generator)
                x = model.decode(z, y(batch_size) if y else None)
            loss = F.mse_loss(encoder(x * 2.0 - 1.0), z)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
    finally:
        model.train(was_training)
    encoder.eval().requires_grad_(False)
    return _ScaledInput(encoder), torch.stack(losses).cpu() if losses else torch.zeros(0)


class _ScaledInput(nn.Module):
    """An image encoder taking [0, 1] images (it was trained on [-1, 1])."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)
