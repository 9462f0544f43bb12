"""Image-to-image translation: pix2pix, SRGAN super-resolution and context-encoder inpainting,
one training loop with its variants set by config.

G maps a source image to an image; D judges images, conditioned on the source when it was
built with `source_channels` > 0 (pix2pix's conditional PatchGAN sees source and image stacked;
SRGAN's D sees the image alone). Batches are `(target, source)` (genlab.data.paired). Each
iteration (= one step everywhere, as in the GAN family):

1. unless `adv_weight` = 0: `n_critic` D steps, (source, target) labelled real and
   (source, G(source)) fake;
2. one G step with D frozen (no gradient, no update):
   `loss_G = adv_weight * adv + recon_weight * pixel(G(source), target)
   [+ feature_weight * feature(G(source), target)]`;
3. the EMA copy of G moves; schedulers step.

This is the one adversarial loop (genlab.models.adversarial) with a reconstruction term: the
counted G step and uncounted D steps, the frozen D, EMA, per-net gradient clipping, the
divergence stop, collapse signs and DDP settings are the loop's.

Variants (conf/model/): `pix2pix` (U-Net G, conditional PatchGAN, L1 with lambda = 100),
`srgan` (SRResNet G, global D, pixel MSE, adv_weight 1e-3, and a feature loss from a
user-supplied network, `feature_ckpt`), `inpaint` (U-Net G on the holed image and its mask, its
output pasted into the hole (`composite`), the pixel loss on the hole only
(`recon_region=hole`), conditional PatchGAN). `adv_weight=0` is each paper's regression
baseline: D is never run nor trained.

Scales: data in [0, 1], nets in [-1, 1] (Tanh). The pixel and feature losses are taken in the
nets' units, as pix2pix's lambda = 100 assumes (an L1 in [0, 1] units is half as large);
`translate()` and every val/test metric use [0, 1].

Noise: G's only noise is dropout, drawn from the global RNG. Each iteration's G forward runs
with that RNG seeded by (seed, step, rank) and restored afterwards (`torch.random.fork_rng`),
so the dropout of an iteration does not depend on what ran before it and a resumed run draws
exactly the masks of an uninterrupted one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab.losses.gan_objectives import per_image
from genlab.losses.translation_losses import feature_loss, pixel_loss, psnr_db
from genlab.models.adversarial import AdversarialModule
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

REGIONS = ("all", "hole")


__all__ = ["FeatureNet", "Translation", "per_image"]


class FeatureNet:
    """A fixed network mapping images in [0, 1] to features (B, ...), for SRGAN's content loss.

    `path` is a genlab classifier checkpoint (`python -m genlab.train model=classifier`: its
    penultimate layer, the same features as the `_domain` generation metrics; read as weights
    only), or, with `trust_code=True` (`model.trust_feature_code=true`), a `torch.export`
    program (`torch.export.save`, e.g. an exported VGG; export it with a dynamic batch
    dimension) or a TorchScript file. Those two are programs, as trusted as code: loading a
    `.pt2` unpickles parts of it and resolves its ops by name from anything importable under
    `torch` (torch 2.14), and a scripted net can read and write files while it trains
    (`torch.from_file(..., shared=True)`); genlab tells which a file is from its zip directory
    alone and refuses both without the option. Never downloaded; not part of the model's
    state_dict: it is loaded for training only.
    """

    def __init__(self, path: str, *, trust_code: bool = False) -> None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise GenlabError(
                f"model.feature_ckpt={path!r} does not exist. Give a genlab classifier checkpoint "
                "(python -m genlab.train experiment=classifier_mnist), a torch.export program or "
                "a TorchScript file, or set model.feature_weight=0 and model.feature_ckpt=null."
            )
        self.channels: int | None = None
        self.size: int | None = None
        kind = program_kind(file)
        if kind is not None:
            if not trust_code:
                raise GenlabError(
                    f"model.feature_ckpt={path!r} is a {kind} file: a program, as trusted as "
                    "code (loading or running it can read and write files and run anything with "
                    "your permissions), so genlab does not load it by default. Set "
                    "model.trust_feature_code=true only for a file you made or trust as you "
                    "trust code, or give a genlab classifier checkpoint, which is read as "
                    "weights only (docs/translation.md)."
                )
            log.warning(
                "model.feature_ckpt=%s is a %s file, loaded because model.trust_feature_code="
                "true: it is a program and runs with your permissions, as trusted as code",
                path,
                kind,
            )
            self.net, self.kind = _load_program(file, kind), kind
            self._module: nn.Module = self.net  # type: ignore[assignment]
        else:
            from genlab.metrics.features import DomainFeatures

            domain = DomainFeatures(ckpt_path=str(file))  # a GenlabError if not a classifier
            self.net, self.kind = domain.net.features, "genlab-classifier"
            self.channels, self.size = domain.channels, domain.input_size
            self._module = domain.net
        for p in self._module.parameters():
            p.requires_grad_(False)

    def to(self, device: torch.device) -> FeatureNet:
        self._module.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] -> features; differentiable in x."""
        if self.channels is not None and x.shape[1] != self.channels:
            from genlab.metrics.features import match_channels

            x = match_channels(x, self.channels)
        if self.size is not None and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        return self.net(x)


def program_kind(file: Path) -> str | None:
    """ "torch.export" or "TorchScript" when `file` is one of those programs, told from its zip
    directory without loading anything (torch.load's own test for TorchScript is a
    `constants.pkl` record; torch.export archives have `archive_format` or, in the older
    layout, `serialized_exported_program.json`); None otherwise."""
    import zipfile

    try:
        with zipfile.ZipFile(file) as archive:
            names = [name.rsplit("/", 1)[-1] for name in archive.namelist()]
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if "constants.pkl" in names:
        return "TorchScript"
    if "archive_format" in names or "serialized_exported_program.json" in names:
        return "torch.export"
    return None


def _load_program(file: Path, kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network of a trusted torch.export or TorchScript file."""
    try:
        if kind == "torch.export":
            return torch.export.load(str(file)).module()
        with warnings.catch_warnings():  # TorchScript is deprecated, its files still load
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(file), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001  (any failure of the loader: one message)
        raise GenlabError(
            f"model.feature_ckpt={str(file)!r} looks like a {kind} file but does not load "
            f"({type(exc).__name__}: {str(exc)[:200]}). Save it again with "
            f"{'torch.export.save' if kind == 'torch.export' else 'torch.jit.save'}."
        ) from exc


class Translation(AdversarialModule):
    """Source image (B, C_s, H_s, W_s) -> image (B, C, H, W), trained adversarially with a
    reconstruction term on the one adversarial loop; see the module doc.

    Options: `adv_weight` (lambda_adv; 0 = pure regression, D untouched), `recon_weight`
    (lambda), `recon_loss` (`l1` | `mse`), `recon_region` (`all` | `hole`: the pixel loss on the
    hole of masked sources only), `composite` (keep the known pixels of a masked source, G
    fills the hole), `feature_weight` with `feature_ckpt` (SRGAN's content loss; a TorchScript or
    torch.export file only with `trust_feature_code`, see FeatureNet), plus the loop's options
    (genlab.models.adversarial: `loss`, `n_critic`, `label_smoothing`, `gp_weight`,
    `ema_decay`, clipping, schedulers). `channels`, `image_size`, `source_channels` and `scale`
    describe the images (`source_shape`); they are checked against the data before training.

    Logs `train/loss_g`, `loss_g_adv`, `loss_g_recon` (`loss_g_feature`), `loss_d`, `d_real`,
    `d_fake`, and under `val/` and `test/` the `l1` and `psnr_db` of the sampling G's outputs
    against the targets ([0, 1] units; on the hole for masked sources) and D's view of them.
    """

    fresh_fakes = False  # one G pass per iteration (its dropout is the iteration's noise)

    def __init__(
        self,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        channels: int,
        image_size: int,
        source_channels: int,
        scale: int = 1,
        recon_weight: float = 100.0,
        recon_loss: str = "l1",
        recon_region: str = "all",
        composite: bool = False,
        feature_weight: float = 0.0,
        feature_ckpt: str | None = None,
        trust_feature_code: bool = False,
        **loop: Any,
    ) -> None:
        super().__init__(generator=generator, discriminator=discriminator, **loop)
        for name, weight in (("recon_weight", recon_weight), ("feature_weight", feature_weight)):
            if weight < 0:
                raise GenlabError(f"model.{name}={weight} must be >= 0.")
        if not (self.adv_weight or recon_weight or feature_weight):
            raise GenlabError(
                "model.adv_weight, model.recon_weight and model.feature_weight are all 0: "
                "the generator would have nothing to learn from."
            )
        if recon_region not in REGIONS:
            raise GenlabError(f"model.recon_region={recon_region!r}: use one of {REGIONS}.")
        if recon_loss not in ("l1", "mse"):
            raise GenlabError(f"model.recon_loss={recon_loss!r}: use l1 or mse.")
        if bool(feature_weight) != bool(feature_ckpt):
            raise GenlabError(
                f"model.feature_weight={feature_weight} and model.feature_ckpt={feature_ckpt!r}: "
                "the feature loss needs both (a weight > 0 and the feature network's file), or "
                "neither."
            )
        self.uses_hole = composite or recon_region == "hole"
        if self.uses_hole and source_channels != channels + 1:
            raise GenlabError(
                f"model.composite / model.recon_region=hole need masked sources (the image and "
                f"its mask: {channels} + 1 channels), but model.source_channels="
                f"{source_channels}. Use a mask pairing (data/pairing=center_mask, rectangles "
                "or strokes) with model=inpaint."
            )
        d_source = int(getattr(discriminator, "source_channels", 0))
        if d_source not in (0, source_channels):
            raise GenlabError(
                f"model.discriminator.source_channels={d_source} but the sources have "
                f"{source_channels} channels: set it to ${{model.source_channels}} (a "
                "conditional D) or 0 (D sees the output alone)."
            )
        self.channels, self.image_size = int(channels), int(image_size)
        self.source_channels, self.scale = int(source_channels), int(scale)
        if self.image_size % self.scale:
            raise GenlabError(
                f"model.scale={scale} does not divide model.image_size={image_size}."
            )
        self.recon_weight = float(recon_weight)
        self.recon_loss, self.recon_region, self.composite = recon_loss, recon_region, composite
        self.feature_weight, self.feature_ckpt = float(feature_weight), feature_ckpt
        self.trust_feature_code = bool(trust_feature_code)
        self.feature_net: FeatureNet | None = None

    @property
    def source_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the sources `translate` expects at the training size."""
        side = self.image_size // self.scale
        return (self.source_channels, side, side)

    # --- translating (CanTranslate) ---------------------------------------------------------
    def translate(self, source: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sources (B, C_s, H_s, W_s) in [0, 1] -> outputs (B, C, H, W) in [0, 1] from the
        sampling G (the EMA copy when there is one). `y` is ignored: the model is conditioned
        on the source image, not on a class."""
        source = source.to(self.device, torch.float32)
        out = self._generate(self.sampling_generator, source)
        return ((out.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def forward(self, source: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.translate(source, y)

    def generate(
        self, y: torch.Tensor, *, generator: torch.Generator | None = None, samples: int = 1
    ) -> torch.Tensor:
        """CanGenerate: the sources are the condition; the sampling G is deterministic in
        eval mode, so several draws are the same output."""
        out = self.translate(y)
        return out if samples == 1 else out.expand(samples, *out.shape)

    def _generate(self, net: nn.Module, source: torch.Tensor) -> torch.Tensor:
        """G's output in [-1, 1] for sources in [0, 1]; the known pixels pasted back when
        `composite` (the last source channel is the hole)."""
        out = net(source * 2.0 - 1.0)  # (b, c, h, w)
        if self.composite:
            hole = source[:, -1:].to(out.dtype)
            known = source[:, :-1].to(out.dtype) * 2.0 - 1.0
            out = hole * out + (1.0 - hole) * known
        return out

    def _d(self, image: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """D's logits for images in [-1, 1] given sources in [0, 1]: (B, ...)."""
        return self.discriminator(image, source * 2.0 - 1.0)

    def _pair(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        target, source = batch
        if not isinstance(source, torch.Tensor) or source.ndim != 4:
            got = tuple(source.shape) if isinstance(source, torch.Tensor) else type(source)
            raise GenlabError(
                "a translation model trains on (target, source image) batches, but this data "
                f"gives labels {got} in the source slot. Derive the sources with a pairing "
                "(data/pairing=edges, sr_x4, center_mask, strokes, greyscale, ...) or read pairs "
                "from files with data=paired."
            )
        return target, source

    def _region(self, source: torch.Tensor) -> torch.Tensor | None:
        return source[:, -1:] if self.recon_region == "hole" else None

    @contextmanager
    def _iteration_rng(self) -> Iterator[None]:
        """The global RNG seeded by (seed, step, rank) inside, restored on exit (module doc)."""
        key = (self.seed * 1_000_003 + self.global_step) * 1_009 + self.global_rank * 31 + 17
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(key & 0x7FFF_FFFF_FFFF_FFFF)
            yield

    # --- checks before training -------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None:
            # the data's condition contract: pairs are images conditioned on a source image
            condition = getattr(dm, "condition", None)
            if condition is None or condition.kind != "image":
                raise GenlabError(
                    f"the data ({getattr(dm, 'name', type(dm).__name__)}) gives "
                    f"{'single images' if condition is None else condition.kind + ' conditions'}"
                    ", but image-to-image translation needs pairs: derive the sources with a "
                    "pairing (data/pairing=edges, sr_x4, sr_x2, center_mask, rectangles, "
                    "strokes or greyscale; with `+` for models other than pix2pix, srgan and "
                    "inpaint) or read pairs from files with data=paired."
                )
            data_source = tuple(condition.shape)
            if data_source != self.source_shape:
                raise GenlabError(
                    f"the data's sources are {data_source} (channels, height, width) but the "
                    f"model expects {self.source_shape} (model.source_channels, and "
                    f"model.image_size / model.scale): build the model from the data "
                    "(${data.channels}, ${data.image_size}, the pairing's factor)."
                )
            if tuple(dm.image_shape) != (self.channels, self.image_size, self.image_size):
                raise GenlabError(
                    f"the data's images are {tuple(dm.image_shape)} but the model makes "
                    f"{(self.channels, self.image_size, self.image_size)}: set model.channels="
                    "${data.channels} and model.image_size=${data.image_size}."
                )
            if self.uses_hole and getattr(getattr(dm, "pairing", None), "kind", "") != "mask":
                raise GenlabError(
                    "model.composite / model.recon_region=hole need masked sources: use a mask "
                    "pairing (data/pairing=center_mask, rectangles or strokes)."
                )
        self._check_generator()
        if stage == "fit" and self.feature_ckpt and self.feature_net is None:
            self.feature_net = FeatureNet(self.feature_ckpt, trust_code=self.trust_feature_code)

    def _check_generator(self) -> None:
        """One forward pass on zeros: G must turn sources of `source_shape` into images."""
        g = self.generator
        was_training = g.training
        g.eval()
        try:
            with torch.no_grad():
                out = g(torch.zeros(2, *self.source_shape, device=self.device))
        finally:
            g.train(was_training)
        want = (2, self.channels, self.image_size, self.image_size)
        if tuple(out.shape) != want:
            raise GenlabError(
                f"model.generator turns sources of shape {self.source_shape} into "
                f"{tuple(out.shape[1:])}, not the data's {want[1:]}: size it from the data "
                "(in_channels ${model.source_channels}, out_channels ${data.channels}, scale "
                "${model.scale})."
            )

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.feature_net is not None:
            self.feature_net.to(self.device)

    # --- the family's part of the loop -----------------------------------------------------
    def prepare_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        target, source = self._pair(batch)
        return target * 2.0 - 1.0, source  # (b, c, h, w) in [-1, 1]; sources in [0, 1]

    def make_fake(self, cond: torch.Tensor, n: int, noise: torch.Generator) -> torch.Tensor:
        with self._iteration_rng():  # G's dropout: the iteration's own
            return self._generate(self.generator, cond)

    def critic(self, cond: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda image: self._d(image, cond)  # (b, ...) patch logits

    def training_critic(
        self, cond: torch.Tensor, noise: torch.Generator
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """D behind the augmentation. A conditional D judges (image, source) pairs, so one
        geometric transform must move both: the source (in D's units, at the image's size) is
        stacked after the image, the stack augmented in one call (colour transforms on the
        image's channels only, `colour_channels`), and split again."""
        if self.augment is None or not int(getattr(self.discriminator, "source_channels", 0)):
            return super().training_critic(cond, noise)
        augment, channels = self.augment, self.channels

        def critic(image: torch.Tensor) -> torch.Tensor:
            source = cond.to(image.dtype) * 2.0 - 1.0
            if source.shape[-2:] != image.shape[-2:]:
                source = F.interpolate(source, size=image.shape[-2:], mode="nearest")
            both = augment(
                torch.cat([image, source], 1), generator=noise, colour_channels=channels
            )
            return self.discriminator(both[:, :channels], both[:, channels:])  # (b, ...)

        return critic

    def extra_generator_terms(
        self, fake: torch.Tensor, real: torch.Tensor, cond: torch.Tensor
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """The reconstruction (always logged, zero when its weight is) and feature terms,
        batch means; `fake` and `real` in [-1, 1], `cond` the sources in [0, 1]."""
        zero = fake.new_zeros((), dtype=torch.float32)
        recon = zero
        if self.recon_weight:
            recon = pixel_loss(fake, real, self.recon_loss, self._region(cond)).mean()
        terms = {"recon": (self.recon_weight, recon)}
        if self.feature_net is not None:
            feats = self.feature_net((fake + 1) / 2), self.feature_net((real + 1) / 2)
            feature = feature_loss(feats[0], feats[1].detach()).mean()
            terms["feature"] = (self.feature_weight, feature)
        return terms

    def divergence_advice(self) -> str:
        return (
            "Lower the learning rates (model.optimizer_g.lr, model.optimizer_d.lr), add "
            "model.gradient_clip_val=1.0, or lower model.adv_weight."
        )

    # --- evaluation -------------------------------------------------------------------------
    def eval_scalars(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        target, source = self._pair(batch)
        out = self.translate(source)  # (b, c, h, w) in [0, 1]
        region = source[:, -1:] if self.uses_hole else None
        scalars = {
            "l1": pixel_loss(out, target, "l1", region).mean(),
            "psnr_db": psnr_db(out, target, region).mean(),
        }
        if self.adversarial:
            real_s = self._d(target * 2.0 - 1.0, source).float()
            fake_s = self._d(out * 2.0 - 1.0, source).float()
            seen = self.objective.evaluate(real_s, fake_s)
            scalars.update({k: seen[k] for k in ("loss_d", "d_real", "d_fake")})
        return scalars
