"""The memorisation measurement (``python -m benchmarks.memorisation``): its two figures by
hand, and the table of a tiny run trained on the first 64 of 128 digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.memorisation import main, memorised, midpoint_signal


def test_memorised_is_the_training_lead_over_the_unseen_lead_over_fakes():
    assert memorised(3.0, 1.0, -1.0) == pytest.approx(1.0)  # as far above as unseen over fakes
    assert memorised(1.0, 1.0, -1.0) == 0.0  # no lead: D generalises
    assert memorised(2.0, 1.0, -3.0) == pytest.approx(0.25)


def test_the_signal_is_the_sign_about_each_batchs_midpoint_averaged_over_batches():
    reals = torch.tensor([3.0, 1.0, 2.0, 0.0, 9.0])  # the fifth is no whole batch: unused
    fakes = torch.zeros(5)
    # Batch 1: midpoint (2 + 0) / 2 = 1, signs [1, 0]: 0.5. Batch 2: midpoint 0.5, [1, -1]: 0.
    assert midpoint_signal(reals, fakes, 2) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="--batch 8"):
        midpoint_signal(reals, fakes, 8)


def test_a_run_on_a_subset_gets_one_row_per_final_checkpoint(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
):
    run = tiny_run
    main([str(run), "--whole", "128", "--held-out", "64", "--batch", "8"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[1:]
    assert "memorised" in header and "r_t train" in header
    assert body and any(row.startswith("| last.ckpt ") for row in body)
    for row in body:
        cells = row.strip("| ").split(" | ")
        assert len(cells) == 7
        r_train, r_held = float(cells[5]), float(cells[6])
        assert -1 <= r_train <= 1 and -1 <= r_held <= 1

    # The whole source must hold unseen images past the run's 64.
    with pytest.raises(ValueError, match="leaves 0 unseen images"):
        main([str(run), "--whole", "64", "--held-out", "64"])
