"""The official presets against config.py / train.py, copied here by hand, and the per-GPU rule."""

from __future__ import annotations

import ast
import inspect

import pytest

from progan_lightning import presets
from progan_lightning.presets import for_world_size, preset

RES = [4, 8, 16, 32, 64, 128, 256, 512, 1024]
TICKS = {4: 160, 8: 140, 16: 120, 32: 100, 64: 80, 128: 60, 256: 40, 512: 20, 1024: 10}


def full(table: dict[int, float], base: float) -> dict[int, float]:
    """``table.get(res, base)`` for every resolution (the official lookup)."""
    return {r: table.get(r, base) for r in RES}


# Hand-copied from config.py ("Config presets (choose one)"), resolved with the
# TrainingSchedule defaults (minibatch_base fallback, lrate base 0.001, lod 600/600).
OFFICIAL = {
    "v1": {
        "num_gpus": 1,
        "batch_size": full({256: 14, 512: 6, 1024: 3}, 16),
        "lr": full({}, 0.001),
        "stable_kimg": 800,
        "fade_kimg": 800,
        "total_kimg": 19000,
        "mbstd_group_size": 16,
    },
    "v2-1gpu": {
        "num_gpus": 1,
        "batch_size": full({4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}, 4),
        "lr": full({1024: 0.0015}, 0.001),
        "stable_kimg": 600,
        "fade_kimg": 600,
        "total_kimg": 12000,
        "mbstd_group_size": 4,
    },
    "v2-2gpus": {
        "num_gpus": 2,
        "batch_size": full({4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8}, 8),
        "lr": full({512: 0.0015, 1024: 0.002}, 0.001),
        "stable_kimg": 600,
        "fade_kimg": 600,
        "total_kimg": 12000,
        "mbstd_group_size": 4,
    },
    "v2-4gpus": {
        "num_gpus": 4,
        "batch_size": full({4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16}, 16),
        "lr": full({256: 0.0015, 512: 0.002, 1024: 0.003}, 0.001),
        "stable_kimg": 600,
        "fade_kimg": 600,
        "total_kimg": 12000,
        "mbstd_group_size": 4,
    },
    "v2-8gpus": {
        "num_gpus": 8,
        "batch_size": full({4: 512, 8: 256, 16: 128, 32: 64, 64: 32}, 32),
        "lr": full({128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}, 0.001),
        "stable_kimg": 600,
        "fade_kimg": 600,
        "total_kimg": 12000,
        "mbstd_group_size": 4,
    },
}
CAPS = {"fp32": {256: 16, 512: 8, 1024: 4}, "fp16": {512: 16, 1024: 8}}


@pytest.mark.parametrize("name", list(OFFICIAL))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_every_preset_value_is_the_official_one(name, precision):
    got = preset(name, precision)
    for key, value in OFFICIAL[name].items():
        assert got[key] == value, key
    assert got["tick_kimg"] == TICKS
    assert got["precision"] == precision
    # At their own GPU count the official presets are already within the rule.
    assert got["changes"] == []
    assert got["batch_gpu"] == {r: b // got["num_gpus"] for r, b in got["batch_size"].items()}


def test_names_with_and_without_the_official_prefix():
    assert preset("preset-v2-4gpus") == preset("v2-4gpus")
    assert preset("preset-v1-1gpu") == preset("v1")
    assert preset("v1")["name"] == "preset-v1-1gpu"
    with pytest.raises(ValueError, match="Unknown preset 'v3'.*preset-v2-8gpus"):
        preset("v3")
    with pytest.raises(ValueError, match="precision='bf16'.*fp32, fp16"):
        preset("v1", "bf16")


def test_training_schedule_defaults_and_precision_caps():
    d = presets.SCHEDULE_DEFAULTS
    assert (d["lod_initial_resolution"], d["lod_training_kimg"], d["lod_transition_kimg"]) == (
        4,
        600,
        600,
    )
    assert (d["minibatch_base"], d["G_lrate_base"], d["D_lrate_base"]) == (16, 0.001, 0.001)
    assert (d["tick_kimg_base"], d["tick_kimg_dict"]) == (160, TICKS)
    assert presets.MAX_MINIBATCH_PER_GPU == CAPS
    assert (presets.TOTAL_KIMG_DEFAULT, presets.MBSTD_GROUP_SIZE_DEFAULT) == (15000, 4)
    # config.py sets D_lrate_dict = EasyDict(sched.G_lrate_dict) in every v2 preset.
    for cfg in presets.PRESETS.values():
        assert cfg.get("D_lrate_dict") == cfg.get("G_lrate_dict")


def test_the_module_is_pure_python():
    tree = ast.parse(inspect.getsource(presets))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= {"__future__", "typing"}


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 6, 8, 12, 16])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_every_global_batch_divides_evenly_and_respects_the_per_device_cap(world_size, precision):
    got = for_world_size(world_size, precision)
    assert got["num_gpus"] == world_size
    for res, size in got["batch_size"].items():
        assert size > 0 and size % world_size == 0, res
        assert got["batch_gpu"][res] * world_size == size
        if res in CAPS[precision]:
            assert got["batch_gpu"][res] <= CAPS[precision][res], res
    for res, before, after in got["changes"]:
        assert got["batch_size"][res] == after and before != after


@pytest.mark.parametrize(
    "n,name", [(1, "v2-1gpu"), (2, "v2-2gpus"), (4, "v2-4gpus"), (8, "v2-8gpus")]
)
def test_official_gpu_counts_get_their_own_preset_unchanged(n, name):
    assert for_world_size(n) == preset(name)
    assert for_world_size(n // 2 or 1, nodes=2 if n > 1 else 1) == preset(name)


def test_three_gpus_round_the_two_gpu_preset_down():
    got = for_world_size(3)
    assert got["name"] == "preset-v2-2gpus"
    base = OFFICIAL["v2-2gpus"]["batch_size"]
    # minibatch -= minibatch % 3; no cap binds (256: 48, 512: 24, 1024: 12).
    expected = {r: b - b % 3 for r, b in base.items()}
    assert got["batch_size"] == expected
    assert expected == {4: 255, 8: 255, 16: 126, 32: 63, 64: 30, 128: 15, 256: 6, 512: 6, 1024: 6}
    assert got["changes"] == [(r, base[r], expected[r]) for r in RES]
    assert got["lr"] == OFFICIAL["v2-2gpus"]["lr"]


def test_six_gpus_round_the_four_gpu_preset_down():
    got = for_world_size(6)
    assert got["name"] == "preset-v2-4gpus"
    assert got["batch_size"] == {
        4: 510,
        8: 252,
        16: 126,
        32: 60,
        64: 30,
        128: 12,
        256: 12,
        512: 12,
        1024: 12,
    }


def test_the_per_gpu_cap_binds_when_a_preset_runs_on_more_gpus():
    # v1 (1024: 3) on 1 GPU is below the cap; the 8-GPU preset's 1024 batch (32) on 4 GPUs
    # is capped at 4 * 4 = 16 in fp32 and 8 * 4 = 32 in fp16.
    assert preset("v2-8gpus", "fp32", num_gpus=4)["batch_size"][1024] == 16
    assert preset("v2-8gpus", "fp16", num_gpus=4)["batch_size"][1024] == 32
    changes = preset("v2-8gpus", "fp32", num_gpus=4)["changes"]
    assert (256, 32, 32) not in changes and (1024, 32, 16) in changes


def test_a_batch_that_would_become_zero_names_its_resolution():
    with pytest.raises(ValueError, match=r"1024x1024 minibatch of 3 becomes 0.*multiple of 4"):
        preset("v1", num_gpus=4)
    with pytest.raises(ValueError, match=r"4x4 minibatch of 512 becomes 0"):
        for_world_size(1000)
    with pytest.raises(ValueError, match="world_size=0"):
        for_world_size(0)
