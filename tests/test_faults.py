"""Faults: resume from every checkpoint, divergence, pre-emption, misuse (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from progan_lightning.export import load_checkpoint
from progan_lightning.train import train

QUIET = ("logger=none", "metrics=none")


def weights_equal(a, b, exact: bool = True) -> None:
    for name in ("G_ema", "G", "D"):
        ref, res = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for key in ref:
            if exact:
                assert torch.equal(res[key], ref[key]), f"{name}.{key}"
            else:
                torch.testing.assert_close(res[key], ref[key], rtol=1e-5, atol=1e-6)


def test_phase_end_resume_equals_uninterrupted(make_cfg, tmp_path: Path):
    overrides = (*QUIET, "growth.lr={4: 0.001, 8: 0.003}")
    reference = train(make_cfg(*overrides))[1]["model"]
    # The phase-end checkpoint of stable4 (64 images): the next phase is fade8 at lr 0.003.
    phase_end = next((tmp_path / "checkpoints").glob("phase00_*.ckpt"))
    assert load_checkpoint(phase_end)["progress"]["cur_nimg"] == 64

    cfg = make_cfg(*overrides, f"ckpt_path={phase_end}")
    cfg.paths.output_dir = str(tmp_path / "resumed")
    _, objects = train(cfg)
    resumed = objects["model"]
    assert resumed.cur_nimg == reference.cur_nimg == 320
    for opt in objects["trainer"].optimizers:
        assert opt.param_groups[0]["lr"] == 0.003
    weights_equal(reference, resumed)
