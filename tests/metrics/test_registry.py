"""The metrics registry (metrics/registry.py): unknown names are refused naming the known ones."""

from __future__ import annotations

import pytest

from progan_lightning.metrics.registry import prepare_metrics


def test_unknown_metric_names_the_known_ones():
    with pytest.raises(ValueError, match="Unknown metric 'swdd'.*swd, ms_ssim, fid, is"):
        prepare_metrics({"swdd": {}})
