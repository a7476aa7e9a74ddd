"""MS-SSIM diversity (metrics/ms_ssim.py): one for identical pairs, low for random ones."""

from __future__ import annotations

import pytest

from helpers import noise_images
from progan_lightning.metrics.ms_ssim import MSSSIMDiversity


@pytest.mark.parametrize("res", [4, 16, 64])
def test_ms_ssim_diversity_is_one_for_identical_pairs_and_low_for_random(res):
    x = noise_images(8, res, 0)
    same = MSSSIMDiversity(res)
    same.update(x[:1].repeat(8, 1, 1, 1), real=False)
    same.update(x, real=True)  # reals are ignored
    assert float(same.compute()["ms_ssim"]) == pytest.approx(1.0, abs=1e-4)
    varied = MSSSIMDiversity(res)
    varied.update(x, real=False)
    assert float(varied.compute()["ms_ssim"]) < 0.5
