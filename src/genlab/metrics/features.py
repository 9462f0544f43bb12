"""Feature extractors for the generation metrics, each recording what it is (provenance).

- `InceptionFeatures`: the standard FID Inception-v3, torch-fidelity's public
  `FeatureExtractorInceptionV3` with its `weights-inception-2015-12-05-6726825d.pth`
  (TensorFlow weights converted): read from a file given in config, else from torch.hub's
  cache, else downloaded the usual way when the network allows. The file's SHA-256 is recorded
  and compared with the standard file's.
- `DomainFeatures`: the penultimate layer of a genlab classifier checkpoint
  (`python -m genlab.train model=classifier`), for MNIST-like data and offline machines.
  Its metrics are suffixed `_domain` (`fid_domain`), never to be mistaken for Inception FID.

Both take images in [0, 1], (B, C, H, W), any channel count (grey <-> RGB converted).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab.metrics.registry import Features
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
)
# torch.hub names a weights file by the first hex digits of its SHA-256 (`check_hash`); a file
# whose hash does not start with these is not the standard one.
INCEPTION_SHA256_PREFIX = "6726825d"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_state_dict(state_dict: dict[str, torch.Tensor]) -> str:
    """A hash of the weights themselves (names, shapes, values), not of the file around them."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Float network inputs (B, C, H, W): grey -> RGB by repetition, RGB -> grey by luma
    weights. (genlab.data.datamodules.match_channels does the same to stored uint8 images,
    rounding, and names data.channels in its error: kept apart, as one function serving both would
    need a dtype branch and an error-message argument.)"""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1)
    if channels == 1 and c == 3:
        w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    raise GenlabError(
        f"cannot convert {c}-channel images for a {channels}-channel feature network."
    )


class FeatureExtractor(nn.Module):
    """Images in [0, 1] -> Features; `provenance()` says which network, weights and resize."""

    name: str = "?"
    suffix: str = ""
    weights_sha256: str = ""
    standard_weights: bool | None = None
    input_size: int = 0
    resize_mode: str = ""

    def extract(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        return {
            "extractor": self.name,
            "weights_sha256": self.weights_sha256,
            "standard_weights": self.standard_weights,
            "extractor_input_size": self.input_size,
            "resize": self.resize_mode,
        }


def find_inception_weights(weights_path: str | None, download: bool) -> Path:
    """The Inception weights file: `weights_path`, else torch.hub's cache, else a download."""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise GenlabError(
                f"inception_weights={str(path)!r} does not exist. Give the path of the FID "
                f"Inception weights ({INCEPTION_FILE}, from {INCEPTION_URL}), or set it to null "
                "to use torch.hub's cache / download them."
            )
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    error = "downloads disabled (download=false)"
    if download:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            log.info("downloading the FID Inception weights from %s", INCEPTION_URL)
            torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=False)
            return cached
        except Exception as exc:  # noqa: BLE001  (no network: URLError, timeouts, proxies...)
            error = f"{type(exc).__name__}: {exc}"
    raise GenlabError(
        f"the FID Inception weights are not available ({error}). Either (1) allow the download "
        f"from {INCEPTION_URL} (it lands in {cached}), or (2) put the file there or anywhere "
        "and pass its path as inception_weights=/path/to/" + INCEPTION_FILE + ". Or use the "
        "domain extractor (extractor=domain classifier_ckpt=...) trained with model=classifier."
    )


class InceptionFeatures(FeatureExtractor):
    """Inception-v3 pool features (2048) and unbiased logits (1008, for the Inception Score).

    Images are converted to RGB uint8 and resized to 299x299 inside the network: bilinear like
    TensorFlow 1.x (`antialias=False`, what torch-fidelity and pytorch-fid use, so values are
    comparable with published FIDs) or torch's antialiased bilinear (`antialias=True`,
    torchmetrics' default since 1.8). The mode is recorded with every result.
    """

    name = "inception-v3-fid"
    suffix = ""
    input_size = 299

    def __init__(
        self, *, weights_path: str | None = None, antialias: bool = False, download: bool = True
    ) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = find_inception_weights(weights_path, download)
        try:
            # torch-fidelity reads the file with weights_only=False: first make sure it holds
            # tensors only (a pickle could run code)
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise GenlabError(
                f"inception_weights={str(path)!r} could not be read as a PyTorch state_dict "
                f"({type(exc).__name__}): use torch-fidelity's {INCEPTION_FILE}."
            ) from exc
        try:
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat",
                ["2048", "logits_unbiased"],
                feature_extractor_weights_path=str(path),
            )
        except RuntimeError as exc:
            raise GenlabError(
                f"inception_weights={str(path)!r} does not fit torch-fidelity's FID Inception-v3 "
                f"({str(exc).splitlines()[0]}): use {INCEPTION_FILE}."
            ) from exc
        self.weights_path = str(path)
        self.weights_sha256 = sha256_file(path)
        self.standard_weights = self.weights_sha256.startswith(INCEPTION_SHA256_PREFIX)
        if not self.standard_weights:
            log.warning(
                "Inception weights %s are NOT the standard FID weights (sha256 %s...): values "
                "are not comparable with published FIDs.",
                path,
                self.weights_sha256[:16],
            )
        self.antialias = antialias
        self.resize_mode = "bilinear-antialias" if antialias else "bilinear-tf1 (torch-fidelity)"

    def train(self, mode: bool = True) -> InceptionFeatures:  # never leaves eval mode
        return super().train(False)

    @torch.no_grad()
    def extract(self, x: torch.Tensor) -> Features:
        x = (match_channels(x, 3).clamp(0, 1) * 255).round()  # (b, 3, h, w): 8-bit values
        if self.antialias:
            # torch's antialiased resize to 299 first (the network's own TF1-style resize is
            # then the identity), rounded again to the 8 bits the network takes
            size = (self.input_size, self.input_size)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        feats, logits = self.net(x.round().clamp(0, 255).to(torch.uint8))
        return Features(feats.float(), logits.float())


class DomainFeatures(FeatureExtractor):
    """The penultimate layer of a genlab classifier checkpoint, and its class logits."""

    name = "genlab-classifier"
    suffix = "_domain"

    def __init__(self, *, ckpt_path: str | None) -> None:
        super().__init__()
        if not ckpt_path:
            raise GenlabError(
                "the domain feature extractor needs a classifier checkpoint: train one with "
                "`python -m genlab.train model=classifier data=<your data>` and pass "
                "classifier_ckpt=RUN/checkpoints/best-....ckpt (or use extractor=inception)."
            )
        from genlab.utils.checkpoint import load_model

        try:
            model, cfg = load_model(ckpt_path, expect="Classifier")
        except GenlabError as exc:
            raise GenlabError(f"classifier_ckpt={ckpt_path!r}: {exc}") from exc
        self.net = model.net.eval().requires_grad_(False)
        self.ckpt_path = str(ckpt_path)
        self.weights_sha256 = sha256_state_dict(self.net.state_dict())
        self.standard_weights = None  # there is no standard: the hash identifies the network
        self.input_size = int(self.net.image_size)
        self.channels = int(self.net.channels)
        self.trained_on = {
            k: cfg.data.get(k) for k in ("_target_", "image_size", "channels", "binarize")
        }
        self.resize_mode = "none"

    def train(self, mode: bool = True) -> DomainFeatures:  # never leaves eval mode
        return super().train(False)

    @torch.no_grad()
    def extract(self, x: torch.Tensor) -> Features:
        x = match_channels(x, self.channels)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            self.resize_mode = "bilinear-antialias"
            size = (self.input_size, self.input_size)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        feats = self.net.features(x)
        return Features(feats.float(), self.net.head(feats).float())

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "classifier_ckpt": self.ckpt_path,
            "trained_on": self.trained_on,
        }


def build_extractor(
    kind: str,
    *,
    classifier_ckpt: str | None = None,
    inception_weights: str | None = None,
    antialias: bool = False,
    download: bool = True,
) -> FeatureExtractor:
    """`kind`: `domain` (a genlab classifier checkpoint) or `inception` (FID Inception-v3)."""
    if kind == "domain":
        return DomainFeatures(ckpt_path=classifier_ckpt)
    if kind == "inception":
        return InceptionFeatures(
            weights_path=inception_weights, antialias=antialias, download=download
        )
    raise GenlabError(f"extractor={kind!r} is not a feature extractor: use domain or inception.")
