"""Generation metrics on feature sets with known answers (closed forms and invariants), and the
Inception path with a locally made random-weights file (flagged non-standard)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from genlab.metrics import distances
from genlab.metrics.features import (
    INCEPTION_FILE,
    FeatureExtractor,
    InceptionFeatures,
    find_inception_weights,
)
from genlab.metrics.generation import fake_features, measure, real_features
from genlab.metrics.registry import Features, compute
from genlab.utils.errors import GenlabError


def gaussian(
    n: int, d: int, *, mean: float = 0.0, std: float = 1.0, seed: int = 0
) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * std + mean


def test_fid_of_a_set_with_itself_is_zero():
    x = gaussian(300, 32)
    assert distances.fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_closed_form_for_gaussians():
    # N(0, I) vs N(m 1, s^2 I) in d dims: FID = d m^2 + d (1 - s)^2
    d, m, s = 4, 0.5, 2.0
    a, b = gaussian(40_000, d, seed=1), gaussian(40_000, d, mean=m, std=s, seed=2)
    assert distances.fid(a, b) == pytest.approx(d * m**2 + d * (1 - s) ** 2, rel=0.03)


def test_fid_agrees_with_torchmetrics_on_the_same_features():
    class Flatten(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1).double()

    a, b = gaussian(200, 8, seed=3), gaussian(200, 8, mean=0.3, std=1.5, seed=4)
    ref = FrechetInceptionDistance(feature=Flatten(), input_img_size=(2, 2, 2))
    ref.set_dtype(torch.float64)
    ref.update(a.view(-1, 2, 2, 2), real=True)
    ref.update(b.view(-1, 2, 2, 2), real=False)
    assert distances.fid(a, b) == pytest.approx(float(ref.compute()), rel=1e-6)


def test_kid_agrees_with_torchmetrics_adapts_subset_size_and_separates():
    class Flatten(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1).double()

    a, b = gaussian(60, 8, seed=5), gaussian(60, 8, mean=0.2, seed=6)
    mean, std, size = distances.kid(a, b, subset_size=1000, n_subsets=3)
    assert size == 60 and std == pytest.approx(0.0, abs=1e-12)  # whole sets: every subset alike
    ref = KernelInceptionDistance(feature=Flatten(), subset_size=60, subsets=1)
    ref.update(a.view(-1, 2, 2, 2), real=True)
    ref.update(b.view(-1, 2, 2, 2), real=False)
    assert mean == pytest.approx(float(ref.compute()[0]), rel=1e-5)

    same, _, _ = distances.kid(gaussian(400, 8, seed=7), gaussian(400, 8, seed=8), subset_size=100)
    far, _, _ = distances.kid(
        gaussian(400, 8, seed=7), gaussian(400, 8, mean=1.0, seed=8), subset_size=100
    )
    assert far > 20 * abs(same)
    with pytest.raises(GenlabError, match="n_samples"):
        distances.kid(a[:1], b)


def test_inception_score_closed_forms():
    k = 10
    assert distances.inception_score(torch.zeros(100, k), splits=2)[0] == pytest.approx(1.0)
    confident = torch.full((100, k), -1e4)
    confident[torch.arange(100), torch.arange(100) % k] = 0.0  # sure of one class, all classes
    assert distances.inception_score(confident, splits=1)[0] == pytest.approx(k, rel=1e-6)


def two_modes(n: int, seed: int) -> torch.Tensor:
    """Half the points around -10, half around +10 (in every dimension)."""
    x = gaussian(n, 4, seed=seed)
    x[: n // 2] -= 10
    x[n // 2 :] += 10
    return x


def test_precision_recall_density_coverage_on_known_overlap():
    real = two_modes(200, seed=8)
    same = compute(["precision_recall", "density_coverage"], Features(real), Features(real))
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0

    far = compute(["precision_recall", "density_coverage"], Features(real), Features(real + 1000))
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}

    # fakes = the real points of one of the two modes: all realistic, half the data missed
    one_mode = compute(
        ["precision_recall", "density_coverage"], Features(real), Features(real[100:])
    )
    assert one_mode["precision"] == 1.0 and one_mode["recall"] == 0.5
    assert one_mode["coverage"] == 0.5

    # an independent draw of the same distribution: high on all four
    fresh = compute(
        ["precision_recall", "density_coverage"], Features(real), Features(two_modes(200, 10))
    )
    assert min(fresh["precision"], fresh["recall"], fresh["coverage"]) > 0.8
    assert 0.6 < fresh["density"] < 1.4


def test_registry_names_suffix_and_errors():
    real, fake = Features(gaussian(50, 4, seed=11)), Features(gaussian(50, 4, seed=12))
    out = compute(["fid", "kid"], real, fake, suffix="_domain", kid_subsets=5)
    assert set(out) == {"fid_domain", "kid_domain", "kid_std_domain", "kid_subset_size_domain"}
    with pytest.raises(GenlabError, match="unknown generation metric"):
        compute(["fid", "fjd"], real, fake)
    with pytest.raises(GenlabError, match="class logits"):
        compute(["is"], real, fake)
    with pytest.raises(GenlabError, match="nearest_k"):
        compute(["precision_recall"], Features(real.features[:3]), fake)


def test_inception_weights_missing_names_both_options(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(GenlabError) as err:
        find_inception_weights(None, download=False)
    msg = str(err.value)
    assert "inception_weights=" in msg and "download" in msg and INCEPTION_FILE in msg
    with pytest.raises(GenlabError, match="does not exist"):
        find_inception_weights(str(tmp_path / "nope.pth"), download=False)


def random_inception_state_dict() -> dict[str, torch.Tensor]:
    """The FID Inception-v3's weights, randomly initialised: a stand-in for the real file,
    which cannot be downloaded here. torch-fidelity's constructor insists on loading a
    weights file; it is given an empty one and its loading skipped."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        net = Unloaded("random", ["2048"], feature_extractor_weights_path=str(empty))
    return net.state_dict()


def test_inception_path_with_local_random_weights_is_flagged_non_standard(tmp_path):
    weights = tmp_path / INCEPTION_FILE  # the standard name, but not the standard content
    torch.save(random_inception_state_dict(), weights)
    extractor = InceptionFeatures(weights_path=str(weights), download=False)
    assert extractor.standard_weights is False

    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # grey, small
    real = extractor.extract(x)  # Inception on CPU is slow: 2 images, used as both sets
    fake = real
    assert real.features.shape == (2, 2048) and real.logits.shape == (2, 1008)
    result = measure(
        ["fid", "is"],
        extractor,
        real,
        fake,
        real_info={"dataset": "random", "split": "test", "n_real": 2, "image_size": 28},
        fake_info={"n_fake": 2},
        options={"is_splits": 1},
    )
    prov = result["provenance"]
    assert set(result["values"]) >= {"fid", "is"}  # Inception metrics carry no suffix
    assert prov["standard_weights"] is False and len(prov["weights_sha256"]) == 64
    assert prov["extractor"] == "inception-v3-fid" and prov["extractor_input_size"] == 299
    assert prov["resize"].startswith("bilinear-tf1")
    assert math.isfinite(result["values"]["fid"])

    # the same features as torchmetrics' FID Inception on the same weights: identical with the
    # TF1 resize; with antialiasing within 1 % (torch-fidelity's network takes 8-bit images,
    # so the resized image is rounded once more)
    from torchmetrics.image.fid import NoTrainInceptionV3

    x8 = (x.expand(-1, 3, -1, -1) * 255).round().to(torch.uint8)
    for antialias in (False, True):
        ref = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(weights),
            antialias=antialias,
        )
        ours = InceptionFeatures(weights_path=str(weights), antialias=antialias, download=False)
        with torch.no_grad():
            want, got = ref(x8), ours.extract(x).features
        scale = want.abs().max()
        assert (got - want).abs().max() <= (0.01 if antialias else 1e-6) * scale, antialias

    broken = tmp_path / "broken.pth"
    torch.save({"fc.weight": torch.zeros(3)}, broken)
    with pytest.raises(GenlabError, match="does not fit"):
        InceptionFeatures(weights_path=str(broken), download=False)


def test_inception_score_does_not_depend_on_order():
    # a class-sorted set: unshuffled splits would each see one class and score ~1
    k, n = 10, 200
    logits = torch.full((n, k), -1e4)
    logits[torch.arange(n), torch.arange(n) * k // n] = 0.0
    assert distances.inception_score(logits, splits=10)[0] > 0.6 * k  # 20 per part: ~7.8


class PixelFeatures(FeatureExtractor):
    """Raw pixels as features: a real (if crude) extractor for testing the feature pass."""

    name, suffix, weights_sha256, resize_mode = "pixels", "_pixels", "0" * 64, "none"

    def extract(self, x: torch.Tensor) -> Features:
        return Features(x.flatten(1))


def test_real_feature_cache_and_time_budget(tmp_path):
    """The features are those of a fixed random choice of N images of the split; a second call
    reads them from the cache file (a tampered file's content comes back, so the read branch
    ran); an unreadable file is recomputed and rewritten; another split is another entry."""
    from genlab.data import MNIST5k

    data = MNIST5k(data_dir=str(tmp_path), image_size=28, channels=1)
    first, info = real_features(PixelFeatures(), data, "test", 64, cache_dir=tmp_path / "c")
    chosen = sorted(torch.randperm(500, generator=torch.Generator().manual_seed(0))[:64].tolist())
    test = data.dataset("test")
    assert torch.equal(first.features, torch.stack([test[i][0].flatten() for i in chosen]))
    cache = Path(info["real_cache"])
    assert cache.is_file() and cache.parent == tmp_path / "c" and info["n_real"] == 64

    tampered = first.features + 1.0
    torch.save({"features": tampered, "logits": None}, cache)
    again, info2 = real_features(PixelFeatures(), data, "test", 64, cache_dir=tmp_path / "c")
    assert info2["real_cache"] == str(cache) and info2["n_real"] == 64
    assert torch.equal(again.features, tampered)  # read from the file, not recomputed

    cache.write_bytes(b"not a torch file")
    fresh, _ = real_features(PixelFeatures(), data, "test", 64, cache_dir=tmp_path / "c")
    assert torch.equal(fresh.features, first.features)
    assert torch.equal(torch.load(cache, weights_only=True)["features"], first.features)

    other, info3 = real_features(PixelFeatures(), data, "val", 64, cache_dir=tmp_path / "c")
    assert info3["real_cache"] != info["real_cache"]  # another split, another entry
    uncached, info4 = real_features(PixelFeatures(), data, "test", 64)
    assert "real_cache" not in info4 and torch.equal(uncached.features, first.features)

    def sample(b: int, gen: torch.Generator) -> torch.Tensor:
        return torch.rand(b, 1, 28, 28, generator=gen)

    fake, fake_info = fake_features(PixelFeatures(), sample, 100, batch_size=16, time_budget_s=0.0)
    assert fake_info["n_fake"] == len(fake) == 16  # stopped after the first batch
    # ... but never below min_n (10) images: three batches of 4
    small, small_info = fake_features(PixelFeatures(), sample, 100, batch_size=4, time_budget_s=0)
    assert small_info["n_fake"] == len(small) == 12
    full, full_info = fake_features(PixelFeatures(), sample, 100, batch_size=16)
    assert full_info["n_fake"] == 100 and torch.equal(full.features[:16], fake.features)
    assert full_info["fake_image_shape"] == [1, 28, 28]
    # one generator seeded by `seed` draws every batch in turn
    gen = torch.Generator().manual_seed(0)
    want = torch.cat([torch.rand(b, 1, 28, 28, generator=gen) for b in [16] * 6 + [4]])
    assert torch.equal(full.features, want.flatten(1))
