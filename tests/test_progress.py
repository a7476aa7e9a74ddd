"""progress.py: where training is, written by the growth callback, read by everyone else."""

from __future__ import annotations

from progan_lightning.progress import TrainingProgress
from progan_lightning.schedule import GrowthSchedule


def schedule() -> GrowthSchedule:
    # stable4 [0, 100), fade8 [100, 200), stable8 [200, 300)
    return GrowthSchedule(
        start_resolution=4, final_resolution=8, stable_kimg=0.1, fade_kimg=0.1, batch_size=10
    )


def test_a_batch_that_crosses_into_the_next_phase_ends_its_phase():
    progress = TrainingProgress(schedule=schedule())
    sched = progress.schedule
    progress.enter(sched.phase_at(0), 1.0)
    assert (progress.stage, progress.alpha, progress.phase_index) == (0, 1.0, 0)
    progress.cur_nimg = 90
    assert not progress.phase_ended and not progress.done
    progress.cur_nimg = 100
    assert progress.phase_ended and not progress.done
    progress.enter(sched.phase_at(100), 0.5)
    assert (progress.stage, progress.alpha, progress.lr_scale) == (1, 0.0, 0.5)
    assert not progress.phase_ended
    progress.cur_nimg = 150
    progress.enter(sched.phase_at(150), 1.0)
    assert progress.alpha == 0.5  # halfway through the fade-in


def test_the_run_is_done_at_the_schedules_end():
    progress = TrainingProgress(schedule=schedule())
    progress.enter(progress.schedule.phase_at(290), 1.0)
    progress.cur_nimg = 300
    assert progress.done


def test_the_checkpoint_entry_keeps_its_keys_and_round_trips():
    progress = TrainingProgress(cur_nimg=320, stage=2, alpha=0.25, phase_index=3, lr_scale=0.5)
    state = progress.state_dict()
    assert state == {"cur_nimg": 320, "stage": 2, "alpha": 0.25, "phase_index": 3}
    restored = TrainingProgress()
    restored.load_state_dict(state)
    assert restored.state_dict() == state
    old = TrainingProgress()
    old.load_state_dict({})  # a checkpoint without the entry starts at the beginning
    assert old.state_dict() == TrainingProgress().state_dict()


def test_hold_fixes_a_stage_and_alpha_outside_a_schedule():
    progress = TrainingProgress()
    progress.hold(2, 0.5)
    assert (progress.stage, progress.alpha, progress.cur_nimg) == (2, 0.5, 0)
