"""The growth schedule against the official TrainingSchedule semantics."""

import pytest

from progan_lightning.schedule import (
    GrowthSchedule,
    check_resolution,
    resolution_stage,
    stage_resolution,
)


def make(**kw) -> GrowthSchedule:
    args = dict(
        start_resolution=4,
        final_resolution=32,
        stable_kimg=1,
        fade_kimg=2,
        batch_size={4: 64, 16: 32, 32: 16},
    )
    args.update(kw)
    return GrowthSchedule(**args)


def test_phase_order_and_boundaries():
    s = make()
    assert [p.name for p in s.phases] == [
        "stable4", "fade8", "stable8", "fade16", "stable16", "fade32", "stable32",
    ]  # fmt: skip
    starts = [p.start_nimg for p in s.phases]
    assert starts == [0, 1000, 3000, 4000, 6000, 7000, 9000]
    assert s.total_nimg == 10000  # end of the last stable phase
    assert [p.stage for p in s.phases] == [0, 1, 1, 2, 2, 3, 3]


def test_phase_at_boundaries():
    s = make()
    assert s.phase_at(0).name == "stable4"
    assert s.phase_at(999).name == "stable4"
    assert s.phase_at(1000).name == "fade8"
    assert s.phase_at(2999).name == "fade8"
    assert s.phase_at(3000).name == "stable8"
    assert s.phase_at(10**9).name == "stable32"  # past the end: stays in the last phase
    assert s.next_boundary(1500) == 3000
    assert s.next_boundary(9500) == 10000


def test_alpha_ramps_linearly_during_fade_and_is_one_when_stable():
    s = make()
    fade8 = s.phase_at(1000)
    assert fade8.alpha(1000) == 0.0
    assert fade8.alpha(1500) == pytest.approx(0.25)
    assert fade8.alpha(2000) == pytest.approx(0.5)
    assert fade8.alpha(2999) == pytest.approx(0.9995)
    assert s.phase_at(0).alpha(500) == 1.0
    assert s.phase_at(3500).alpha(3500) == 1.0


def test_batch_sizes_per_resolution_fall_back_to_nearest_lower_key():
    s = make()
    sizes = {p.name: p.batch_size for p in s.phases}
    assert sizes["stable4"] == 64
    assert sizes["fade8"] == 64  # no key 8: use 4's
    assert sizes["fade16"] == 32
    assert sizes["stable32"] == 16


def test_phase_lengths_per_resolution():
    s = make(stable_kimg={4: 1, 32: 4}, fade_kimg={4: 2, 16: 0.5})
    lengths = {p.name: p.end_nimg - p.start_nimg for p in s.phases}
    assert lengths == {
        "stable4": 1000, "fade8": 2000, "stable8": 1000, "fade16": 500,
        "stable16": 1000, "fade32": 500, "stable32": 4000,
    }  # fmt: skip


def test_string_keys_from_the_command_line_work():
    s = make(batch_size={"4": 8, "16": 4}, lr={"4": 1e-3, "32": 2e-3})
    assert s.phase_at(0).batch_size == 8
    assert s.phase_at(4000).batch_size == 4
    assert s.phase_at(9500).lr == 2e-3
    assert s.phase_at(0).lr == 1e-3


def test_total_kimg_extends_or_truncates():
    longer = make(total_kimg=20)
    assert longer.phases[-1].end_nimg == 20000
    shorter = make(total_kimg=3.5)
    assert [p.name for p in shorter.phases] == ["stable4", "fade8", "stable8"]
    assert shorter.next_boundary(3200) == 3500


def test_no_fade_and_no_growing():
    s = make(fade_kimg=0)
    assert all(not p.fading for p in s.phases)
    assert len(s.phases) == 4
    flat = make(start_resolution=32)
    assert [p.name for p in flat.phases] == ["stable32"]


@pytest.mark.parametrize("value", [48, 2, 0, -4, 3.0, True])
def test_bad_resolution_names_value_and_fix(value):
    with pytest.raises(ValueError, match=r"power of two"):
        check_resolution(value, "data.resolution")
    with pytest.raises(ValueError, match="data.resolution"):
        make(final_resolution=value)


def test_bad_values_fail_early_with_the_key():
    with pytest.raises(ValueError, match="growth.start_resolution=64"):
        make(start_resolution=64)
    with pytest.raises(ValueError, match="growth.batch_size"):
        make(batch_size=0)
    with pytest.raises(ValueError, match="growth.batch_size has no value for resolution 4"):
        make(batch_size={8: 16})
    with pytest.raises(ValueError, match="growth.stable_kimg at 4x4 is 0"):
        make(stable_kimg=0)
    with pytest.raises(ValueError, match="growth.fade_kimg at 16x16 is -1"):
        make(fade_kimg={4: 1, 16: -1})


def test_lr_rampdown_falls_linearly_to_zero_over_the_last_kimg():
    s = make(lr_rampdown_kimg=4)  # total 10000 images: the ramp covers 6000..10000
    assert s.lr_scale(0) == s.lr_scale(6000) == 1.0
    assert s.lr_scale(7000) == pytest.approx(0.75)
    assert s.lr_scale(9984) == pytest.approx(16 / 4000)  # the last batch of 16 still moves
    assert s.lr_scale(10000) == s.lr_scale(12000) == 0.0
    assert "lr ramp-down  kimg     6.000 ->    10.000" in s.describe()
    # Longer than the run: the fall starts at once, from (total / ramp).
    assert make(lr_rampdown_kimg=20).lr_scale(0) == pytest.approx(0.5)
    # Off (the official schedule): constant.
    assert make().lr_scale(9999) == 1.0 and "ramp-down" not in make().describe()


@pytest.mark.parametrize("value", [-1, "fast"])
def test_lr_rampdown_rejects_negative_or_non_numbers(value):
    with pytest.raises(ValueError, match=rf"growth.lr_rampdown_kimg={value!r}.*or 0"):
        make(lr_rampdown_kimg=value)


def test_stage_and_resolution_are_inverse_and_the_papers_indexing():
    for stage in range(9):  # 4x4 .. 1024x1024
        resolution = stage_resolution(stage)
        assert resolution == 4 * 2**stage and resolution_stage(resolution) == stage
    assert [stage_resolution(s) for s in range(resolution_stage(64) + 1)] == [4, 8, 16, 32, 64]
