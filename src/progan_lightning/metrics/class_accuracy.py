"""Does a conditional generator draw the class it is asked for? A reference classifier trained
on the real images judges its samples.

The classifier is independent of D (whose own class head G is trained against): a small
convolutional network with batch norm, trained from scratch on the labelled reals with a
held-out tenth, whose accuracy on that tenth is the ceiling the generated images are read
against. Chance is ``1 / num_classes``. For an unconditional generator the same classifier
tells how many samples read clearly as some class (:func:`confident_share`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from progan_lightning.console import Progress
from progan_lightning.imaging import to_float


def reference_classifier(channels: int, num_classes: int, width: int = 32) -> nn.Module:
    """Three conv-BN-ReLU-maxpool blocks (``width``, 2x, 4x channels), global average
    pooling and a linear layer: images [N, C, H, W] in [-1, 1] (H, W >= 8) -> logits [N, K]."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)
        )

    return nn.Sequential(
        block(channels, width),
        block(width, 2 * width),
        block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
) -> tuple[nn.Module, float]:
    """Train :func:`reference_classifier` on ``images`` (uint8 [N, C, H, W]) and ``labels``
    (int [N]), holding out every tenth image. Its progress shows as a bar on a terminal, else
    as a log line every 10 s (minutes on a small CPU).

    Returns:
        The classifier (eval mode, on the CPU) and its accuracy on the held-out images.
    """
    if len(images) < 20:
        raise ValueError(f"{len(images)} labelled images are too few to train a classifier")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))  # [N]
    # Batches are read and converted one at a time: the level may be a memory map of a
    # dataset far larger than RAM as floats.
    held_out = held_out_mask(len(y))
    train_index, test_index = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    net = reference_classifier(images.shape[1], num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    with Progress(steps, "train the reference classifier", "step") as progress:
        for _ in range(steps):
            pick = torch.randint(len(train_index), (batch_size,), generator=generator).numpy()
            index = np.sort(train_index[pick])
            loss = F.cross_entropy(net(to_float(images[index])), y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            progress.update(1)
    net.eval()
    return net, accuracy(net, images[test_index], y[test_index])


def held_out_mask(n: int) -> np.ndarray:
    """The images :func:`train_classifier` holds out of ``n``: every tenth, bool [n]."""
    return np.arange(n) % 10 == 0


@torch.no_grad()
def accuracy(
    classifier: nn.Module, images: np.ndarray | Tensor, labels: Tensor, batch: int = 256
) -> float:
    """Fraction of ``images`` [N, C, H, W] (uint8, or float in [-1, 1]) classified as their
    ``labels`` [N]."""
    hits = sum(
        int((classifier(to_float(images[i : i + batch])).argmax(1) == labels[i : i + batch]).sum())
        for i in range(0, len(images), batch)
    )
    return hits / len(images)


@torch.no_grad()
def confident_share(
    classifier: nn.Module, images: np.ndarray | Tensor, threshold: float = 0.9, batch: int = 256
) -> float:
    """Fraction of ``images`` [N, C, H, W] (uint8, or float in [-1, 1]) that ``classifier``
    assigns to some class with a softmax probability of at least ``threshold``: the share that
    reads clearly as one class, whichever."""
    hits = sum(
        int((classifier(to_float(images[i : i + batch])).softmax(1).amax(1) >= threshold).sum())
        for i in range(0, len(images), batch)
    )
    return hits / len(images)


@torch.no_grad()
def per_class_accuracy(
    classifier: nn.Module,
    generate: Callable[[Tensor, Tensor], Tensor],
    num_classes: int,
    per_class: int,
    z_dim: int,
    seed: int = 0,
) -> list[float]:
    """For each class, the fraction of ``per_class`` generated images that ``classifier``
    assigns to it.

    Args:
        classifier: Images [N, C, H, W] in [-1, 1] -> logits [N, K] (on the CPU).
        generate: ``(z [N, z_dim], labels [N]) -> images [N, C, H, W]`` at the classifier's
            resolution (CPU tensors in, any device inside).
        num_classes: K.
        per_class: Images per class.
        z_dim: Latent size.
        seed: Seed of the latents.

    Returns:
        K accuracies in [0, 1].
    """
    z = torch.randn(per_class, z_dim, generator=torch.Generator().manual_seed(seed))
    result = []
    for k in range(num_classes):
        labels = torch.full((per_class,), k, dtype=torch.int64)
        result.append(accuracy(classifier, generate(z, labels).cpu().float(), labels))
    return result
