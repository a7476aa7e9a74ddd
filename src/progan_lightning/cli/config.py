"""Where the commands find their configs: found once, here.

``conf/`` at the top of the repository is the single source. A checkout (or an editable
install) reads it in place; a built wheel carries a copy as ``progan_lightning/conf``
(package data, see ``pyproject.toml``), so every command works after a plain install from
any working directory. Users add their own config directory on top with ``--config-dir`` or
``hydra.searchpath``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


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
