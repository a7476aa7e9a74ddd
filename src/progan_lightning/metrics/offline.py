"""Metrics of two image sets outside training: a generator against the reals, or the reals
against themselves (the floor a generator can reach with this many images)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from progan_lightning.metrics.registry import METRICS


def disjoint_subsets(size: int, n: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` disjoint sorted index sets of ``n`` from ``range(size)`` (seeded).

    Raises:
        ValueError: The data holds fewer than ``count * n`` images.
    """
    if count * n > size:
        raise ValueError(
            f"num_images={n} needs {count * n} images ({count} disjoint sets) but the data "
            f"holds {size}; lower num_images or use more images"
        )
    order = np.random.default_rng(seed).permutation(size)
    return [np.sort(order[i * n : (i + 1) * n]) for i in range(count)]


def index_batches(images: Any, index: np.ndarray, batch: int) -> Iterator[Tensor]:
    """``images[index]`` (uint8 [N, C, H, W], an array or a memory map) as tensors of at most
    ``batch`` images, read one batch at a time."""
    for start in range(0, len(index), batch):
        yield torch.from_numpy(np.asarray(images[index[start : start + batch]]))


@torch.no_grad()
def score_sets(
    options: Mapping[str, Mapping[str, Any]],
    resolution: int,
    reals: Iterable[Tensor],
    fakes: Iterable[Tensor],
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Every metric of ``options`` (prepared, see ``prepare_metrics``) on two image sets.

    Args:
        options: ``{metric name: options}``.
        resolution: Side of the images.
        reals: Batches of the reference set, uint8 [NCHW].
        fakes: Batches of the compared set: uint8, or float in [-1, 1] (a generator's). [NCHW]
        device: Where the metrics run.

    Returns:
        ``{"metrics/<name>": value}`` as the training callback logs them.
    """
    metrics = {
        name: METRICS[name].build(resolution, **opts).to(device) for name, opts in options.items()
    }
    for batch in reals:
        for name, metric in metrics.items():
            if METRICS[name].needs_reals:
                metric.update(batch.to(device), real=True)
    for batch in fakes:
        for metric in metrics.values():
            metric.update(batch.to(device), real=False)
    return {
        f"metrics/{key}": float(value)
        for metric in metrics.values()
        for key, value in metric.compute().items()
    }
