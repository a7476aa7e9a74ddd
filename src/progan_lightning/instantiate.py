"""Objects from the config: ``hydra.utils.instantiate`` with a config error kept as itself."""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from progan_lightning.faults import USER_ERRORS

# A constructor's TypeError is a config key it does not take (or lacks): the user's to fix too.
CONFIG_ERRORS = (*USER_ERRORS, TypeError)


def instantiate(cfg: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets a constructor's own error about a config value
    through as itself (one message naming the key), not wrapped in Hydra's
    ``InstantiationException``."""
    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, CONFIG_ERRORS):
            raise err.__cause__ from None
        raise


def instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a name-keyed config group (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if c and "_target_" in c]
