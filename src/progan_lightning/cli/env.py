"""``.env``: settings from a file, read by every command before Hydra composes its config.

The nearest ``.env`` in the working directory or a parent (see ``.env.example``: cache and
output paths, W&B keys) is loaded into the environment; a variable already set in the
environment keeps its value. The ``cli`` package loads it once, on import, so every command
(``progan-*``, ``python train.py``, ``python -m progan_lightning.cli.<command>``) reads it
before its config (whose ``oc.env`` interpolations may name these variables) is composed.
"""

from __future__ import annotations

from pathlib import Path

from dotenv import find_dotenv, load_dotenv


def load_env() -> Path | None:
    """Load the nearest ``.env`` from the working directory upwards; return its path, or
    None when there is none."""
    path = find_dotenv(usecwd=True)
    if not path:
        return None
    load_dotenv(path, override=False)
    return Path(path)
