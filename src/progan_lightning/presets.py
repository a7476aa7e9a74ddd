"""The official training presets as data, and the official rule that fits a batch to GPUs.

Pure Python (no torch, no Lightning). Transcribed from tkarras/progressive_growing_of_gans
(TensorFlow version, stored commit fdc55b9):

- ``config.py``, block "Config presets (choose one)": the ``-preset-v1-1gpu`` line (the
  paper's CelebA-HQ run) and the four ``-preset-v2-*`` lines; block "Numerical precision
  (choose one)": ``max_minibatch_per_gpu`` of ``-fp32`` and ``-fp16``.
- ``train.py``, ``TrainingSchedule.__init__``: its keyword defaults and how it turns them into
  one phase's minibatch, learning rates and tick length; ``train_progressive_gan``: the
  default ``total_kimg``; ``networks.py`` ``D_paper``: the default ``mbstd_group_size``.

:func:`preset` and :func:`for_world_size` return plain dicts keyed like the ``growth``
config (``batch_size``, ``lr``, ``stable_kimg``, ``fade_kimg``, ``total_kimg``,
``tick_kimg``) plus ``mbstd_group_size``, with an explicit value for every resolution from 4
to 1024 (the official fallback is ``*_base`` for a resolution missing from a dict, not the
nearest lower resolution as in ``growth``, so nothing here relies on a fallback).
"""

from __future__ import annotations

from typing import Any

RESOLUTIONS = (4, 8, 16, 32, 64, 128, 256, 512, 1024)

# train.py, TrainingSchedule.__init__ keyword defaults (the values every preset starts from).
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "lod_initial_resolution": 4,  # Image resolution used at the beginning.
    "lod_training_kimg": 600,  # Thousands of real images to show before doubling the resolution.
    "lod_transition_kimg": 600,  # Thousands of real images to show when fading in new layers.
    "minibatch_base": 16,  # Maximum minibatch size, divided evenly among GPUs.
    "minibatch_dict": {},  # Resolution-specific overrides.
    "max_minibatch_per_gpu": {},  # Resolution-specific maximum minibatch size per GPU.
    "G_lrate_base": 0.001,  # Learning rate for the generator.
    "G_lrate_dict": {},  # Resolution-specific overrides.
    "D_lrate_base": 0.001,  # Learning rate for the discriminator.
    "D_lrate_dict": {},  # Resolution-specific overrides.
    "tick_kimg_base": 160,  # Default interval of progress snapshots.
    "tick_kimg_dict": {
        4: 160,
        8: 140,
        16: 120,
        32: 100,
        64: 80,
        128: 60,
        256: 40,
        512: 20,
        1024: 10,
    },
}

# train.py, train_progressive_gan(total_kimg=15000); networks.py, D_paper(mbstd_group_size=4).
TOTAL_KIMG_DEFAULT = 15000
MBSTD_GROUP_SIZE_DEFAULT = 4

# config.py, "Config presets (choose one)". Each entry holds exactly what its line sets.
PRESETS: dict[str, dict[str, Any]] = {
    # desc += '-preset-v1-1gpu'; num_gpus = 1; D.mbstd_group_size = 16;
    # sched.minibatch_base = 16; sched.minibatch_dict = {256: 14, 512: 6, 1024: 3};
    # sched.lod_training_kimg = 800; sched.lod_transition_kimg = 800; train.total_kimg = 19000
    "preset-v1-1gpu": {
        "num_gpus": 1,
        "mbstd_group_size": 16,
        "minibatch_base": 16,
        "minibatch_dict": {256: 14, 512: 6, 1024: 3},
        "lod_training_kimg": 800,
        "lod_transition_kimg": 800,
        "total_kimg": 19000,
    },
    # desc += '-preset-v2-1gpu'; num_gpus = 1; sched.minibatch_base = 4;
    # sched.minibatch_dict = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4};
    # sched.G_lrate_dict = {1024: 0.0015}; sched.D_lrate_dict = EasyDict(sched.G_lrate_dict);
    # train.total_kimg = 12000
    "preset-v2-1gpu": {
        "num_gpus": 1,
        "minibatch_base": 4,
        "minibatch_dict": {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4},
        "G_lrate_dict": {1024: 0.0015},
        "D_lrate_dict": {1024: 0.0015},
        "total_kimg": 12000,
    },
    # desc += '-preset-v2-2gpus'; num_gpus = 2; sched.minibatch_base = 8;
    # sched.minibatch_dict = {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8};
    # sched.G_lrate_dict = {512: 0.0015, 1024: 0.002}; sched.D_lrate_dict = (the same);
    # train.total_kimg = 12000
    "preset-v2-2gpus": {
        "num_gpus": 2,
        "minibatch_base": 8,
        "minibatch_dict": {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8},
        "G_lrate_dict": {512: 0.0015, 1024: 0.002},
        "D_lrate_dict": {512: 0.0015, 1024: 0.002},
        "total_kimg": 12000,
    },
    # desc += '-preset-v2-4gpus'; num_gpus = 4; sched.minibatch_base = 16;
    # sched.minibatch_dict = {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16};
    # sched.G_lrate_dict = {256: 0.0015, 512: 0.002, 1024: 0.003}; sched.D_lrate_dict = (same);
    # train.total_kimg = 12000
    "preset-v2-4gpus": {
        "num_gpus": 4,
        "minibatch_base": 16,
        "minibatch_dict": {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16},
        "G_lrate_dict": {256: 0.0015, 512: 0.002, 1024: 0.003},
        "D_lrate_dict": {256: 0.0015, 512: 0.002, 1024: 0.003},
        "total_kimg": 12000,
    },
    # desc += '-preset-v2-8gpus'; num_gpus = 8; sched.minibatch_base = 32;
    # sched.minibatch_dict = {4: 512, 8: 256, 16: 128, 32: 64, 64: 32};
    # sched.G_lrate_dict = {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003};
    # sched.D_lrate_dict = (the same); train.total_kimg = 12000
    "preset-v2-8gpus": {
        "num_gpus": 8,
        "minibatch_base": 32,
        "minibatch_dict": {4: 512, 8: 256, 16: 128, 32: 64, 64: 32},
        "G_lrate_dict": {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003},
        "D_lrate_dict": {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003},
        "total_kimg": 12000,
    },
}

# config.py, "Numerical precision (choose one)":
# desc += '-fp32'; sched.max_minibatch_per_gpu = {256: 16, 512: 8, 1024: 4}
# desc += '-fp16'; ... sched.max_minibatch_per_gpu = {512: 16, 1024: 8}
MAX_MINIBATCH_PER_GPU: dict[str, dict[int, int]] = {
    "fp32": {256: 16, 512: 8, 1024: 4},
    "fp16": {512: 16, 1024: 8},
}

V2_GPUS = (1, 2, 4, 8)


def _canonical(name: str) -> str:
    """``v1``, ``v2-4gpus``, ``preset-v2-4gpus``, ``v2-1gpu`` ... -> the official key."""
    key = name if name.startswith("preset-") else f"preset-{name}"
    if key == "preset-v1":
        key = "preset-v1-1gpu"
    if key not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; official presets: {', '.join(PRESETS)}")
    return key


def _v2_name(num_gpus: int) -> str:
    return f"preset-v2-{num_gpus}gpu" + ("s" if num_gpus > 1 else "")


def preset(name: str, precision: str = "fp32", num_gpus: int | None = None) -> dict[str, Any]:
    """One official preset, resolved per resolution as ``TrainingSchedule`` does.

    Per resolution: ``minibatch = minibatch_dict.get(res, minibatch_base)``; then
    ``minibatch -= minibatch % num_gpus``; then, where the precision has a per-GPU cap,
    ``minibatch = min(minibatch, max_minibatch_per_gpu[res] * num_gpus)``. Learning rates are
    ``G_lrate_dict.get(res, G_lrate_base)`` (the same for D in every official preset) and
    ticks ``tick_kimg_dict.get(res, tick_kimg_base)``.

    Args:
        name: ``v1`` (= ``preset-v1-1gpu``), ``v2-1gpu``, ``v2-2gpus``, ``v2-4gpus``,
            ``v2-8gpus``, with or without the ``preset-`` prefix.
        precision: ``fp32`` or ``fp16`` (the official per-GPU batch caps differ).
        num_gpus: GPUs to apply the rule for; None = the preset's own count.

    Returns:
        ``{"name", "num_gpus", "precision", "batch_size": {res: global batch},
        "batch_gpu": {res: per-GPU batch}, "lr": {res: lr}, "stable_kimg", "fade_kimg",
        "total_kimg", "tick_kimg": {res: kimg}, "mbstd_group_size",
        "changes": [(res, before, after), ...]}`` where ``changes`` lists the resolutions whose
        batch the rule changed from the preset's table.

    Raises:
        ValueError: An unknown name or precision, ``num_gpus < 1``, or a resolution whose
            batch the rule makes 0 (more GPUs than images in its batch).
    """
    key = _canonical(name)
    if precision not in MAX_MINIBATCH_PER_GPU:
        raise ValueError(f"precision={precision!r}; use one of {', '.join(MAX_MINIBATCH_PER_GPU)}")
    cfg = {**SCHEDULE_DEFAULTS, **PRESETS[key]}
    gpus = cfg["num_gpus"] if num_gpus is None else num_gpus
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"num_gpus={gpus!r} must be a positive integer")
    cap = MAX_MINIBATCH_PER_GPU[precision]

    batch, changes = {}, []
    for res in RESOLUTIONS:
        before = cfg["minibatch_dict"].get(res, cfg["minibatch_base"])
        size = before - before % gpus
        if res in cap:
            size = min(size, cap[res] * gpus)
        if size < 1:
            raise ValueError(
                f"{key} on {gpus} GPUs: the {res}x{res} minibatch of {before} becomes {size} "
                f"(it is rounded down to a multiple of {gpus}); use fewer GPUs"
            )
        if size != before:
            changes.append((res, before, size))
        batch[res] = size

    # D's table equals G's in every official preset (tests check it): one growth.lr serves both.
    lr = {res: cfg["G_lrate_dict"].get(res, cfg["G_lrate_base"]) for res in RESOLUTIONS}
    return {
        "name": key,
        "num_gpus": gpus,
        "precision": precision,
        "batch_size": batch,
        "batch_gpu": {res: size // gpus for res, size in batch.items()},
        "lr": lr,
        "stable_kimg": cfg["lod_training_kimg"],
        "fade_kimg": cfg["lod_transition_kimg"],
        "total_kimg": cfg.get("total_kimg", TOTAL_KIMG_DEFAULT),
        "tick_kimg": {
            res: cfg["tick_kimg_dict"].get(res, cfg["tick_kimg_base"]) for res in RESOLUTIONS
        },
        "mbstd_group_size": cfg.get("mbstd_group_size", MBSTD_GROUP_SIZE_DEFAULT),
        "changes": changes,
    }


def for_world_size(world_size: int, precision: str = "fp32", nodes: int = 1) -> dict[str, Any]:
    """The v2 preset for ``world_size * nodes`` GPUs.

    For 1, 2, 4 and 8 GPUs this is ``preset-v2-{n}gpu(s)`` itself. For any other count the
    official code has no preset; it applies its rule (round each batch down to a multiple of
    the GPU count, then the per-GPU cap) to whatever config it runs. The base chosen here is
    the nearest lower v2 preset (3 -> 2 GPUs, 6 -> 4, 12 -> 8): its lr table belongs to a
    batch no larger than the rounded one, and its per-GPU load only shrinks.

    Args:
        world_size: Processes per node (``trainer.devices``), or the whole world
            (``trainer.world_size``) with ``nodes=1``.
        precision: ``fp32`` or ``fp16``.
        nodes: Nodes (``trainer.num_nodes``); the rule runs for ``world_size * nodes`` GPUs.

    Returns:
        As :func:`preset`; ``name`` is the v2 preset the tables come from and ``num_gpus`` the
        count the rule ran for.
    """
    for label, value in (("world_size", world_size), ("nodes", nodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label}={value!r} must be a positive integer")
    gpus = world_size * nodes
    return preset(_v2_name(max(n for n in V2_GPUS if n <= gpus)), precision, gpus)
