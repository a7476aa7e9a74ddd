"""The training metrics of a generator, or of the reals against themselves (the floor),
outside training: what ``progan-evaluate`` runs (``conf/evaluate.yaml``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from progan_lightning.callbacks.metrics import SETTINGS
from progan_lightning.data.datamodule import build_datamodule
from progan_lightning.devices import resolve_device
from progan_lightning.faults import DamagedFile
from progan_lightning.generate import load_any, stage_for
from progan_lightning.metrics.class_accuracy import per_class_accuracy, train_classifier
from progan_lightning.metrics.offline import disjoint_subsets, index_batches, score_sets
from progan_lightning.metrics.registry import prepare_metrics
from progan_lightning.networks import seeded_latents
from progan_lightning.schedule import stage_resolution

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.source`` (``reals`` or a generator) against the prepared real images."""
    options = prepare_metrics({k: v for k, v in cfg.metrics.items() if k not in SETTINGS})
    if not options:
        raise ValueError("metrics=none selects no metric; use metrics=default or metrics=swd")
    n, batch = int(cfg.num_images), int(cfg.metrics.get("batch_size", 64))
    if n < 2:
        raise ValueError(f"num_images={n} must be >= 2")
    device = resolve_device(cfg.device)
    G = None if cfg.source == "reals" else load_any(cfg.source, device, cfg.allow_pickle)
    stage, alpha = stage_for(G, None) if G is not None else (None, 1.0)
    resolution = int(cfg.data.resolution) if G is None else stage_resolution(stage)
    if G is not None:
        check_fits_data(G, resolution, cfg)
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    images = datamodule.images(resolution)  # uint8 [N, C, res, res]
    sets = disjoint_subsets(len(images), n, 2 if G is None else 1, int(cfg.seed))

    labels = None
    if G is None:
        fakes = index_batches(images, sets[1], batch)
    else:
        z = seeded_latents((n, G.z_dim), int(cfg.seed))
        labels = fake_labels(G, datamodule, sets[0])

        def generated():
            for i in range(0, n, batch):
                extra = () if labels is None else (labels[i : i + batch].to(device),)
                images = G(z[i : i + batch].to(device), stage, alpha, *extra)  # [NCHW]
                if not torch.isfinite(images).all():  # Scored, they would look finite.
                    raise DamagedFile(
                        cfg.source,
                        "damaged: the generator draws non-finite images (NaN or inf)",
                        "evaluate a checkpoint from before training diverged",
                    )
                yield images

        fakes = generated()
    values = score_sets(options, resolution, index_batches(images, sets[0], batch), fakes, device)
    if labels is not None and cfg.get("class_accuracy"):
        values |= class_accuracy(G, stage, alpha, datamodule, resolution, cfg.class_accuracy)
    result = {"source": str(cfg.source), "resolution": resolution, "num_images": n, **values}
    out = Path(cfg.paths.output_dir) / "evaluate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log.info(f"{json.dumps(result)} -> {out}")
    return values


def check_fits_data(G: torch.nn.Module, resolution: int, cfg: DictConfig) -> None:
    """Refuse, before the data is prepared, a generator whose images the data cannot be
    compared with: other channels, or a resolution above ``data.resolution``.

    Raises:
        ValueError: naming ``source``, the setting and the value that fits.
    """
    channels = int(G.img_channels)
    if channels != int(cfg.data.channels):
        kind = {1: "grayscale", 3: "RGB"}.get(channels, f"{channels}-channel")
        raise ValueError(
            f"source={cfg.source} draws {kind} images ({channels} channels) but "
            f"data.channels={cfg.data.channels}; score it on the data it was trained on: its "
            f"run's experiment=/data= overrides (experiment=quickstart for the quickstart's), "
            f"or data.channels={channels}"
        )
    if resolution > int(cfg.data.resolution):
        raise ValueError(
            f"source={cfg.source} draws {resolution}x{resolution} images, above "
            f"data.resolution={cfg.data.resolution}; score it on the data it was trained on: "
            f"its run's experiment=/data= overrides, or data.resolution={resolution}"
        )


def class_accuracy(
    G: torch.nn.Module,
    stage: int,
    alpha: float,
    datamodule: Any,
    resolution: int,
    settings: DictConfig,
) -> dict[str, float]:
    """How often a conditional G draws the class asked for, read by a reference classifier
    trained on the labelled reals (``metrics/class_accuracy.py``): the mean over classes, each
    class, and the classifier's own accuracy on held-out reals (the ceiling)."""
    classifier, ceiling = train_classifier(
        datamodule.images(resolution),
        datamodule.labels,
        len(G.class_names),
        steps=int(settings.steps),
        seed=int(settings.seed),
    )
    device = next(G.parameters()).device
    per_class = per_class_accuracy(
        classifier,
        lambda z, labels: G(z.to(device), stage, alpha, labels.to(device)),
        len(G.class_names),
        int(settings.per_class),
        G.z_dim,
        int(settings.seed),
    )
    return {
        "class_accuracy/fakes": float(np.mean(per_class)),
        "class_accuracy/reals_held_out": ceiling,
        **{
            f"class_accuracy/{name}": acc
            for name, acc in zip(G.class_names, per_class, strict=True)
        },
    }


def fake_labels(G: torch.nn.Module, datamodule: Any, reals: np.ndarray) -> torch.Tensor | None:
    """The labels a conditional ``G`` draws its images with: those of the real images it is
    compared with (``reals``, indices into the data), so both sets have the same class mix;
    None for an unconditional G.

    Raises:
        ValueError: G is conditional and the data is unlabelled, or names other classes.
    """
    names = list(getattr(G, "class_names", []))
    if not names:
        return None
    if datamodule.class_names != names:
        raise ValueError(
            f"the generator draws the classes {names}, the data has "
            f"{datamodule.class_names or 'no labels'}; evaluate it on the data it was trained "
            "on, with the same data.labels (e.g. data.labels=kind)"
        )
    return torch.from_numpy(datamodule.labels[reals])  # [N] int64
