"""Fixtures of the studies' tests (from the checkout: ``python -m pytest benchmarks/tests``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data cache for the whole session: the built-in data is drawn once."""
    return tmp_path_factory.mktemp("cache")
