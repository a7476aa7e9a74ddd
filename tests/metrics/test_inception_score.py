"""Inception Score (metrics/inception_score.py): the math against a hand computation, the
metric with a stand-in network, its config and a clear error without weights."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import TinyLogits, noise_images, smooth_images
from progan_lightning.metrics.inception import InceptionSetupError
from progan_lightning.metrics.inception_score import InceptionScore, inception_score
from progan_lightning.metrics.registry import prepare_metrics


def test_inception_score_matches_a_hand_computation_on_known_probabilities():
    # 5 images, 2 splits: the official split i holds rows i*5//2 .. (i+1)*5//2, i.e. [0, 1]
    # and [2, 3, 4] (torch.chunk would give [0, 1, 2] and [3, 4]).
    probs = torch.tensor(
        [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]
    )
    logits = probs.log() + 3.0  # softmax is shift-invariant
    mean, std = inception_score(logits, splits=2)
    # Split 1: p(y) = (0.375, 0.375, 0.25); both rows have the same KL by symmetry.
    kl = 0.5 * math.log(0.5 / 0.375) + 0.25 * math.log(0.25 / 0.375) + 0.25 * math.log(1.0)
    first, second = math.exp(kl), 1.0  # identical rows: p(y|x) = p(y), KL 0
    assert float(mean) == pytest.approx((first + second) / 2, rel=1e-6)
    assert float(std) == pytest.approx(abs(first - second) / 2, rel=1e-6)  # NumPy's std
    # One split of confident, uniformly spread classes: IS = number of classes.
    assert float(inception_score(torch.eye(4) * 60.0, splits=1)[0]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="at least splits=10 images, got 5"):
        inception_score(logits)


def test_inception_score_metric_with_a_stand_in_network_ignores_reals():
    images = smooth_images(40, 16, 0)
    metric = InceptionScore(16, feature=TinyLogits(), splits=4)
    metric.update(noise_images(8, 16, 1), real=True)  # ignored
    metric.update(images[:25], real=False)
    metric.update(images[25:].float() / 127.5 - 1.0, real=False)  # float [-1, 1] works too
    out = metric.compute()
    expected = inception_score(TinyLogits()(images), splits=4)
    assert set(out) == {"is_mean", "is_std"}
    torch.testing.assert_close(out["is_mean"], expected[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["is_std"], expected[1], rtol=1e-4, atol=1e-5)


def test_inception_score_without_weights_fails_at_start_up_with_one_clear_message(tmp_path):
    with pytest.raises(
        InceptionSetupError, match=r"^IS.*(torch-fidelity|weights_path).*drop IS.*metrics=default"
    ):
        prepare_metrics({"is": {"weights_path": str(tmp_path / "missing.pth")}})


def test_is_config_shares_the_fid_weights_path(make_cfg):
    cfg = make_cfg("metrics=[default,is]")
    assert (cfg.metrics["is"].feature, cfg.metrics["is"].splits) == ("logits_unbiased", 10)
    assert "fid" not in cfg.metrics
    cfg = make_cfg("metrics=[default,fid,is]", "metrics.fid.weights_path=/w/inception.pth")
    assert cfg.metrics["is"].weights_path == "/w/inception.pth"
