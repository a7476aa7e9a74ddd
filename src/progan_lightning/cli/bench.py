"""``progan-bench`` / ``python -m progan_lightning.bench``: the training-speed benchmark."""

from __future__ import annotations

from omegaconf import DictConfig

from progan_lightning.cli.command import command
from progan_lightning.cli.config import import_when_run
from progan_lightning.cli.errors import user_errors


@command("bench")
@user_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point of the benchmark (``conf/bench.yaml``)."""
    run = import_when_run("progan_lightning.bench.run", "run")
    run(cfg)


if __name__ == "__main__":
    main()
