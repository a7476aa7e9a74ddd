"""The ProGAN DataModule: prepared multi-resolution images, served per growth stage."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader

from progan_lightning.data.cache import EncodedLevel, Storage, load_labels, load_level
from progan_lightning.data.cache_build import prepare_cache
from progan_lightning.data.sources import ImageSource
from progan_lightning.data.stream import BatchArray, StreamSampler, split_batch
from progan_lightning.imaging import to_float
from progan_lightning.instantiate import instantiate
from progan_lightning.schedule import check_resolution


class ProGANDataModule(L.LightningDataModule):
    """Serves uint8 batches at the current stage's resolution and batch size.

    The growth callback calls :meth:`set_plan` before each epoch; an epoch never crosses a
    change of resolution or batch size, so the dataloader is rebuilt exactly at those points
    (``reload_dataloaders_every_n_epochs=1``). Batches become float [-1, 1] (and are
    mirrored) on the device in :meth:`on_after_batch_transfer`. A labelled source
    (``data.labels``) makes every batch an ``(images, labels)`` pair, labels int64 [N]
    (see :func:`~progan_lightning.data.stream.split_batch`).

    Args:
        source: Where images come from (shapes, folder, ...).
        resolution: Final resolution; a copy at every power of two down to 4 is prepared.
        channels: 3 (RGB) or 1 (grayscale).
        cache_dir: Root folder of the prepared multi-resolution caches.
        mirror: Flip half of the real images left-right (paper: on for faces and LSUN).
        seed: Seed of the data order (see ``data/stream.py``).
        num_workers: DataLoader worker processes.
        pin_memory: Pin host memory for faster copies to the GPU.
        prepare_workers: Processes that decode and resize images while preparing the cache.
        ram_limit_mb: Levels up to this size are loaded into RAM, larger ones memory-mapped.
        strict: Stop preparing with the list of unreadable files instead of skipping them.
        compress_above: Store levels above this resolution compressed (None: all raw).
        compress_format: ``png`` (lossless) or ``jpeg`` (quality 95) for compressed levels.
        decode_workers: DataLoader workers that decode a compressed level (at least).
    """

    def __init__(
        self,
        source: ImageSource,
        resolution: int,
        channels: int = 3,
        cache_dir: str | Path = ".cache",
        mirror: bool = False,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = True,
        prepare_workers: int = 0,
        ram_limit_mb: int = 4096,
        strict: bool = False,
        compress_above: int | None = None,
        compress_format: str = "png",
        decode_workers: int = 4,
    ) -> None:
        super().__init__()
        check_resolution(resolution, "data.resolution")
        if channels not in (1, 3):
            raise ValueError(f"data.channels={channels} is not supported; use 3 (RGB) or 1")
        self.source = source
        self.resolution = resolution
        self.channels = channels
        self.cache_dir = Path(cache_dir).expanduser()
        self.mirror = mirror
        self.seed = seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prepare_workers = prepare_workers
        self.ram_limit_mb = ram_limit_mb
        self.strict = strict
        self.storage = Storage(compress_above, compress_format)
        self.decode_workers = decode_workers
        self.cache_path: Path | None = None
        self._level: tuple[int, np.ndarray | EncodedLevel] | None = None
        self._labels: np.ndarray | None = None
        self.plan: dict[str, int] | None = None

    @property
    def class_names(self) -> list[str]:
        """The source's class names (index = class index); [] when unlabelled."""
        return list(self.source.class_names)

    @property
    def num_classes(self) -> int:
        """C, the number of classes; 0 when unlabelled."""
        return len(self.source.class_names)

    @property
    def labels(self) -> np.ndarray | None:
        """The class of every prepared image, int64 [N] aligned with :meth:`images`; None
        when unlabelled. Prepares (or finds) the cache, as :meth:`setup` does."""
        if self._labels is None and self.num_classes:
            self.setup()
            self._labels = load_labels(self.cache_path)
        return self._labels

    @property
    def class_counts(self) -> np.ndarray | None:
        """Prepared images per class, int64 [C]; None when unlabelled."""
        labels = self.labels
        if labels is None:
            return None
        return np.bincount(labels, minlength=self.num_classes)

    def prepare_data(self) -> None:
        self.cache_path = self._prepare()

    def setup(self, stage: str | None = None) -> None:
        # Rank 0 prepared the cache in prepare_data; here every rank only finds it.
        if self.cache_path is None:
            self.cache_path = self._prepare()

    def _prepare(self) -> Path:
        return prepare_cache(
            self.source,
            self.resolution,
            self.channels,
            self.cache_dir,
            num_workers=self.prepare_workers,
            strict=self.strict,
            storage=self.storage,
        )

    def set_plan(self, resolution: int, batch_size: int, start_nimg: int, num_images: int) -> None:
        """Serve ``num_images`` (global) images at ``resolution`` from stream position
        ``start_nimg``, in global batches of ``batch_size``, for the next epoch."""
        self.plan = {
            "resolution": resolution,
            "batch_size": batch_size,
            "start_nimg": start_nimg,
            "num_batches": max(1, math.ceil(num_images / batch_size)),
        }

    def images(self, resolution: int) -> np.ndarray | EncodedLevel:
        """The prepared uint8 images [N, C, res, res]; only one level is held at a time.

        Raw levels up to ``ram_limit_mb`` are read into RAM, larger ones memory-mapped;
        compressed levels are decoded batch by batch (in the DataLoader's workers).
        """
        if self._level is None or self._level[0] != resolution:
            self.setup()
            self._level = None
            array = load_level(self.cache_path, resolution, mmap=True)
            if isinstance(array, np.ndarray) and array.nbytes <= self.ram_limit_mb * 2**20:
                array = np.ascontiguousarray(array)
            self._level = (resolution, array)
        return self._level[1]

    def train_dataloader(self) -> DataLoader:
        if self.plan is None:
            raise RuntimeError(
                "ProGANDataModule has no plan: train with the ProgressiveGrowth callback "
                "(cfg.growth), or call set_plan() first"
            )
        images = self.images(self.plan["resolution"])
        trainer = self.trainer
        sampler = StreamSampler(
            num_items=len(images),
            batch_size=self.plan["batch_size"],
            start_nimg=self.plan["start_nimg"],
            num_batches=self.plan["num_batches"],
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )
        workers = self.num_workers
        if isinstance(images, EncodedLevel):
            workers = max(workers, self.decode_workers)
        # Not persistent: the loader is rebuilt at every tick (the plan changes), and worker
        # start-up (fork) takes milliseconds against ticks of minutes.
        return DataLoader(
            BatchArray(images, self.labels),
            sampler=sampler,
            batch_size=None,
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            # Its own generator: starting an iterator draws a seed, which must not move the
            # global RNG (latents, mirror flips) so that a resumed run stays exact.
            generator=torch.Generator().manual_seed(self.seed + self.plan["start_nimg"]),
        )

    def on_after_batch_transfer(
        self, batch: Tensor | tuple[Tensor, Tensor] | list[Tensor], dataloader_idx: int
    ) -> Tensor | tuple[Tensor, Tensor]:
        """uint8 images -> float [-1, 1] (mirrored); labels, if any, pass untouched."""
        images, labels = split_batch(batch)
        x = to_float(images)  # [NCHW] in [-1, 1]
        if self.mirror:
            flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(3), x)
        return x if labels is None else (x, labels)


SOURCE_KEYS = ("path", "background", "fit", "max_image_pixels", "labels")
"""``data.*`` keys a user sets (``data.path=DIR``) that the config hands on to
``data.source`` by interpolation; not arguments of the DataModule."""


def build_datamodule(cfg: DictConfig) -> ProGANDataModule:
    """The ``data`` config -> its DataModule (and source), with :data:`SOURCE_KEYS` taken
    out once ``data.source`` has read them.

    Raises:
        omegaconf.MissingMandatoryValue: A required key is unset (``data.path`` of a folder).
        ValueError: A value the source or DataModule rejects, as itself.
    """
    params = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    for key in SOURCE_KEYS:
        params.pop(key, None)
    return instantiate(params)
