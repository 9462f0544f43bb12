"""One feature pass over N real and N fake images, every chosen metric from it, and the record
of how it was measured. Real-image features are cached on disk per (dataset, split,
extractor weights, image size, N, resize mode).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genlab.metrics.features import FeatureExtractor, build_extractor
from genlab.metrics.registry import Features, compute
from genlab.utils.errors import GenlabError

log = logging.getLogger(__name__)
DEFAULT_METRICS = ("fid", "kid", "precision_recall", "density_coverage")


def dataset_descriptor(datamodule: Any, split: str) -> dict[str, Any]:
    """What identifies the real images: dataset, split and how they were prepared."""
    return {
        "dataset": getattr(datamodule, "name", type(datamodule).__name__),
        "class": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        "split": split,
        "image_size": getattr(datamodule, "image_size", None),
        "channels": getattr(datamodule, "channels", None),
        "binarize": getattr(datamodule, "binarize", None),
        "split_seed": getattr(datamodule, "split_seed", None),
        "data_dir": getattr(datamodule, "data_dir", None),
    }


def real_indices(n_available: int, n: int, seed: int = 0) -> list[int]:
    """`n` distinct indices of a split, drawn by a fixed permutation (the same every time)."""
    perm = torch.randperm(n_available, generator=torch.Generator().manual_seed(seed))
    return sorted(perm[: min(n, n_available)].tolist())


def extract_batches(
    extractor: FeatureExtractor, batches: Iterator[torch.Tensor], device: str | torch.device
) -> Features:
    feats, logits = [], []
    for x in batches:
        out = extractor.extract(x.to(device).float())
        feats.append(out.features.cpu())
        if out.logits is not None:
            logits.append(out.logits.cpu())
    return Features(torch.cat(feats), torch.cat(logits) if logits else None)


def real_features(
    extractor: FeatureExtractor,
    datamodule: Any,
    split: str,
    n: int,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 250,
    device: str | torch.device = "cpu",
) -> tuple[Features, dict[str, Any]]:
    """Features of `n` real images of `split` (all of it if smaller), from the disk cache when
    this exact combination was computed before. Returns (features, info for provenance)."""
    data = datamodule.dataset(split)
    idx = real_indices(len(data), n)
    info = {**dataset_descriptor(datamodule, split), "n_real": len(idx)}
    key_src = json.dumps(
        {
            **info,
            **extractor.provenance(),
            "indices": hashlib.sha256(str(idx).encode()).hexdigest(),
        },
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{info['dataset']}-{split}-n{len(idx)}-{key}.pt"
        if path.is_file():
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True)
                log.info("real features from cache %s", path)
                return Features(stored["features"], stored.get("logits")), {
                    **info,
                    "real_cache": str(path),
                }
            except Exception as exc:  # noqa: BLE001  (a broken cache file is recomputed)
                log.warning("ignoring unreadable feature cache %s (%s)", path, exc)

    def batches() -> Iterator[torch.Tensor]:
        for i in range(0, len(idx), batch_size):
            yield torch.stack([data[j][0] for j in idx[i : i + batch_size]])

    feats = extract_batches(extractor, batches(), device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"features": feats.features, "logits": feats.logits, "key": key_src}, tmp)
        tmp.replace(path)
        info["real_cache"] = str(path)
    return feats, info


def fake_features(
    extractor: FeatureExtractor,
    sample: Callable[[int, torch.Generator], torch.Tensor],
    n: int,
    *,
    batch_size: int = 250,
    seed: int = 0,
    device: str | torch.device = "cpu",
    time_budget_s: float | None = None,
    min_n: int = 10,
) -> tuple[Features, dict[str, Any]]:
    """Features of `n` generated images, `sample(b, generator)` giving (b, c, h, w) in [0, 1].

    With a time budget, generation stops early once the budget is spent (never below `min_n`
    images); the N actually used is returned with the time taken.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    start = time.monotonic()
    feats, logits, done, image_shape = [], [], 0, None
    while done < n:
        b = min(batch_size, n - done)
        with torch.no_grad():
            x = sample(b, gen)
        image_shape = tuple(x.shape[1:])
        out = extractor.extract(x.to(device).float().clamp(0, 1))
        feats.append(out.features.cpu())
        if out.logits is not None:
            logits.append(out.logits.cpu())
        done += b
        if (
            time_budget_s is not None
            and time.monotonic() - start > time_budget_s
            and done >= min_n
        ):
            if done < n:
                log.warning(
                    "generation metrics: time budget %.0f s spent after %d of %d samples",
                    time_budget_s,
                    done,
                    n,
                )
            break
    return Features(torch.cat(feats), torch.cat(logits) if logits else None), {
        "n_fake": done,
        "fake_image_shape": list(image_shape or ()),
        "fake_seconds": round(time.monotonic() - start, 3),
    }


def measure(
    names: list[str],
    extractor: FeatureExtractor,
    real: Features,
    fake: Features,
    *,
    real_info: dict[str, Any],
    fake_info: dict[str, Any],
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`{"values": {fid_domain: ...}, "provenance": {...}}` for one pass over real and fake."""
    if len(real) < 2 or len(fake) < 2:
        raise GenlabError(
            f"generation metrics need at least 2 real and 2 fake images, got {len(real)} and "
            f"{len(fake)}: raise n_samples."
        )
    values = compute(names, real, fake, suffix=extractor.suffix, **(options or {}))
    provenance = {
        "metrics": list(names),
        **extractor.provenance(),
        **real_info,
        **fake_info,
        "options": {k: v for k, v in (options or {}).items() if v is not None},
    }
    return {"values": values, "provenance": provenance}


class GenerationEvaluator:
    """Everything one set of generation metrics needs, set up once: the metric names, the
    feature extractor, the real features (computed or read from the cache on first use) and
    the metric options. Call `evaluate(sample)` for every new set of fakes."""

    def __init__(
        self,
        *,
        metrics: list[str],
        extractor: FeatureExtractor,
        datamodule: Any,
        split: str = "val",
        n_real: int = 1000,
        cache_dir: str | Path | None = None,
        batch_size: int = 250,
        device: str | torch.device = "cpu",
        options: dict[str, Any] | None = None,
    ) -> None:
        from genlab.metrics.registry import check_names

        check_names(list(metrics))
        self.metrics, self.extractor = list(metrics), extractor.to(device)
        self.datamodule, self.split, self.n_real = datamodule, split, n_real
        self.cache_dir, self.batch_size, self.device = cache_dir, batch_size, device
        self.options = dict(options or {})
        self._real: tuple[Features, dict[str, Any]] | None = None
        self.domain_warning = domain_mismatch(extractor, datamodule)
        if self.domain_warning:
            log.warning("generation metrics: %s", self.domain_warning)

    def real(self) -> tuple[Features, dict[str, Any]]:
        if self._real is None:
            self._real = real_features(
                self.extractor,
                self.datamodule,
                self.split,
                self.n_real,
                cache_dir=self.cache_dir,
                batch_size=self.batch_size,
                device=self.device,
            )
        return self._real

    def evaluate(
        self,
        sample: Callable[[int, torch.Generator], torch.Tensor],
        n: int,
        *,
        seed: int = 0,
        time_budget_s: float | None = None,
        source: str = "samples",
    ) -> dict[str, Any]:
        real, real_info = self.real()
        fake, fake_info = fake_features(
            self.extractor,
            sample,
            n,
            batch_size=self.batch_size,
            seed=seed,
            device=self.device,
            time_budget_s=time_budget_s,
        )
        result = measure(
            self.metrics,
            self.extractor,
            real,
            fake,
            real_info=real_info,
            fake_info={**fake_info, "fake_source": source, "seed": seed},
            options=self.options,
        )
        if self.domain_warning:
            result["provenance"]["domain_warning"] = self.domain_warning
        return result


def domain_mismatch(extractor: FeatureExtractor, datamodule: Any) -> str | None:
    """Why a domain classifier's features may not fit these images: it was trained on other
    data, or on grey levels while the images are binarized (or the reverse). Such features
    put real and generated images in regions the classifier never saw, and precision, recall
    or FID then say more about the mismatch than about the model. None when they match."""
    trained_on = getattr(extractor, "trained_on", None)
    if not trained_on:
        return None
    differences = []
    theirs = str(trained_on.get("_target_") or "").rsplit(".", 1)[-1]
    ours = type(datamodule).__name__
    if theirs and theirs != ours:
        differences.append(f"data {theirs} vs {ours}")
    for key in ("binarize", "channels", "image_size"):
        a, b = trained_on.get(key), getattr(datamodule, key, None)
        if a != b:
            differences.append(f"data.{key} {a} vs {b}")
    if not differences:
        return None
    return (
        "the domain classifier was trained on other images than these ("
        + "; ".join(differences)
        + "): its features may not separate them the way they separate its own data, so read "
        "the metrics with care (precision/recall near 0 can come from the mismatch alone). "
        "Train the classifier on the same data options (python -m genlab.train "
        "model=classifier with the same data.* settings)."
    )


@dataclass(frozen=True)
class MetricSpec:
    """What a set of generation metrics measures, in which feature space: the options shared
    by the `generation_metrics` callback and the `generation` eval task.

    `metrics`: registry names (fid, kid, is, precision_recall, density_coverage);
    `extractor`: `domain` (the genlab classifier `classifier_ckpt`) or `inception`
    (`inception_weights`, `antialias`, `download`); `cache_dir`: where real-image features are
    cached; `options`: the metrics' options (kid_subset_size, nearest_k, ...).
    """

    metrics: Sequence[str] = DEFAULT_METRICS
    extractor: str = "domain"
    classifier_ckpt: str | None = None
    inception_weights: str | None = None
    antialias: bool = False
    download: bool = True
    cache_dir: str | None = None
    options: Mapping[str, Any] | None = None

    @classmethod
    def from_options(cls, where: str, options: Mapping[str, Any]) -> MetricSpec:
        """A spec from config options; a GenlabError naming `where` for an unknown option."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise GenlabError(
                f"{where}: unknown option(s) {unknown}; the generation metrics take "
                f"{sorted(known)} besides their own."
            )
        return cls(**options)

    def evaluator(
        self,
        datamodule: Any,
        *,
        split: str,
        n_real: int,
        batch_size: int = 250,
        device: str | torch.device = "cpu",
    ) -> GenerationEvaluator:
        """The evaluator of these metrics against `n_real` images of `split`; builds the
        feature extractor (a missing checkpoint or weights file fails here)."""
        extractor = build_extractor(
            self.extractor,
            classifier_ckpt=self.classifier_ckpt,
            inception_weights=self.inception_weights,
            antialias=self.antialias,
            download=self.download,
        )
        return GenerationEvaluator(
            metrics=list(self.metrics),
            extractor=extractor,
            datamodule=datamodule,
            split=split,
            n_real=n_real,
            cache_dir=self.cache_dir,
            batch_size=batch_size,
            device=device,
            options=dict(self.options or {}),
        )
