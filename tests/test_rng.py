"""The global random states: one stream per rank, each rank's restored on a resume."""

from __future__ import annotations

import random

import numpy as np
import torch

from progan_lightning.rng import fingerprint, restore_rank, rng_states, seed_rank


def draws() -> tuple[list[float], float, float]:
    """One number from each global generator the training step may draw from."""
    return torch.rand(2).tolist(), float(np.random.rand()), random.random()


def test_the_fingerprint_draws_nothing_and_tells_states_apart():
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    before = fingerprint()
    assert fingerprint() == before  # taken twice: the same, nothing was drawn
    expected = draws()
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    fingerprint()
    assert draws() == expected
    assert fingerprint() != before  # the draws moved the states
    torch.manual_seed(3), np.random.seed(3), random.seed(4)  # Python's alone differs
    assert fingerprint() != before


def test_each_rank_gets_a_stream_of_its_own_the_same_on_every_run():
    streams = []
    for rank in range(4):
        seed_rank(0, rank)
        streams.append(draws())
    assert all(a[i] != b[i] for a in streams for b in streams if a is not b for i in range(3))
    seed_rank(0, 2)
    assert draws() == streams[2]
    seed_rank(1, 2)  # another run seed: another stream
    assert draws() != streams[2]


def test_a_resume_on_as_many_ranks_restores_each_its_own_states():
    saved, expected = [], []
    for rank in range(2):
        seed_rank(0, rank)
        saved.append(rng_states())
        expected.append(draws())
    for rank in (1, 0):
        torch.manual_seed(99)
        restore_rank(saved, rank, world_size=2)
        assert draws() == expected[rank]


def test_a_resume_on_another_number_of_ranks_gives_each_a_stream_from_rank_0s():
    seed_rank(0, 0)
    saved = [rng_states()]  # a one-process run's checkpoint
    alone = draws()
    streams = []
    for rank in range(3):
        restore_rank(saved, rank, world_size=3)
        streams.append(draws())
    assert len({str(s) for s in streams}) == 3 and alone not in streams
    restore_rank(saved, 1, world_size=3)
    assert draws() == streams[1]  # the same on every resume
    restore_rank(saved, 0, world_size=1)  # one process: exactly the saved states
    assert draws() == alone
