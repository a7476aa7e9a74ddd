"""The run record: what a training run was started with, written by the run itself into
``<run dir>/.hydra/`` once the run is accepted (every check passed, the run dir's lock held).

- ``config.yaml``: the resolved config of the run's start;
- ``overrides.yaml``: the command-line overrides it was started with (a resume by folder
  composes these first: ``cli/resume.py``);
- ``run.yaml``: when and in which folder (``cwd``) it started, and the versions it ran with;
- ``resumes.yaml``: one entry per resume (its own overrides, when, the versions), appended.

The first three are written once, when the run starts; a resume only appends its entry, so
nothing a resume is refused for (or a racing run, or another command) changes the record.
Every file is written atomically (:func:`~progan_lightning.fs.atomic_write`).
"""

from __future__ import annotations

import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from progan_lightning.fs import atomic_write
from progan_lightning.run_paths import CHECKPOINT_DIR

RECORD_DIR = ".hydra"
CONFIG_NAME = "config.yaml"
OVERRIDES_NAME = "overrides.yaml"
RUN_NAME = "run.yaml"
RESUMES_NAME = "resumes.yaml"


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` as plain values, interpolations resolved, without Hydra's own ``hydra:`` node."""
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    resolved.pop("hydra", None)
    return resolved


def task_overrides(cfg: DictConfig) -> list[str]:
    """The command-line overrides of the run (Hydra's ``overrides.task``; none from Python
    without Hydra)."""
    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    hydra = cfg.get("hydra") if "hydra" in cfg else None
    return list(hydra.overrides.task) if hydra is not None else []


def versions() -> dict[str, str]:
    """The versions a run ran with: Python, torch, Lightning and this package."""
    import lightning
    import torch

    try:
        package = version("progan-lightning")
    except PackageNotFoundError:
        package = "unknown (not installed)"
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "lightning": str(lightning.__version__),
        "progan-lightning": package,
    }


def recorded_overrides(run_dir: str | Path) -> list[str] | None:
    """The overrides ``run_dir``'s run was started with, or None when it has no record.

    Raises:
        ValueError: The record is not a list of overrides.
    """
    path = Path(run_dir).expanduser() / RECORD_DIR / OVERRIDES_NAME
    if not path.is_file():
        return None
    try:
        overrides = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(
            f"{path} is not readable YAML ({problem}{where}); restore it from a copy"
        ) from None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(
            f"{path} is not a list of overrides (one `key=value` string per item); restore it "
            "from a copy"
        )
    return overrides


def recorded_cwd(run_dir: str | Path) -> Path | None:
    """The folder ``run_dir``'s run was started in (``run.yaml``'s ``cwd``: relative paths
    among its overrides are relative to it), or None when the record does not say."""
    path = Path(run_dir).expanduser() / RECORD_DIR / RUN_NAME
    try:
        cwd = yaml.safe_load(path.read_text()).get("cwd")
    except (OSError, yaml.YAMLError, UnicodeDecodeError, AttributeError):
        return None
    return Path(cwd) if isinstance(cwd, str) and cwd else None


def run_of(path: str | Path) -> Path | None:
    """The training run whose folder ``path`` names or lies in: the folder itself, the
    folder of its export (``RUN/generator.safetensors``) or of a checkpoint
    (``RUN/checkpoints/FILE``); None unless that folder holds a run's record."""
    path = Path(path).expanduser()
    if path.is_dir():
        run = path
    elif path.parent.name == CHECKPOINT_DIR:
        run = path.parent.parent
    else:
        run = path.parent
    return run if recorded_overrides(run) is not None else None


def _dump(path: Path, value: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(yaml.safe_dump(value, sort_keys=False)))


def write_record(
    run_dir: str | Path, cfg: DictConfig, overrides: list[str], resume: bool = False
) -> Path:
    """Record a run in ``<run_dir>/.hydra/``: a fresh run (or a resume in a folder without a
    record) writes ``config.yaml``, ``overrides.yaml`` and ``run.yaml``; a resume of a
    recorded run appends an entry to ``resumes.yaml`` holding its overrides that were not
    recorded already, and leaves the rest as it is.

    Args:
        run_dir: The run dir (``paths.output_dir``).
        cfg: The run's config.
        overrides: The run's command-line overrides (on a resume by folder, the recorded ones
            come first).
        resume: Whether the run resumes from a checkpoint (``ckpt_path``).

    Returns:
        The file written last.
    """
    folder = Path(run_dir).expanduser() / RECORD_DIR
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    original = recorded_overrides(run_dir) if resume else None
    if original is None or not (folder / CONFIG_NAME).is_file():
        _dump(folder / CONFIG_NAME, resolved_config(cfg))
        _dump(folder / RUN_NAME, {"started": started, "cwd": os.getcwd(), "versions": versions()})
        _dump(folder / OVERRIDES_NAME, list(overrides))
        return folder / OVERRIDES_NAME
    resumes_path = folder / RESUMES_NAME
    resumes = yaml.safe_load(resumes_path.read_text()) if resumes_path.is_file() else None
    entry = {
        "started": started,
        "cwd": os.getcwd(),
        "overrides": [o for o in overrides if o not in original],
        "versions": versions(),
    }
    _dump(resumes_path, [*(resumes if isinstance(resumes, list) else []), entry])
    return resumes_path
