"""The data order as a pure function of (seed, images seen).

Position ``p`` of the global image stream is image ``perm_e[p % N]`` with ``e = p // N`` and
``perm_e`` a permutation drawn from ``(seed, e)``. A global batch at ``nimg`` covers positions
``[nimg, nimg + B)``; rank ``r`` of ``W`` takes the ``r``-th of ``W`` equal slices. Any run
that reaches the same ``nimg`` sees the same images next, however it got there.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


class StreamSampler(Sampler[np.ndarray]):
    """Yields one index array per local batch, for ``num_batches`` batches.

    Args:
        num_items: Dataset size N.
        batch_size: Global batch size B (divisible by ``world_size``).
        start_nimg: Position of the first global batch in the stream.
        num_batches: Batches to yield.
        seed: Seed of the permutations.
        rank: This process's rank.
        world_size: Number of processes sharing each global batch.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        start_nimg: int,
        num_batches: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"batch size {batch_size} does not divide over {world_size} devices; "
                f"set growth.batch_size to multiples of {world_size}"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.local_batch = batch_size // world_size
        self.start_nimg = start_nimg
        self.num_batches = num_batches
        self.seed = seed
        self.rank = rank
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.num_batches

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(
                self.num_items
            )
        return self._perms[epoch]

    def indices(self, nimg: int) -> np.ndarray:
        """Dataset indices of this rank's slice of the global batch at ``nimg``."""
        start = nimg + self.rank * self.local_batch
        pos = np.arange(start, start + self.local_batch)
        epochs, offsets = np.divmod(pos, self.num_items)
        out = np.empty_like(pos)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            out[mask] = self._perm(int(epoch))[offsets[mask]]
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for b in range(self.num_batches):
            yield self.indices(self.start_nimg + b * self.batch_size)


class BatchArray(Dataset):
    """A uint8 image array [N, C, H, W] indexed by whole batches (one fancy-index per batch).

    Args:
        images: uint8 [N, C, H, W] (an array, a memory map or an encoded level).
        labels: int64 [N] class indices, or None for unlabelled data.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: np.ndarray) -> Tensor | tuple[Tensor, Tensor]:
        """uint8 [B, C, H, W] images, with their int64 [B] labels when labelled."""
        # Sorted reads are kinder to memory maps; restore the sampled order afterwards.
        order = np.argsort(indices, kind="stable")
        batch = np.empty((len(indices), *self.images.shape[1:]), dtype=np.uint8)
        batch[order] = self.images[indices[order]]
        images = torch.from_numpy(batch)  # [NCHW] uint8
        if self.labels is None:
            return images
        labels = torch.from_numpy(np.asarray(self.labels[indices], dtype=np.int64))  # [N]
        return images, labels


def split_batch(
    batch: Tensor | tuple[Tensor, Tensor] | list[Tensor],
) -> tuple[Tensor, Tensor | None]:
    """``(images, labels)`` of a batch: a bare image tensor (unlabelled, labels None) or an
    ``(images, labels)`` pair (a tuple, or the list a DataLoader makes of it)."""
    if isinstance(batch, Tensor):
        return batch, None
    images, labels = batch
    return images, labels
