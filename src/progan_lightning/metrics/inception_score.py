"""The Inception Score (Salimans et al.), as the official ``metrics/inception_score.py``
computes it (the paper's CIFAR-10 figure: 8.80); opt-in, needs the Inception weights."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torchmetrics.image.inception import InceptionScore as _TorchmetricsInceptionScore
from torchmetrics.utilities import dim_zero_cat

from progan_lightning.metrics.inception import inception_input


def inception_score(logits: Tensor, splits: int = 10) -> tuple[Tensor, Tensor]:
    """``IS = exp(E_x KL(p(y|x) || p(y)))`` per split, then the mean and std over splits.

    As the official code: split ``i`` holds rows ``i * N // splits`` to
    ``(i + 1) * N // splits`` in the given order, ``p(y)`` is each split's mean of
    ``p(y|x) = softmax(logits)``, and the std is NumPy's (biased, ``ddof=0``). Computed in
    float64 from log-probabilities.

    Args:
        logits: Class logits of the images, ``[N, classes]``, ``N >= splits``.
        splits: Number of splits (official 10).

    Returns:
        ``(mean, std)`` as 0-dim float32 tensors.
    """
    n = logits.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"The Inception Score needs at least splits={splits} images, got {n}")
    log_p = logits.double().log_softmax(dim=1)  # log p(y|x)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = part.exp().mean(dim=0).log()  # log p(y) of the split
        kl = (part.exp() * (part - log_marginal)).sum(dim=1).mean()
        scores.append(kl.exp())
    scores = torch.stack(scores)
    return scores.mean().float(), scores.std(correction=0).float()


class InceptionScore(_TorchmetricsInceptionScore):
    """Inception Score of generated images of one resolution (real images are ignored).

    torchmetrics' metric gathers the logits (across processes under DDP); :meth:`compute`
    replaces its random-permutation splits and unbiased std with the official ones
    (:func:`inception_score`), so no random numbers are drawn. Under DDP the splits follow the
    gathered order (process by process), so several devices group the images differently from
    one and the value differs within its sampling noise.

    Args:
        resolution: Image resolution (Inception resizes to 299x299 itself).
        feature: Network taking uint8 [NCHW] images to class logits (the ``logits_unbiased``
            output of ``inception.inception_network``, or a stand-in).
        splits: Number of splits (official 10).
        kwargs: Passed to ``torchmetrics.Metric``.
    """

    def __init__(self, resolution: int, feature: nn.Module, splits: int = 10, **kwargs) -> None:
        with warnings.catch_warnings():  # the size of its feature buffer: known, and small
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            super().__init__(feature=feature, splits=splits, **kwargs)
        self.resolution = resolution

    def update(self, images: Tensor, real: bool) -> None:
        """Add generated images (uint8 [0, 255] or float [-1, 1]); real ones are ignored.
        [NCHW]"""
        if real:
            return
        self.features.append(self.inception(inception_input(images, self.inception)))

    def compute(self) -> dict[str, Tensor]:
        """``{"is_mean": ..., "is_std": ...}`` over ``splits`` splits."""
        mean, std = inception_score(dim_zero_cat(self.features), self.splits)
        return {"is_mean": mean, "is_std": std}
