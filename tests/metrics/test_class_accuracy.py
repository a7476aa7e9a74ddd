"""The reference classifier that judges a conditional generator's classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from progan_lightning.metrics.class_accuracy import (
    confident_share,
    held_out_mask,
    per_class_accuracy,
    train_classifier,
)

COLOURS = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])  # [K, 3]


def painted(labels: torch.Tensor, noise: float = 0.3, seed: int = 0) -> torch.Tensor:
    """8x8 images of each label's colour plus noise, in [-1, 1]. [N, 3, 8, 8]"""
    g = torch.Generator().manual_seed(seed)
    x = COLOURS[labels][:, :, None, None] + noise * torch.randn(len(labels), 3, 8, 8, generator=g)
    return x.clamp(-1, 1)


def test_the_classifier_learns_the_reals_and_reads_the_generated_classes():
    labels = torch.arange(300) % 3
    images = ((painted(labels) + 1) * 127.5).round().to(torch.uint8).numpy()
    classifier, ceiling = train_classifier(images, labels.numpy(), 3, steps=60, seed=1)
    assert ceiling == 1.0

    # A generator that draws the class asked for, and one that ignores it.
    faithful = per_class_accuracy(classifier, lambda z, y: painted(y, seed=2), 3, 16, 4)
    assert faithful == [1.0, 1.0, 1.0]
    ignoring = per_class_accuracy(
        classifier, lambda z, y: painted(torch.zeros_like(y), seed=2), 3, 16, 4
    )
    assert ignoring == [1.0, 0.0, 0.0]


def test_too_few_images_are_refused():
    with pytest.raises(ValueError, match="too few"):
        train_classifier(np.zeros((5, 3, 8, 8), np.uint8), np.zeros(5), 2)


def test_confident_share_counts_the_images_read_clearly_as_some_class():
    labels = torch.arange(300) % 3
    images = ((painted(labels) + 1) * 127.5).round().to(torch.uint8).numpy()
    classifier, _ = train_classifier(images, labels.numpy(), 3, steps=60, seed=1)
    clear = painted(torch.arange(30) % 3, seed=3)  # [30, 3, 8, 8]
    assert confident_share(classifier, clear) == 1.0
    # The top half one class's colour, the bottom half the next class's: not read as clearly.
    blend = torch.cat([clear[:15, :, :4], clear[1:16, :, 4:]], dim=2)  # [15, 3, 8, 8]
    assert confident_share(classifier, blend) < confident_share(classifier, clear)
    assert confident_share(classifier, clear, threshold=1.01) == 0.0


def test_the_held_out_images_are_every_tenth():
    assert np.flatnonzero(held_out_mask(25)).tolist() == [0, 10, 20]


def test_the_classifier_training_shows_its_progress(monkeypatch, caplog):
    from progan_lightning import console

    clock = iter(range(0, 10_000, 4))  # 4 s per reading: a line every third step
    monkeypatch.setattr(console.time, "perf_counter", lambda: float(next(clock)))
    labels = torch.arange(30) % 3
    images = ((painted(labels) + 1) * 127.5).round().to(torch.uint8).numpy()
    with caplog.at_level("INFO", logger="progan_lightning.console"):
        train_classifier(images, labels.numpy(), 3, steps=9, batch_size=8)
    lines = [r.getMessage() for r in caplog.records if "reference classifier" in r.getMessage()]
    assert [line.split(":")[1].split()[0] for line in lines] == ["3/9", "6/9", "9/9"]
    assert "ETA" in lines[0]
