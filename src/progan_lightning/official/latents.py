"""The latents of the official ``import_example.py``, to compare images with its output."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

EXAMPLE_SEED = 1000
"""Seed of the official example's ``np.random.RandomState``."""

EXAMPLE_PICKS = (477, 56, 83, 887, 583, 391, 86, 340, 341, 415)
"""The rows of its 1000 latents that the example renders (its ``img0.png`` .. ``img9.png``)."""


def example_latents(z_dim: int) -> Tensor:
    """``RandomState(1000).randn(1000, z_dim)`` at rows :data:`EXAMPLE_PICKS`, as float32.

    The official example feeds these (float64, cast by TensorFlow) to ``Gs.run``. [10, z_dim]
    """
    latents = np.random.RandomState(EXAMPLE_SEED).randn(1000, z_dim)[list(EXAMPLE_PICKS)]
    return torch.from_numpy(latents.astype(np.float32))
