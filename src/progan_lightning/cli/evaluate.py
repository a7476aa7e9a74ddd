"""``progan-evaluate``: the training metrics of a generator, or of the reals against
themselves (the floor).

    progan-evaluate source=reals num_images=2048                 # the floor of the data
    progan-evaluate source=outputs/.../generator.safetensors     # a generator against it
"""

from __future__ import annotations

from omegaconf import DictConfig

from progan_lightning.cli.command import command
from progan_lightning.cli.config import import_when_run
from progan_lightning.cli.errors import user_errors


@command("evaluate")
@user_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point (``conf/evaluate.yaml``)."""
    evaluate = import_when_run("progan_lightning.evaluate", "evaluate")
    evaluate(cfg)


if __name__ == "__main__":
    main()
