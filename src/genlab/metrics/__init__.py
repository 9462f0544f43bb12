"""Generation metrics behind one registry (FID, KID, IS, precision/recall, density/coverage),
feature extractors that record their provenance, and reconstruction metrics."""

from genlab.metrics.features import DomainFeatures, InceptionFeatures, build_extractor
from genlab.metrics.generation import fake_features, measure, real_features
from genlab.metrics.registry import METRICS, Features, compute

__all__ = [
    "METRICS",
    "DomainFeatures",
    "Features",
    "InceptionFeatures",
    "build_extractor",
    "compute",
    "fake_features",
    "measure",
    "real_features",
]
