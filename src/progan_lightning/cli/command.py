"""Every Hydra command's entry point, built once: ``hydra.main`` on the command's config, with
Hydra's own refusals of a command line as one line and exit status 2 (the body's user errors
are :func:`~progan_lightning.cli.errors.user_errors`'s).

Hydra parses and composes the command line inside ``hydra.main``, before the task function
runs, and reports a typo in its parser's words with status 1 (``LexerNoViableAltException``,
``missing EQUAL``, ``Key 'resolutoin' is not in struct``). :func:`command` says instead how to
quote a value and which settings are close to a misspelt one
(:func:`~progan_lightning.cli.errors.command_line_message`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hydra
from hydra._internal import utils as hydra_utils
from omegaconf import DictConfig

from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.cli.errors import command_line_message, exit_with, full_error
from progan_lightning.console import route_to_log

TaskFunction = Callable[..., Any]


def command(config_name: str) -> Callable[[TaskFunction], Callable[..., Any]]:
    """Decorate a command's task function: ``@command("train")`` runs it as ``hydra.main``
    on ``conf/train.yaml``, with Hydra's command-line errors as one line and status 2.
    As with ``hydra.main``, ``main(cfg)`` runs the body on a composed config."""

    def decorate(task: TaskFunction) -> Callable[..., Any]:
        main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(
            task
        )

        @functools.wraps(task)
        def entry(cfg: DictConfig | None = None) -> Any:
            if cfg is not None:
                return main(cfg)
            route_to_log()
            with command_line_errors(config_name, sys.argv[1:]):
                return main()

        return entry

    return decorate


@contextmanager
def command_line_errors(config_name: str, argv: list[str]) -> Iterator[None]:
    """While Hydra runs: an error of the command line (an override it cannot parse, a key
    not in the config, a config option that does not exist) ends the command with one line
    and status 2. Other errors keep Hydra's report; ``HYDRA_FULL_ERROR=1`` keeps them all.

    Hydra reports errors in its internal ``run_and_report``; this hands it a first look.
    """
    report = getattr(hydra_utils, "run_and_report", None)
    if report is None:  # another Hydra: its own reports
        yield
        return

    def first_look(func: Callable[[], Any]) -> Any:
        try:
            return func()
        except Exception as error:
            message = None if full_error() else command_line_message(error, config_name, argv)
            if message is None:
                return report(functools.partial(_reraise, error))
            exit_with(message)

    hydra_utils.run_and_report = first_look
    try:
        yield
    finally:
        hydra_utils.run_and_report = report


def _reraise(error: BaseException) -> Any:
    raise error
