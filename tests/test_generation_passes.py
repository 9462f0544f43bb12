"""The feature passes behind every generation metric, in closed form on raw-pixel features:
which real images, in what cache file, fakes clamped and drawn from one seeded generator,
logits carried along, the provenance of a measurement, the evaluator reading the real
features once, and the domain-mismatch warning's text."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from genlab.data import MNIST5k
from genlab.metrics.features import FeatureExtractor
from genlab.metrics.generation import (
    GenerationEvaluator,
    MetricSpec,
    dataset_descriptor,
    domain_mismatch,
    fake_features,
    measure,
    real_features,
)
from genlab.metrics.registry import Features
from genlab.utils.errors import GenlabError


class Pixels(FeatureExtractor):
    """Raw pixels as features and the mean pixel of 3 bands as 'logits'; counts its calls."""

    name, suffix, weights_sha256, resize_mode, input_size = "pixels", "_px", "ab" * 32, "none", 0

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def extract(self, x: torch.Tensor) -> Features:
        self.calls += 1
        flat = x.flatten(1)
        return Features(flat, torch.stack([flat[:, i::3].mean(1) for i in range(3)], 1))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> MNIST5k:
    dm = MNIST5k(data_dir=str(tmp_path_factory.mktemp("d")), image_size=28, channels=1)
    dm.setup()
    return dm


def test_dataset_descriptor_names_every_option(data):
    assert dataset_descriptor(data, "val") == {
        "dataset": "mnist_5k",
        "class": "genlab.data.mnist.MNIST5k",
        "split": "val",
        "image_size": 28,
        "channels": 1,
        "binarize": None,
        "split_seed": data.split_seed,
        "data_dir": data.data_dir,
    }

    assert (
        dataset_descriptor(MNIST5k(image_size=28, channels=1, binarize="static"), "val")[
            "binarize"
        ]
        == "static"
    )

    class Bare:
        pass

    assert dataset_descriptor(Bare(), "test") == {
        "dataset": "Bare",
        "class": f"{__name__}.test_dataset_descriptor_names_every_option.<locals>.Bare",
        "split": "test",
        "image_size": None,
        "channels": None,
        "binarize": None,
        "split_seed": None,
        "data_dir": None,
    }


def test_real_features_cache_file_and_logits(data, tmp_path):
    extractor = Pixels()
    cache = tmp_path / "a" / "b"  # made on first use, parents too
    feats, info = real_features(extractor, data, "test", 30, cache_dir=cache, batch_size=7)
    chosen = sorted(torch.randperm(500, generator=torch.Generator().manual_seed(0))[:30].tolist())
    x = torch.stack([data.dataset("test")[i][0] for i in chosen])
    want = extractor.extract(x)
    assert torch.equal(feats.features, want.features) and torch.equal(feats.logits, want.logits)
    assert extractor.calls == 5 + 1  # ceil(30 / 7) batches (+ the call above)
    described = {**dataset_descriptor(data, "test"), "n_real": 30}
    key_src = json.dumps(
        {
            **described,
            **extractor.provenance(),
            "indices": hashlib.sha256(str(chosen).encode()).hexdigest(),
        },
        sort_keys=True,
        default=str,
    )
    name = f"mnist_5k-test-n30-{hashlib.sha256(key_src.encode()).hexdigest()[:20]}.pt"
    assert info == {**described, "real_cache": str(cache / name)}
    stored = torch.load(cache / name, weights_only=True)
    assert stored["key"] == key_src and torch.equal(stored["logits"], want.logits)
    assert not list(cache.glob("*.tmp"))
    again, _ = real_features(Pixels(), data, "test", 30, cache_dir=cache)
    assert torch.equal(again.logits, want.logits)  # the logits come back from the file
    default_batches = Pixels()
    real_features(default_batches, data, "test", 251)
    assert default_batches.calls == 2  # 250 per batch by default


def test_fake_features_clamp_seed_logits_and_budget():
    def sample(b: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(b, 1, 2, 2, generator=gen) * 3  # far outside [0, 1]

    feats, info = fake_features(Pixels(), sample, 20, batch_size=8, seed=4)
    gen = torch.Generator().manual_seed(4)
    x = torch.cat([torch.randn(b, 1, 2, 2, generator=gen) * 3 for b in (8, 8, 4)]).clamp(0, 1)
    want = Pixels().extract(x)
    assert torch.equal(feats.features, want.features) and torch.equal(feats.logits, want.logits)
    assert info["n_fake"] == 20 and info["fake_image_shape"] == [1, 2, 2]
    seconds = info["fake_seconds"]
    assert isinstance(seconds, float) and 0 <= seconds < 60 and round(seconds, 3) == seconds
    # a budget already spent stops at the first batch that reaches min_n (10 by default)
    _, info = fake_features(Pixels(), sample, 40, batch_size=5, time_budget_s=0.0)
    assert info["n_fake"] == 10
    _, info = fake_features(Pixels(), sample, 40, batch_size=5, time_budget_s=0.0, min_n=11)
    assert info["n_fake"] == 15
    _, info = fake_features(Pixels(), sample, 10, batch_size=5, time_budget_s=0.0)
    assert info["n_fake"] == 10
    _, info = fake_features(Pixels(), sample, 40, batch_size=5, time_budget_s=3600.0)
    assert info["n_fake"] == 40  # a budget not spent changes nothing
    _, info = fake_features(Pixels(), sample, 300, time_budget_s=0.0)
    assert info["n_fake"] == 250  # the default batch


def test_measure_values_and_provenance():
    gen = torch.Generator().manual_seed(0)
    real, fake = (
        Features(torch.randn(20, 3, generator=gen)),
        Features(torch.randn(20, 3, generator=gen)),
    )
    out = measure(
        ["fid", "precision_recall"],
        Pixels(),
        real,
        fake,
        real_info={"dataset": "x", "n_real": 20},
        fake_info={"n_fake": 20},
        options={"kid_subsets": None, "nearest_k": 1},
    )
    from genlab.metrics.distances import fid, precision_recall

    precision, recall = precision_recall(real.features, fake.features, k=1)  # the option's k
    assert out["values"] == {
        "fid_px": pytest.approx(fid(real.features, fake.features)),
        "precision_px": precision,
        "recall_px": recall,
    }
    assert (precision, recall) != precision_recall(real.features, fake.features)
    assert out["provenance"] == {
        "metrics": ["fid", "precision_recall"],
        **Pixels().provenance(),
        "dataset": "x",
        "n_real": 20,
        "n_fake": 20,
        "options": {"nearest_k": 1},
    }
    two = Features(fake.features[:2])
    assert "fid_px" in measure(["fid"], Pixels(), two, two, real_info={}, fake_info={})["values"]
    with pytest.raises(GenlabError) as err:
        measure(["fid"], Pixels(), real, Features(fake.features[:1]), real_info={}, fake_info={})
    assert str(err.value) == (
        "generation metrics need at least 2 real and 2 fake images, got 20 and 1: raise n_samples."
    )


def test_evaluator_reads_the_real_features_once(data, tmp_path):
    extractor = Pixels()
    evaluator = GenerationEvaluator(
        metrics=["fid", "precision_recall"],
        extractor=extractor,
        datamodule=data,
        split="val",
        n_real=12,
        cache_dir=tmp_path,
        batch_size=5,
        options={"nearest_k": 2},
    )
    assert evaluator.domain_warning is None

    def sample(b: int, gen: torch.Generator) -> torch.Tensor:
        return torch.rand(b, 1, 28, 28, generator=gen)

    first = evaluator.evaluate(sample, 12, seed=3, source="reconstructions")
    calls = extractor.calls
    assert calls == 3 + 3  # 12 real and 12 fake images, in batches of 5
    second = evaluator.evaluate(sample, 12, seed=3)
    assert extractor.calls - calls == 3  # only the 12 fakes, in batches of 5
    assert first["values"] == second["values"]
    assert set(first["values"]) == {"fid_px", "precision_px", "recall_px"}
    prov = first["provenance"]
    assert (prov["fake_source"], prov["seed"], prov["split"]) == ("reconstructions", 3, "val")
    assert (prov["n_real"], prov["n_fake"], prov["options"]) == (12, 12, {"nearest_k": 2})
    assert second["provenance"]["fake_source"] == "samples"
    real, _ = real_features(Pixels(), data, "val", 12)
    fake, _ = fake_features(Pixels(), sample, 12, batch_size=5, seed=3)
    from genlab.metrics.distances import fid

    assert first["values"]["fid_px"] == pytest.approx(fid(real.features, fake.features))
    assert first["provenance"]["real_cache"].startswith(str(tmp_path))
    assert "domain_warning" not in prov
    budget = evaluator.evaluate(sample, 12, time_budget_s=0.0)
    assert budget["provenance"]["n_fake"] == 10 and budget["provenance"]["seed"] == 0
    defaults = GenerationEvaluator(metrics=["fid"], extractor=Pixels(), datamodule=data)
    assert (defaults.split, defaults.n_real, defaults.batch_size) == ("val", 1000, 250)
    with pytest.raises(GenlabError, match=r"unknown generation metric\(s\) \['fjd'\]"):
        GenerationEvaluator(metrics=["fjd"], extractor=Pixels(), datamodule=data)


def test_domain_mismatch_and_metric_spec_options(data):
    extractor = Pixels()
    assert domain_mismatch(extractor, data) is None  # no record of its training data
    extractor.trained_on = {
        "_target_": "genlab.data.MNIST5k",
        "binarize": None,
        "channels": 1,
        "image_size": 28,
    }
    assert domain_mismatch(extractor, data) is None
    extractor.trained_on = {
        "_target_": "genlab.data.CIFAR10",
        "binarize": "static",
        "channels": 3,
        "image_size": 32,
    }
    assert domain_mismatch(extractor, data) == (
        "the domain classifier was trained on other images than these (data CIFAR10 vs "
        "MNIST5k; data.binarize static vs None; data.channels 3 vs 1; data.image_size 32 vs "
        "28): its features may not separate them the way they separate its own data, so read "
        "the metrics with care (precision/recall near 0 can come from the mismatch alone). "
        "Train the classifier on the same data options (python -m genlab.train "
        "model=classifier with the same data.* settings)."
    )
    extractor.trained_on = {"binarize": None, "channels": 1, "image_size": 32}
    assert "(data.image_size 32 vs 28)" in domain_mismatch(extractor, data)
    evaluator = GenerationEvaluator(metrics=["fid"], extractor=extractor, datamodule=data)
    assert evaluator.domain_warning == domain_mismatch(extractor, data)

    def sample(b: int, gen: torch.Generator) -> torch.Tensor:
        return torch.rand(b, 1, 28, 28, generator=gen)

    evaluator.n_real = 10
    result = evaluator.evaluate(sample, 10)
    assert result["provenance"]["domain_warning"] == evaluator.domain_warning

    class Bare:
        pass

    extractor.trained_on = {"_target_": "x.Bare", "binarize": None, "channels": None}
    assert domain_mismatch(extractor, Bare()) is None  # missing options read as None

    spec = MetricSpec.from_options("where", {"metrics": ["fid"], "extractor": "inception"})
    assert spec.metrics == ["fid"] and spec.extractor == "inception" and not spec.antialias
    assert MetricSpec().metrics == ("fid", "kid", "precision_recall", "density_coverage")
    assert (MetricSpec().extractor, MetricSpec().download) == ("domain", True)
    with pytest.raises(GenlabError) as err:
        MetricSpec.from_options("tasks.generation", {"n_sample": 5, "metric": []})
    assert str(err.value).startswith(
        "tasks.generation: unknown option(s) ['metric', 'n_sample']; the generation metrics "
        "take ['antialias', 'cache_dir', 'classifier_ckpt', 'download', 'extractor', "
    )


def test_metric_spec_builds_its_evaluator(data, tmp_path):
    """MetricSpec.evaluator: the extractor it names (here Inception, from a local weights
    file) and every option handed to the evaluator."""
    from test_metrics import random_inception_state_dict

    weights = tmp_path / "inception.pth"
    torch.save(random_inception_state_dict(), weights)
    spec = MetricSpec(
        metrics=["fid", "kid"],
        extractor="inception",
        inception_weights=str(weights),
        antialias=True,
        download=False,
        cache_dir=str(tmp_path / "c"),
        options={"kid_subsets": 3},
    )
    assert spec.evaluator(data, split="test", n_real=7).batch_size == 250  # the default
    evaluator = spec.evaluator(data, split="test", n_real=7, batch_size=3)
    assert evaluator.datamodule is data
    assert evaluator.extractor.name == "inception-v3-fid" and evaluator.extractor.antialias
    assert (evaluator.metrics, evaluator.split, evaluator.n_real) == (["fid", "kid"], "test", 7)
    assert (evaluator.batch_size, evaluator.cache_dir) == (3, str(tmp_path / "c"))
    assert evaluator.options == {"kid_subsets": 3} and evaluator.device == "cpu"
