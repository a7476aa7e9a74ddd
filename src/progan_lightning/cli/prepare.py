"""``progan-prepare``: prepare the multi-resolution data cache before training.

    progan-prepare experiment=celebahq data.path=/data/celebahq-1024 [verify=true]

composes ``conf/train.yaml`` exactly as training does (``conf/prepare.yaml`` adds
``verify``), builds (or finds) the cache that training will use, and prints what it holds; a
multi-GPU job started afterwards with the same overrides begins training at once.
``verify=true`` checks the SHA-256 of every file of a finished cache and rebuilds a damaged
one (opening a cache checks sizes, and the checksums of caches under 1 GiB).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from progan_lightning.cli.command import command
from progan_lightning.cli.config import import_when_run
from progan_lightning.cli.errors import user_errors
from progan_lightning.data.cache import MANIFEST, cache_problems, read_manifest

log = logging.getLogger(__name__)


def prepare(cfg: DictConfig) -> dict[str, Any]:
    """Build the cache for ``cfg.data`` and return its manifest plus ``path`` and ``bytes``."""
    build_datamodule = import_when_run("progan_lightning.data.datamodule", "build_datamodule")

    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    path = Path(datamodule.cache_path)
    if cfg.get("verify"):
        problems = cache_problems(path, full=True)
        if problems:
            log.warning(f"the data cache {path} is damaged ({'; '.join(problems)}); rebuilding it")
            (path / MANIFEST).unlink()  # Marks it unfinished: prepare_data builds it again.
            datamodule.prepare_data()
        log.info(f"Data cache verified: every file matches its SHA-256 ({path})")
    manifest = read_manifest(path)
    size = sum(file.stat().st_size for file in path.iterdir())
    formats = sorted(set(manifest["level_format"].values()))
    log.info(
        "Data cache ready: %s\n  %d images at %s px (%d files skipped, %d upscaled), "
        "%.2f GB on disk (%s)",
        path,
        manifest["num_images"],
        ", ".join(str(res) for res in manifest["levels"]),
        manifest["num_skipped"],
        manifest["num_upscaled"],
        size / 1e9,
        ", ".join(formats),
    )
    return {**manifest, "path": str(path), "bytes": size}


@command("prepare")
@user_errors
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
