"""The metrics registry: name -> how to build it for one resolution (and prepare it once)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torchmetrics import Metric

from progan_lightning.metrics.fid import FrechetDistance, inception_features
from progan_lightning.metrics.ms_ssim import MSSSIMDiversity
from progan_lightning.metrics.swd import SlicedWassersteinDistance


def _prepare_fid(options: dict[str, Any]) -> dict[str, Any]:
    feature = options.pop("feature", 2048)
    weights_path = options.pop("weights_path", None)
    if isinstance(feature, int):
        feature = inception_features(feature, weights_path)
    return {**options, "feature": feature}


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
    "fid": MetricSpec(FrechetDistance, prepare=_prepare_fid),
}


def prepare_metrics(selected: Mapping[str, Mapping[str, Any] | None]) -> dict[str, dict]:
    """Check names and prepare options of the selected metrics (``{name: options}``)."""
    prepared = {}
    for name, options in selected.items():
        if name not in METRICS:
            raise ValueError(f"Unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
        prepared[name] = METRICS[name].prepare(dict(options or {}))
    return prepared
