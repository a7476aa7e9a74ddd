"""User errors on the command line: one message and exit status 2, for every command.

A command's body wrapped in :func:`user_errors` turns a mistake the user can fix into its one
message on stderr and :data:`~progan_lightning.faults.USER_ERROR_EXIT_CODE`, without the
traceback around it; ``HYDRA_FULL_ERROR=1`` shows the traceback as well. Anything else (a
bug) keeps its traceback. A user error is one of :data:`~progan_lightning.faults.USER_ERRORS`
(the library's refusals of a bad value, path or file), a missing mandatory config value
(``source=???``), or either of them raised while Hydra instantiates a config node. A file that
could not be written (:class:`~progan_lightning.faults.WriteError`) is one message and
status 4.

Before the body runs, Hydra parses and composes the command line; :func:`command_line_message`
words its refusals (an override it cannot parse, a key not in the config, an option that does
not exist) for :mod:`progan_lightning.cli.command`.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.faults import (
    USER_ERROR_EXIT_CODE,
    USER_ERRORS,
    WRITE_FAILED_EXIT_CODE,
    WriteError,
)

F = TypeVar("F", bound=Callable[..., Any])


def user_message(error: BaseException) -> str | None:
    """The one message of a user error, or None when ``error`` is not one (a bug)."""
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        return user_message(error.__cause__)
    if isinstance(error, WriteError):
        return error.message()
    if isinstance(error, MissingMandatoryValue):
        key = error.full_key or "a value"
        return f"{key} is not set (??? in the config); give it on the command line: {key}=..."
    if isinstance(error, USER_ERRORS):
        return str(error)
    return None


def exit_status(error: BaseException) -> int:
    """The exit status of a user error: 4 for a failed write, else 2."""
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        return exit_status(error.__cause__)
    return WRITE_FAILED_EXIT_CODE if isinstance(error, WriteError) else USER_ERROR_EXIT_CODE


def full_error() -> bool:
    """Whether ``HYDRA_FULL_ERROR=1`` asks for tracebacks instead of one line."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def exit_with(message: str, status: int = USER_ERROR_EXIT_CODE) -> NoReturn:
    """Print ``message`` as the one error line on stderr (and into the run's log file, where
    one is open) and exit with ``status`` (2: a user error)."""
    record = logging.LogRecord(__name__, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    sys.stderr.write(
        f"Error: {message}\n(exit status {status}; set HYDRA_FULL_ERROR=1 for the traceback)\n"
    )
    sys.exit(status)


def user_errors(command: F) -> F:
    """Wrap a command's body (a Hydra task function or an argparse ``main``): a user error
    ends it with one message and status 2, or re-raises under ``HYDRA_FULL_ERROR=1``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as error:
            message = user_message(error)
            if message is None or full_error():
                raise
            exit_with(message, exit_status(error))

    return wrapper  # type: ignore[return-value]


def command_line_message(error: BaseException, config_name: str, argv: list[str]) -> str | None:
    """The one message for Hydra's refusal of a command line (``argv``, the command's
    arguments), or None for any other error.

    Args:
        error: What Hydra raised while parsing ``argv`` and composing ``config_name``.
        config_name: The command's root config (``train``), to find keys close to a
            misspelt one.
        argv: The arguments after the command's name.
    """
    if isinstance(error, OverrideParseException):
        return _unparsed_message(error.override, argv)
    if isinstance(error, MissingConfigException) and error.options:
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        if group:
            return (
                f"{group}={option} is not a config of {group}; choose one of "
                f"{', '.join(sorted(error.options))}"
            )
    ambiguous = re.match(r"Ambiguous value for argument '(.+?)'\n", str(error))
    if isinstance(error, ConfigCompositionException) and ambiguous:
        key, _, value = ambiguous.group(1).partition("=")
        return (
            f"{key}={value}: a comma makes a sweep; quote the value as one string "
            f"('{key}=\"{value}\"'), give a list ({key}=[{value}]) or sweep with -m"
        )
    if isinstance(error, ConfigCompositionException) and isinstance(
        error.__cause__, ConfigKeyError | ConfigAttributeError
    ):
        key = error.__cause__.full_key
        if key:
            group, _, rest = key.partition(".")
            options = [f"{group}={option}" for option in options_holding(group, rest)]
            if options:
                return (
                    f"{key} is a setting of {' and '.join(options)}, not of the {group} "
                    f"config chosen; add {options[0]} to the command line"
                )
            close = close_keys(key, _composed_keys(config_name, argv, key))
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            return (
                f"{key} is not a setting of this command{hint} (`--cfg job` prints every "
                f"setting; +{key}=VALUE adds a new one)"
            )
    return None


def _unparsed_message(override: str, argv: list[str]) -> str:
    """How to quote an override Hydra could not parse."""
    if "=" not in override:  # a word of a value split off by an unquoted space
        index = argv.index(override) if override in argv else -1
        before = argv[index - 1] if index > 0 else ""
        if "=" in before and not before.startswith("-"):
            key, value = before.split("=", 1)
            example = f"'{key}=\"{value} {override}\"'"
        else:
            example = "'data.path=\"my images\"'"
        return (
            f"{override!r} is not a key=value override: a value with a space must be one "
            f"quoted argument, e.g. {example}"
        )
    key, value = override.split("=", 1)
    home = (
        f" (or let the shell expand it: {key}=$HOME{value[1:]})" if value.startswith("~/") else ""
    )
    return (
        f"cannot read the override {override}: quote a value holding ~, a space, non-ASCII "
        "letters or any of , = ' \" [ ] ( ) { } # & twice, for the shell and for Hydra: "
        f"'{key}=\"{value}\"'{home}"
    )


def options_holding(group: str, key: str) -> list[str]:
    """The options of config group ``group`` (``data``: ``folder``, ...) whose file sets
    ``key`` (dotted, under the group), e.g. ``path`` for ``data.path``."""
    folder = Path(CONFIG_DIR) / group
    found = []
    for file in sorted(folder.glob("*.yaml")) if key and folder.is_dir() else []:
        node: Any = OmegaConf.load(file)
        for part in key.split("."):
            if not isinstance(node, DictConfig) or part not in list(node.keys()):  # ??? too
                break
            node = node._get_node(part)
        else:
            found.append(file.stem)
    return found


def close_keys(key: str, keys: list[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``keys`` (dotted) close in spelling to ``key``, the closest first:
    those as deep as ``key`` (``data.resolution`` for ``data.resolutoin``) where any is."""
    depth = key.count(".")
    same_depth = [k for k in keys if k.count(".") == depth]
    return difflib.get_close_matches(key, same_depth, n=n, cutoff=0.8) or (
        difflib.get_close_matches(key, keys, n=n, cutoff=0.8)
    )


def _composed_keys(config_name: str, argv: list[str], bad_key: str) -> list[str]:
    """Every dotted key of the command's config composed with the other overrides of
    ``argv`` (or with none where those fail too); empty where it cannot be composed."""
    from hydra import compose

    others = [arg for arg in argv if "=" in arg and not arg.startswith("-") and bad_key not in arg]
    for overrides in (others, []):
        try:
            return list(dotted_keys(compose(config_name, overrides=overrides)))
        except Exception:  # a hint only: the error itself is reported
            continue
    return []


def dotted_keys(cfg: DictConfig, prefix: str = "") -> Iterator[str]:
    """``a``, ``a.b``, ... of every node of ``cfg`` (values not resolved)."""
    for key in cfg:
        name = f"{prefix}{key}"
        yield name
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            yield from dotted_keys(child, f"{name}.")
