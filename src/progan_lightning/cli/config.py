"""Where the commands find their configs: found once, here.

``conf/`` at the top of the repository is the single source. A checkout (or an editable
install) reads it in place; a built wheel carries a copy as ``progan_lightning/conf``
(package data, see ``pyproject.toml``), so every command works after a plain install from
any working directory. Users add their own config directory on top with ``--config-dir`` or
``hydra.searchpath``. Importing this module also registers the resolvers the configs use
(``${auto_strategy:...}``, ``${env_path:...}``), so every command and test that composes them
has them.
"""

from __future__ import annotations

import os
from importlib import import_module
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import ListConfig, OmegaConf

from progan_lightning.console import route_to_log
from progan_lightning.faults import UserError
from progan_lightning.fs import check_folder, expand_path


def config_dir() -> Path:
    """The checkout's ``conf/`` if this module runs from one, else the packaged copy."""
    checkout = Path(__file__).resolve().parents[3] / "conf"
    if (checkout / "train.yaml").is_file():
        return checkout
    packaged = Path(str(files("progan_lightning") / "conf"))
    if not (packaged / "train.yaml").is_file():
        raise FileNotFoundError(
            f"progan_lightning has no configs: neither {checkout} nor {packaged} holds "
            "train.yaml; reinstall the package (pip install progan-lightning, or pip install "
            "-e . in a checkout)"
        )
    return packaged


CONFIG_DIR = str(config_dir())


def auto_strategy(devices: Any, num_nodes: Any = 1) -> str:
    """Lightning strategy for ``trainer.devices`` on ``trainer.num_nodes`` machines: plain
    for one process, else DDP that tolerates unused parameters (the D step leaves G unused;
    low stages leave top blocks unused), which plain ``ddp`` rejects. The one place of this
    rule: every trainer config takes its strategy from it."""
    single = devices in (1, "1") or (isinstance(devices, list | ListConfig) and len(devices) == 1)
    return "auto" if single and int(num_nodes) == 1 else "ddp_find_unused_parameters_true"


OmegaConf.register_new_resolver("auto_strategy", auto_strategy, replace=True)


def env_path(name: str, default: Any = None) -> Any:
    """The folder that environment variable ``name`` names (``~`` and ``$VARS`` expanded), or
    ``default`` when it is unset or empty (``PROGAN_LOG_DIR=`` in ``.env`` is the default, not
    the file system's root). The ``paths`` config takes its folders from it.

    Raises:
        UserError: the value names a file, or a variable that is not set.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return str(check_folder(expand_path(value, name), name))
    except UserError as error:
        raise UserError(
            f"{error}, in .env or the shell, or leave it empty for the default"
        ) from None


OmegaConf.register_new_resolver("env_path", env_path, replace=True)

PATH_VARIABLES = ("PROGAN_ROOT", "PROGAN_CACHE_DIR", "PROGAN_LOG_DIR")
"""The environment variables that name the ``paths`` config's folders."""


def check_path_variables() -> None:
    """Check :data:`PATH_VARIABLES` as :func:`env_path` reads them, before Hydra resolves
    the run dir from them (a resolver's error there reaches the user as a traceback).

    Raises:
        UserError: a variable names a file, or a variable that is not set.
    """
    for name in PATH_VARIABLES:
        env_path(name)


def import_when_run(module: str, name: str) -> Any:
    """``module.name``, imported by a command only when it runs, not at the top: ``--help``,
    ``--cfg`` and a refused command line answer without loading torch and Lightning (seconds
    on a small CPU).

    Lightning's lines (the ticks among them) and Python warnings then go through the
    handlers Hydra set up: the console and the run's log file
    (:func:`progan_lightning.console.route_to_log`).
    """
    try:
        return getattr(import_module(module), name)
    finally:
        route_to_log()
