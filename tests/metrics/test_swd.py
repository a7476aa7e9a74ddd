"""Sliced Wasserstein distance (metrics/swd.py) against the paper's algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from helpers import SMALL, noise_images, smooth_images, swd
from progan_lightning.metrics.swd import (
    SlicedWassersteinDistance,
    patch_positions,
    pyramid_resolutions,
)


def test_pyramid_levels_go_down_to_16_or_are_the_image_itself():
    assert pyramid_resolutions(1024) == [1024, 512, 256, 128, 64, 32, 16]
    assert pyramid_resolutions(32) == [32, 16]
    assert pyramid_resolutions(16) == [16]
    assert pyramid_resolutions(8) == [8]
    assert pyramid_resolutions(4) == [4]


@pytest.mark.parametrize("res", [4, 8, 32])
def test_swd_of_identical_sets_is_zero_and_different_distributions_score_clearly_more(res):
    a, b = smooth_images(512, res, 0), smooth_images(512, res, 1)
    same = swd(a, a)
    assert set(same) == {f"swd_{r}" for r in pyramid_resolutions(res)} | {"swd_avg"}
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in same.values())
    other_sample = swd(a, b)["swd_avg"]
    other_distribution = swd(a, noise_images(512, res, 2))["swd_avg"]
    assert other_distribution > 2 * other_sample > 0


def test_swd_is_invariant_to_image_order():
    a, b = smooth_images(64, 32, 0), noise_images(64, 32, 1)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    assert swd(a, b) == swd(a[perm], b[perm])
    # Split into several updates: same result.
    metric = SlicedWassersteinDistance(32, **SMALL)
    for chunk in a[perm].split(10):
        metric.update(chunk, real=True)
    metric.update(b, real=False)
    assert float(metric.compute()["swd_avg"]) == swd(a, b)["swd_avg"]


def test_swd_accepts_float_images_in_minus_one_one():
    a = smooth_images(32, 16, 0)
    as_float = a.float() / 127.5 - 1.0
    assert swd(a, as_float)["swd_avg"] == pytest.approx(0.0, abs=1e-3)


GAUSS = np.float32([[1, 4, 6, 4, 1]]).T @ np.float32([[1, 4, 6, 4, 1]]) / 256.0


def ref_pyr_down(x: np.ndarray) -> np.ndarray:
    return scipy.ndimage.convolve(x, GAUSS[None, None], mode="mirror")[:, :, ::2, ::2]


def ref_pyr_up(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    res = np.zeros((n, c, h * 2, w * 2), x.dtype)
    res[:, :, ::2, ::2] = x
    return scipy.ndimage.convolve(res, GAUSS[None, None] * 4.0, mode="mirror")


def ref_swd(reals, fakes, positions, directions, nhood=7) -> list[float]:
    """SWD x1e3 per level; ``positions[kind][level]`` [N, P, 2] and ``directions`` given."""
    levels = pyramid_resolutions(reals.shape[-1])
    descs = {}
    for kind, images in (("real", reals), ("fake", fakes)):
        pyramid = [images.numpy().astype(np.float32)]
        for _ in range(1, len(levels)):
            pyramid.append(ref_pyr_down(pyramid[-1]))
            pyramid[-2] -= ref_pyr_up(pyramid[-1])
        descs[kind] = []
        for lod, level in enumerate(pyramid):
            patches = []
            for i in range(len(level)):
                for y, x in positions[kind][lod][i]:
                    h = nhood // 2
                    patches.append(level[i, :, y - h : y + h + 1, x - h : x + h + 1])
            desc = np.stack(patches).astype(np.float64)
            desc -= desc.mean(axis=(0, 2, 3), keepdims=True)
            desc /= desc.std(axis=(0, 2, 3), keepdims=True)
            descs[kind].append(desc.reshape(len(desc), -1))
    out = []
    for lod in range(len(levels)):
        a, b = descs["real"][lod], descs["fake"][lod]
        dists = []
        for dirs in directions:
            dirs = dirs / np.sqrt((dirs**2).sum(axis=0, keepdims=True))
            pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
            dists.append(np.abs(pa - pb).mean())
        out.append(float(np.mean(dists)) * 1e3)
    return out


def test_swd_matches_a_reference_implementation_of_the_paper():
    reals, fakes = smooth_images(12, 32, 0), noise_images(12, 32, 1)
    p, repeats, per_repeat, seed = 8, 3, 16, 5
    metric = SlicedWassersteinDistance(
        32, nhoods_per_image=p, dir_repeats=repeats, dirs_per_repeat=per_repeat, seed=seed
    )
    metric.update(reals, real=True)
    metric.update(fakes, real=False)
    ours = metric.compute()

    # Same random draws: the metric's patch positions and its seeded directions.
    positions = {
        kind: [
            patch_positions(images, 2 * p, 3, res - 3, seed + res).view(len(images), p, 2).numpy()
            for res in (32, 16)
        ]
        for kind, images in (("real", reals), ("fake", fakes))
    }
    gen = torch.Generator().manual_seed(seed)
    directions = [
        torch.randn(3 * 49, per_repeat, generator=gen).double().numpy() for _ in range(2 * repeats)
    ]
    # The metric draws a level's directions before moving to the next level.
    reference = [
        ref_swd(reals, fakes, positions, directions[:repeats])[0],
        ref_swd(reals, fakes, positions, directions[repeats:])[1],
    ]
    assert float(ours["swd_32"]) == pytest.approx(reference[0], rel=1e-4)
    assert float(ours["swd_16"]) == pytest.approx(reference[1], rel=1e-4)
    assert float(ours["swd_avg"]) == pytest.approx(np.mean(reference), rel=1e-4)


def test_swd_keeps_real_statistics_across_reset():
    metric = SlicedWassersteinDistance(16, **SMALL)
    metric.update(smooth_images(16, 16, 0), real=True)
    metric.update(smooth_images(16, 16, 0), real=False)
    assert float(metric.compute()["swd_avg"]) == pytest.approx(0.0, abs=1e-6)
    metric.reset()
    assert metric.num_real == 16
    metric.update(noise_images(16, 16, 1), real=False)
    assert float(metric.compute()["swd_avg"]) > 10
