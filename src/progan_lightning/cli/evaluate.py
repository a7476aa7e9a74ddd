"""``progan-evaluate``: the training metrics of a generator, or of the reals against
themselves (the floor).

    progan-evaluate source=reals num_images=2048                 # the floor of the data
    progan-evaluate source=outputs/.../generator.safetensors     # a generator against it
    progan-evaluate source=outputs/quickstart/runs/<run>         # a run on its own data
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from progan_lightning.cli.command import command
from progan_lightning.cli.config import import_when_run
from progan_lightning.cli.errors import exit_with, user_errors
from progan_lightning.cli.resume import complete_argv, with_run_data


def main(cfg: DictConfig | None = None) -> None:
    """The command: with ``source=RUN`` (a training run's folder, export or checkpoint) and no
    data chosen, the run's recorded data overrides first (:func:`with_run_data`), then
    Hydra's run of :func:`task`.

    Args:
        cfg: A composed config to run as it is (from Python), as Hydra's main takes one.
    """
    if cfg is not None:
        return task(cfg)
    try:
        sys.argv[1:] = complete_argv(sys.argv[1:], with_run_data)
    except ValueError as error:
        exit_with(str(error))
    return task()


@command("evaluate")
@user_errors
def task(cfg: DictConfig) -> None:
    """Hydra entry point (``conf/evaluate.yaml``)."""
    evaluate = import_when_run("progan_lightning.evaluate", "evaluate")
    evaluate(cfg)


if __name__ == "__main__":
    main()
