"""FID (metrics/fid.py): the plumbing with a stand-in feature network, and a clear error
without the Inception weights."""

from __future__ import annotations

import pytest

from helpers import TinyFeatures, noise_images, smooth_images
from progan_lightning.metrics.fid import FrechetDistance
from progan_lightning.metrics.inception import InceptionSetupError
from progan_lightning.metrics.registry import prepare_metrics
from progan_lightning.train import train


def test_fid_plumbing_with_a_stand_in_feature_network():
    a, b = smooth_images(64, 16, 0), noise_images(64, 16, 1)
    fid = FrechetDistance(16, feature=TinyFeatures())
    fid.update(a, real=True)
    fid.update(a, real=False)
    assert float(fid.compute()["fid"]) == pytest.approx(0.0, abs=1e-3)
    fid.reset()  # real statistics are kept
    fid.update(b, real=False)
    assert float(fid.compute()["fid"]) > 0.01


def test_fid_without_weights_fails_at_start_up_with_one_clear_message(make_cfg, tmp_path):
    with pytest.raises(
        InceptionSetupError, match=r"FID.*(torch-fidelity|weights_path).*metrics=default"
    ):
        prepare_metrics({"fid": {"weights_path": str(tmp_path / "missing.pth")}})
    cfg = make_cfg("metrics=[default,fid]", f"metrics.fid.weights_path={tmp_path / 'no.pth'}")
    with pytest.raises(Exception, match="metrics=default") as info:
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()  # nothing ran
    assert "FID" in str(info.value)
