"""The benchmark's timer (bench/timing.py): warm-up, bunches of calls, one value per repeat."""

from __future__ import annotations

import time

import pytest
import torch

from progan_lightning.bench.timing import summarize, time_calls


def test_repeats_last_at_least_min_repeat_s_after_the_warmup() -> None:
    calls = []

    def sleep() -> None:
        calls.append(None)
        time.sleep(0.004)

    seconds, per_repeat = time_calls(sleep, torch.device("cpu"), 2, 3, 0.02)
    assert len(seconds) == 3
    assert 1 <= per_repeat <= 5  # a repeat of >= 20 ms from calls of >= 4 ms
    assert len(calls) == 2 + 1 + 3 * per_repeat  # warm-up, the sizing call, the repeats
    assert all(0.004 <= s < 0.05 for s in seconds)  # seconds per call, not per repeat


def test_summary_is_median_iqr_and_range() -> None:
    assert summarize([4.0, 1.0, 3.0, 2.0, 5.0]) == {
        "median": 3.0,
        "iqr": 2.0,
        "min": 1.0,
        "max": 5.0,
    }
    assert summarize([2.0]) == pytest.approx({"median": 2.0, "iqr": 0.0, "min": 2.0, "max": 2.0})
