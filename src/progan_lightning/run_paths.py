"""The names of a run folder's files: its checkpoints folder, ``last.ckpt`` and the export,
each read from the config where the config names it.

No Lightning here: the command's run-dir check (``cli/run_dir.py``) reads these before
anything heavy is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = "checkpoints"
"""The checkpoints' folder inside the run dir (``callbacks.model_checkpoint.dirpath``)."""

LAST_CHECKPOINT = "last.ckpt"
"""The checkpoint rewritten at every tick end (``ckpt_path=last`` resumes it first)."""

EXPORT_NAME = "generator.safetensors"
"""The export's name inside the run dir (``callbacks.model_checkpoint.export_path``)."""


def _saver(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    return (cfg.get("callbacks") or {}).get("model_checkpoint") or {}


def checkpoint_dir(cfg: Mapping[str, Any]) -> Path:
    """``callbacks.model_checkpoint.dirpath`` (default: the run dir's ``checkpoints/``)."""
    dirpath = _saver(cfg).get("dirpath")
    return Path(dirpath or Path(cfg["paths"]["output_dir"]) / CHECKPOINT_DIR)


def export_path(cfg: Mapping[str, Any]) -> Path | None:
    """``callbacks.model_checkpoint.export_path``: where the run exports G_ema (None: no
    export)."""
    path = _saver(cfg).get("export_path")
    return Path(path) if path else None


def last_checkpoint(dirpath: str | Path) -> Path:
    """``last.ckpt`` of a checkpoints folder."""
    return Path(dirpath) / LAST_CHECKPOINT
