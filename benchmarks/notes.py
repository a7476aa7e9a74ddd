"""The project's own figures: ``progan-bench`` with its sections written into this checkout.

    python -m benchmarks.notes [progan-bench overrides ...]

Runs the benchmark exactly as ``progan-bench`` does (``conf/bench.yaml``) and replaces its
marked sections in ``docs/benchmarks.md`` of this checkout; ``bench.notes=PATH`` picks another
file (a relative path is taken from the checkout, not the working directory).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from progan_lightning.bench.run import run
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.cli.errors import user_errors

DOCS = "docs/benchmarks.md"
"""The reference page of current figures, relative to the checkout."""


def project_root() -> Path:
    """The checkout that holds this folder."""
    return Path(__file__).resolve().parents[1]


def notes_path(setting: str) -> Path:
    """A notes file as a path; a relative one is taken from :func:`project_root`."""
    path = Path(setting).expanduser()
    return path if path.is_absolute() else project_root() / path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
@user_errors
def main(cfg: DictConfig) -> None:
    """``python -m benchmarks.notes``: ``progan-bench`` into ``docs/benchmarks.md``."""
    with open_dict(cfg):
        cfg.bench.notes = str(notes_path(cfg.bench.notes or DOCS))
    run(cfg)


if __name__ == "__main__":
    main()
