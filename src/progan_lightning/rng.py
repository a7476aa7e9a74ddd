"""The global random states training draws from: saved in checkpoints, restored on a resume,
and one stream per rank.

The training step draws its latents, a conditional run's labels and the penalty's mixing
factors from the global generators (torch's on the device of the step, numpy's and Python's
elsewhere). ``seed_everything`` gives every process of a data-parallel run the same seed (so
that they build the same networks); the ranks then need streams of their own, or each rank
generates the same fakes.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch


def rng_states() -> dict[str, Any]:
    """Global RNG states (torch CPU/CUDA, numpy, python) as weights-only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def fingerprint(device: torch.device | str = "cpu") -> int:
    """A 63-bit digest of the global states (torch's CPU generator and ``device``'s, numpy's,
    Python's), taken without drawing from them: equal on two processes only if they would draw
    the same numbers."""
    digest = hashlib.sha256(torch.get_rng_state().numpy().tobytes())
    device = torch.device(device)
    if device.type == "cuda":
        digest.update(torch.cuda.get_rng_state(device).numpy().tobytes())
    digest.update(np.random.get_state()[1].tobytes())
    digest.update(repr(random.getstate()).encode())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def seed_rank(base: int, rank: int) -> None:
    """Seed the global generators (torch's on every device, numpy's, Python's) with the
    stream of ``rank``, derived from ``base`` (the run's seed): distinct for each rank, the
    same for a rank on every run from ``base``."""
    mixed = np.random.SeedSequence([base, rank]).generate_state(1, dtype=np.uint64)[0]
    seed = int(mixed) >> 1
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's :func:`rng_states`, in rank order (a collective: every rank calls it);
    one process: its own alone."""
    states = rng_states()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [states]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, states)
    return gathered


def restore_rank(saved: list[dict[str, Any]], rank: int, world_size: int) -> None:
    """Restore ``rank``'s states from a checkpoint's ``saved`` (each rank's, in order).

    Saved by as many ranks as there are now: each rank takes its own, and draws what it
    would have drawn without the stop. Saved by another number of ranks (or a checkpoint
    holding rank 0's alone): each rank takes rank 0's, then, with more than one rank, a
    stream of its own seeded from it (:func:`seed_rank`), the same on every resume.
    """
    if len(saved) == world_size:
        set_rng_states(saved[rank])
        return
    set_rng_states(saved[0])
    if world_size > 1:
        seed_rank(fingerprint(), rank)
