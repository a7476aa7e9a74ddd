"""The DataModule: one stage's level per epoch, raw or compressed, workers, mirroring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from progan_lightning.data.cache import EncodedLevel
from progan_lightning.data.datamodule import ProGANDataModule
from progan_lightning.data.sources import ShapesSource


def batches(datamodule: ProGANDataModule, resolution: int) -> list[torch.Tensor]:
    datamodule.set_plan(resolution, batch_size=8, start_nimg=0, num_images=32)
    return list(datamodule.train_dataloader())


def test_compressed_level_decoded_in_workers_matches_raw(tmp_path: Path) -> None:
    source = ShapesSource(40, seed=4)
    raw = ProGANDataModule(source, 16, cache_dir=tmp_path)
    packed = ProGANDataModule(source, 16, cache_dir=tmp_path, compress_above=8, decode_workers=2)
    for datamodule in (raw, packed):
        datamodule.prepare_data()
    assert isinstance(packed.images(16), EncodedLevel)
    assert isinstance(packed.images(8), np.ndarray)
    packed.set_plan(16, 8, 0, 32)
    assert packed.train_dataloader().num_workers == 2  # decode_workers for a compressed level
    packed.set_plan(8, 8, 0, 32)
    assert packed.train_dataloader().num_workers == 0  # num_workers for a raw one
    for res in (8, 16):
        got, expected = batches(packed, res), batches(raw, res)
        assert len(got) == 4
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == torch.uint8 and a.shape == (8, 3, res, res)
            assert torch.equal(a, b)


def test_small_levels_held_in_ram_large_ones_mapped(tmp_path: Path) -> None:
    datamodule = ProGANDataModule(ShapesSource(16), 16, cache_dir=tmp_path, ram_limit_mb=0)
    assert isinstance(datamodule.images(16), np.memmap)
    datamodule = ProGANDataModule(ShapesSource(16), 16, cache_dir=tmp_path)
    assert not isinstance(datamodule.images(16), np.memmap)


def test_batches_become_floats_and_mirror(tmp_path: Path) -> None:
    datamodule = ProGANDataModule(ShapesSource(16), 8, cache_dir=tmp_path, mirror=True)
    (batch,) = batches(datamodule, 8)[:1]
    torch.manual_seed(0)
    x = datamodule.on_after_batch_transfer(batch, 0)
    assert x.dtype == torch.float32 and x.min() >= -1.0 and x.max() <= 1.0
    reference = batch.float() / 127.5 - 1.0
    flipped = [torch.equal(x[i], reference[i].flip(2)) for i in range(8)]
    same = [torch.equal(x[i], reference[i]) for i in range(8)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert any(f and not s for f, s in zip(flipped, same, strict=True))
