"""The run's growth schedule, resolved once: the growth settings, an official preset, the world
size, the precision and D's minibatch-stddev group -> the laid-out :class:`GrowthSchedule`.

Pure (no Lightning): ``train.build`` calls :func:`resolve_growth` once, before any process is
launched, and hands the result to the growth callback, which only applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from progan_lightning import presets
from progan_lightning.layers import mbstd_group
from progan_lightning.schedule import GrowthSchedule

PRESET_KEYS = ("batch_size", "lr", "stable_kimg", "fade_kimg", "total_kimg")
"""Growth settings an official preset supplies where the config leaves them null."""


@dataclass(frozen=True)
class GrowthPlan:
    """A growth schedule resolved for one run.

    Attributes:
        schedule: The laid-out schedule.
        world_size: Processes sharing each global batch (devices x nodes).
        caps: ``fp32`` or ``fp16``: the official per-GPU batch caps a preset was fitted with.
        mbstd_group_size: D's minibatch-stddev group the batches were checked against.
        preset: The resolved official preset (:func:`presets.preset`'s dict, its
            ``changes`` including the minibatch-stddev rounding), or None without one.
        notes: Lines worth logging (the batch sizes a preset's rule changed).
        warnings: Lines worth a warning (a preset's stddev group differs from the run's, a
            per-device batch shrinks the group).
    """

    schedule: GrowthSchedule
    world_size: int
    caps: str
    mbstd_group_size: int
    preset: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())


def batch_caps(precision: str) -> str:
    """The official per-GPU batch caps of a resolved precision: ``fp16`` for fp16 and bf16,
    else ``fp32``."""
    return "fp16" if precision in ("fp16", "bf16") else "fp32"


def resolve_growth(
    settings: Mapping[str, Any],
    preset: str | None,
    world_size: int,
    precision: str = "fp32",
    mbstd_group_size: int = 0,
) -> GrowthPlan:
    """Lay out and check the growth schedule of a run.

    With ``preset`` (``auto`` or an official name) the preset supplies each of
    :data:`PRESET_KEYS` that ``settings`` leaves None, fitted to ``world_size`` by the official
    rule with the batch caps of ``precision``. Where that rule leaves a per-device batch above
    ``mbstd_group_size`` but not a multiple of it (3 devices: 255 at 4x4), the global batch is
    rounded further down to a multiple of ``world_size * mbstd_group_size`` (252): the official
    minibatch-stddev reshape needs whole groups.

    Args:
        settings: :class:`GrowthSchedule`'s arguments (the ``growth`` config; None where a
            preset supplies the value).
        preset: None, ``auto`` (the v2 preset of ``world_size``) or an official preset name.
        world_size: Processes sharing each global batch (devices x nodes).
        precision: The precision the step runs in, ``auto`` already resolved.
        mbstd_group_size: ``model.D.mbstd_group_size`` (0: no minibatch-stddev layer).

    Raises:
        ValueError: A setting is invalid, a batch becomes 0 or does not divide over
            ``world_size``, or a per-device batch leaves a minibatch-stddev group of one.
    """
    caps = batch_caps(precision)
    values = None if preset is None else fit_preset(preset, world_size, caps, mbstd_group_size)
    full = dict(settings)
    for name in PRESET_KEYS if values is not None else ():
        if full[name] is None:
            full[name] = values[name]
    schedule = GrowthSchedule(**full)
    notes, warnings = [], []
    if values is not None:
        changed = [
            f"{res}x{res} {before} -> {after}"
            for res, before, after in values["changes"]
            if res <= schedule.final_resolution
        ]
        if changed and settings.get("batch_size") is None:
            notes.append(
                f"[growth] {values['name']} on {world_size} devices ({caps} caps), global "
                f"batch changed: {', '.join(changed)}"
            )
        if values["mbstd_group_size"] != mbstd_group_size:
            warnings.append(
                f"growth.preset={preset} ({values['name']}) uses "
                f"model.D.mbstd_group_size={values['mbstd_group_size']}, this run "
                f"{mbstd_group_size}: set model.D.mbstd_group_size={values['mbstd_group_size']} "
                "for the official setup"
            )
    shrunk = check_world_size(schedule, world_size, mbstd_group_size)
    if shrunk:
        warnings.append(shrunk)
    return GrowthPlan(
        schedule, world_size, caps, mbstd_group_size, values, tuple(notes), tuple(warnings)
    )


def fit_preset(name: str, world_size: int, caps: str, mbstd_group_size: int) -> dict[str, Any]:
    """The official preset ``name`` (``auto``: the v2 one of ``world_size``) for
    ``world_size`` devices and ``caps``, its batches rounded to whole minibatch-stddev groups
    (see :func:`resolve_growth`); ``changes`` lists every batch that differs from its table.

    Raises:
        ValueError: An unknown preset, or a batch size that becomes 0.
    """
    if name == "auto":
        values = presets.for_world_size(world_size, caps)
    else:
        values = presets.preset(name, caps, num_gpus=world_size)
    batch = dict(values["batch_size"])
    changes = {res: (before, after) for res, before, after in values["changes"]}
    for res, size in batch.items():
        per_device = size // world_size
        if mbstd_group_size >= 2 and per_device > mbstd_group_size:
            whole = size - size % (world_size * mbstd_group_size)
            if whole != size:
                changes[res] = (changes.get(res, (size,))[0], whole)
                batch[res] = whole
    return {
        **values,
        "batch_size": batch,
        "changes": [(res, *changes[res]) for res in sorted(changes)],
    }


def check_world_size(
    schedule: GrowthSchedule, world_size: int, mbstd_group_size: int = 0
) -> str | None:
    """Fail if a global batch does not split evenly over ``world_size`` devices, or if a
    per-device batch leaves the minibatch-stddev layer a group of one (a constant).

    Returns:
        A warning naming the resolutions where the per-device batch shrinks the group below
        ``mbstd_group_size`` (it drops to the largest divisor of the batch), or None.

    Raises:
        ValueError: A batch does not divide, or leaves a group of one.
    """
    shrunk: dict[str, str] = {}
    for phase in schedule.phases:
        res = f"{phase.resolution}x{phase.resolution}"
        if phase.batch_size % world_size:
            raise ValueError(
                f"growth.batch_size={phase.batch_size} at {res} does not divide over "
                f"{world_size} devices; use a multiple of {world_size} (batch sizes are "
                "global)"
            )
        per_device = phase.batch_size // world_size
        group = mbstd_group(mbstd_group_size, per_device)
        if mbstd_group_size and group == 1:
            raise ValueError(
                f"growth.batch_size={phase.batch_size} at {res} is {per_device} per device "
                f"over {world_size} devices: the minibatch-stddev group "
                f"(model.D.mbstd_group_size={mbstd_group_size}) drops to 1 and the layer "
                "outputs a constant; use a per-device batch with a divisor >= 2 (e.g. "
                f"{2 * world_size * max(1, per_device // 2)} in all) or set "
                "model.D.mbstd_group_size=0"
            )
        if mbstd_group_size and group < mbstd_group_size:
            shrunk[res] = f"{res} (batch {per_device} per device: group {group})"
    if not shrunk:
        return None
    return (
        f"model.D.mbstd_group_size={mbstd_group_size} shrinks at "
        + ", ".join(shrunk.values())
        + "; the group is the largest divisor of the per-device batch up to the size"
    )
