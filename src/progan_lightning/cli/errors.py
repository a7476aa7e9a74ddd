"""User errors on the command line: one message and exit status 2, for every command.

A command's body wrapped in :func:`user_errors` turns a mistake the user can fix into its one
message on stderr and :data:`~progan_lightning.faults.USER_ERROR_EXIT_CODE`, without the
traceback around it; ``HYDRA_FULL_ERROR=1`` shows the traceback as well. Anything else (a
bug) keeps its traceback. A user error is one of :data:`USER_ERRORS` (the library's refusals
of a bad value, path or file are ``ValueError``, ``faults.UserError`` and the ``OSError``
kinds below), a missing mandatory config value (``source=???``), or either of them raised
while Hydra instantiates a config node. A file that could not be written
(:class:`~progan_lightning.faults.WriteError`) is one message and status 4.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from progan_lightning.faults import USER_ERROR_EXIT_CODE, WRITE_FAILED_EXIT_CODE, WriteError

USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
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


def exit_with(message: str, status: int = USER_ERROR_EXIT_CODE) -> NoReturn:
    """Print ``message`` as the one error line on stderr and exit with ``status`` (2: a user
    error)."""
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
            if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            exit_with(message, exit_status(error))

    return wrapper  # type: ignore[return-value]
