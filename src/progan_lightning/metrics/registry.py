"""The metrics registry: name -> how to build it for one resolution (and prepare it once)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torchmetrics import Metric

from progan_lightning.metrics.fid import FrechetDistance
from progan_lightning.metrics.inception import inception_network
from progan_lightning.metrics.inception_score import InceptionScore
from progan_lightning.metrics.ms_ssim import MSSSIMDiversity
from progan_lightning.metrics.swd import SlicedWassersteinDistance


def _inception(metric: str, default_feature: int | str) -> Callable[[dict], dict]:
    """``prepare`` of a metric on Inception: options ``feature`` (a layer name, or a module
    used as it is) and ``weights_path`` -> the loaded network as ``feature``."""

    def prepare(options: dict[str, Any]) -> dict[str, Any]:
        feature = options.pop("feature", default_feature)
        weights_path = options.pop("weights_path", None)
        if isinstance(feature, int | str):
            feature = inception_network(feature, weights_path, metric)
        return {**options, "feature": feature}

    return prepare


@dataclass(frozen=True)
class MetricSpec:
    """How to make one metric.

    Attributes:
        build: ``build(resolution, **options)`` -> a ``Metric`` with ``update(images, real)``
            and ``compute() -> {name: value}``.
        needs_reals: Whether real images must be fed.
        prepare: Run once at start-up on the options (load weights, fail early).
    """

    build: Callable[..., Metric]
    needs_reals: bool = True
    prepare: Callable[[dict[str, Any]], dict[str, Any]] = field(default=dict)


METRICS: dict[str, MetricSpec] = {
    "swd": MetricSpec(SlicedWassersteinDistance),
    "ms_ssim": MetricSpec(MSSSIMDiversity, needs_reals=False),
    "fid": MetricSpec(FrechetDistance, prepare=_inception("FID", 2048)),
    "is": MetricSpec(
        InceptionScore, needs_reals=False, prepare=_inception("IS", "logits_unbiased")
    ),
}


def prepare_metrics(selected: Mapping[str, Mapping[str, Any] | None]) -> dict[str, dict]:
    """Check names and prepare options of the selected metrics (``{name: options}``)."""
    prepared = {}
    for name, options in selected.items():
        if name not in METRICS:
            raise ValueError(f"Unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
        prepared[name] = METRICS[name].prepare(dict(options or {}))
    return prepared
