"""The data stream is a pure function of (seed, images seen) and splits over ranks."""

import numpy as np
import pytest

from progan_lightning.data.stream import BatchArray, StreamSampler


def test_every_image_once_per_pass_and_reproducible():
    s = StreamSampler(num_items=10, batch_size=5, start_nimg=0, num_batches=4, seed=3)
    batches = list(s)
    assert len(batches) == len(s) == 4
    first, second = np.concatenate(batches[:2]), np.concatenate(batches[2:])
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert not np.array_equal(first, second)  # a new permutation each pass
    again = StreamSampler(num_items=10, batch_size=5, start_nimg=0, num_batches=4, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = StreamSampler(num_items=10, batch_size=5, start_nimg=0, num_batches=2, seed=4)
    assert not np.array_equal(np.concatenate(list(other)), first)


def test_position_not_history_decides_the_next_batch():
    whole = StreamSampler(num_items=7, batch_size=3, start_nimg=0, num_batches=6, seed=0)
    tail = StreamSampler(num_items=7, batch_size=3, start_nimg=9, num_batches=3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(list(whole)[3:], tail, strict=True))


def test_ranks_split_the_global_batch():
    full = StreamSampler(num_items=50, batch_size=8, start_nimg=16, num_batches=3, seed=1)
    parts = [StreamSampler(50, 8, 16, 3, seed=1, rank=r, world_size=2) for r in range(2)]
    for whole, a, b in zip(full, *parts, strict=True):
        assert len(a) == len(b) == 4
        assert np.array_equal(np.concatenate([a, b]), whole)


def test_indivisible_batch_names_the_fix():
    with pytest.raises(ValueError, match="growth.batch_size"):
        StreamSampler(50, 6, 0, 1, world_size=4)


def test_batch_array_returns_rows_in_sampled_order():
    images = np.arange(6 * 1 * 2 * 2, dtype=np.uint8).reshape(6, 1, 2, 2)
    batch = BatchArray(images)[np.array([4, 1, 4, 0])]
    assert batch.shape == (4, 1, 2, 2)
    assert [int(b[0, 0, 0]) for b in batch] == [16, 4, 16, 0]
