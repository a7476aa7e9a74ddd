"""Start training from an official ProGAN pickle (the ``init_from`` key of the training config).

G, D and G_ema take the pickle's ``G``, ``D`` and ``Gs``; the optimizers start fresh and the
growth schedule is the config's, started at the resolution the pickle was trained to. The
config must describe the pickle's networks: every difference is named, with the value to set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from progan_lightning.networks import init_kwarg
from progan_lightning.official.convert import load_official
from progan_lightning.schedule import stage_resolution

log = logging.getLogger(__name__)

_DATA_KEYS = {"img_resolution": "data.resolution", "img_channels": "data.channels"}
"""Network arguments that the training config takes from the data."""


def _config_key(net: str, key: str) -> str:
    """The training-config key that sets ``key`` of network ``net`` (``G`` or ``D``)."""
    return _DATA_KEYS.get(key, f"model.{net}.{key}")


def architecture_differences(
    model: nn.Module, G: nn.Module, D: nn.Module
) -> list[tuple[str, Any, Any]]:
    """``(config key, the config's value, the pickle's value)`` for every constructor argument
    of ``model.G`` / ``model.D`` that differs from the pickle's ``G`` / ``D``: a data key once,
    and a D key not when the same G key differs alike (the config's D follows G's)."""
    diffs: dict[str, tuple[str, Any, Any]] = {}
    for net, mine, theirs in (("G", model.G, G), ("D", model.D, D)):
        keys = dict.fromkeys([*mine.init_kwargs, *theirs.init_kwargs])
        for key in keys:
            ours, official = init_kwarg(mine.init_kwargs, key), init_kwarg(theirs.init_kwargs, key)
            follows = net == "D" and diffs.get(f"model.G.{key}", ())[1:] == (ours, official)
            if ours != official and key != "num_classes" and not follows:
                diffs.setdefault(_config_key(net, key), (_config_key(net, key), ours, official))
        if mine.num_classes != theirs.num_classes:
            diffs.setdefault(
                "classes",
                ("the data's classes (data.labels)", mine.num_classes, theirs.num_classes),
            )
    return list(diffs.values())


def init_from_official(model: nn.Module, path: str | Path | None) -> dict[str, Any]:
    """Put the networks of an official pickle into ``model`` (``G``, ``D``, ``G_ema``).

    Args:
        model: The :class:`~progan_lightning.module.ProGAN` module, built from the config.
        path: The ``.pkl`` (``init_from``), or None for a fresh start.

    Returns:
        The growth arguments that start the schedule at the pickle's trained resolution
        (``{"start_resolution": R}``); ``{}`` when ``path`` is None.

    Raises:
        ValueError: The pickle cannot be read (see :func:`.convert.load_official`), or the
            config's networks differ from it: the message lists each key with the pickle's
            value.
    """
    if not path:
        return {}
    G, D, G_ema = load_official(path)
    diffs = architecture_differences(model, G, D)
    if diffs:
        listing = "; ".join(
            f"{key}: config {ours!r}, pickle {theirs!r}" for key, ours, theirs in diffs
        )
        overrides = " ".join(
            f"{key}={str(theirs).lower() if isinstance(theirs, bool) else theirs}"
            for key, _, theirs in diffs
            if not key.startswith("the data")
        )
        raise ValueError(
            f"init_from={path}: the config's networks differ from the pickle's ({listing}). "
            f"Train with the pickle's settings{': ' + overrides if overrides else ''}"
        )
    model.G.load_state_dict(G.state_dict())
    model.D.load_state_dict(D.state_dict())
    model.G_ema.load_state_dict(G_ema.state_dict())
    resolution = stage_resolution(G.trained_stage)
    if G.trained_alpha < 1.0:
        log.warning(
            f"init_from={path} was saved during the fade-in of {resolution}x{resolution} "
            f"(alpha {G.trained_alpha:.3f}); training starts at {resolution}x{resolution} "
            "faded in"
        )
    log.info(
        f"init_from={path}: G, D and G_ema from the pickle; growth from {resolution}x{resolution}"
    )
    return {"start_resolution": resolution}
