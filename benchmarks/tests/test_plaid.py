"""The plaid study's tools against their definitions (run: python -m pytest -n 0
benchmarks/plaid)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.plaid import flat_shapes, spectrum, study
from progan_lightning.data.sources import ShapesSource


def test_flat_images_are_palette_shapes_on_white() -> None:
    shapes = ShapesSource(20, seed=3)
    palette = {tuple(int(v) for v in c) for c in flat_shapes.PALETTE}
    for i in range(20):
        image = flat_shapes.flat_image(shapes, i, 32)  # [H, W, 3]
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert np.array_equal(image, flat_shapes.flat_image(shapes, i, 32))  # (seed, i) only
        pixels = [tuple(p) for p in image.reshape(-1, 3).tolist()]
        white = sum(p == (255, 255, 255) for p in pixels)
        flat = sum(p in palette for p in pixels)
        assert white > 0.2 * len(pixels) and flat > 0  # a background and a shape
        assert white + flat > 0.75 * len(pixels)  # flat colour but for the edges


def test_write_set_and_load_images(tmp_path: Path) -> None:
    flat_shapes.write_set(tmp_path, 5, resolution=16, seed=1)
    images = spectrum.load_images(tmp_path)
    assert images.shape == (5, 3, 16, 16) and images.dtype == np.uint8
    np.savez(tmp_path / "x.npz", images=images)
    assert np.array_equal(spectrum.load_images(tmp_path / "x.npz"), images)


def test_power_spectrum_is_parseval_and_centred() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(4, 3, 8, 8))
    power = spectrum.power_spectrum(x)
    centred = x - x.mean(axis=(2, 3), keepdims=True)
    # Parseval: the power sums to each channel's energy (mean removed), averaged.
    np.testing.assert_allclose(power.sum(), (centred**2).sum(axis=(2, 3)).mean())
    assert power[4, 4] == pytest.approx(0, abs=1e-20)  # zero frequency at the centre
    u8 = rng.integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    as_float = u8 / 127.5 - 1
    np.testing.assert_allclose(spectrum.power_spectrum(u8), spectrum.power_spectrum(as_float))


def test_white_noise_has_a_flat_radial_profile() -> None:
    x = np.random.default_rng(1).normal(size=(400, 1, 32, 32))
    radii, rings = spectrum.radial_profile(spectrum.power_spectrum(x))
    assert radii[1] == pytest.approx(1 / 32) and radii[16] == pytest.approx(0.5)
    np.testing.assert_allclose(rings[1:17], 1.0, rtol=0.1)  # the full rings


def _smooth_images(n: int = 64, size: int = 32) -> np.ndarray:
    """Discs of random colours and places: a smooth, peakless spectrum."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:size, :size]
    images = np.ones((n, 3, size, size))
    for k in range(n):
        cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(4, 8)
        images[k][:, np.hypot(yy - cy, xx - cx) < r] = rng.uniform(-1, 1, size=(3, 1))
    return images


@pytest.mark.parametrize(
    ("texture", "where"),
    [
        (lambda yy, xx: (-1.0) ** (yy + xx), (-0.5, -0.5)),  # 2-pixel checkerboard
        (lambda yy, xx: np.cos(np.pi * xx / 2), (0.0, 0.25)),  # 4-pixel vertical stripes
        (lambda yy, xx: np.cos(np.pi * yy / 4), (0.125, 0.0)),  # 8-pixel horizontal bands
    ],
)
def test_a_faint_regular_texture_is_a_peak_the_reals_lack(texture, where) -> None:
    reals = _smooth_images()
    yy, xx = np.mgrid[:32, :32]
    fakes = reals + 0.05 * texture(yy, xx)
    real, fake = spectrum.power_spectrum(reals), spectrum.power_spectrum(fakes)
    peaks = spectrum.excess_peaks(fake, real)
    assert [(p.fy, p.fx) for p in peaks[:1]] == [where]
    assert peaks[0].ratio > 2
    assert spectrum.excess_peaks(real, real) == []
    assert "Peaks the reals lack" in spectrum.report(real, fake)
    assert spectrum.spectrum_map(real, fake).shape == (32 * 8, (3 * 32 + 2) * 8, 3)


def test_spectrum_scores_and_report(tmp_path: Path) -> None:
    reals = (_smooth_images() * 127.5 + 127.5).astype(np.uint8)
    scores = study.spectrum_scores(reals, reals)
    assert scores == {"peaks": 0, "top_peaks": [], "ring_0.5_ratio": 1.0}
    record = {"label": "recipe", "trainer": "project", "seed": 1, "swd_avg": 20.0}
    record |= {"swd_32": 25.0, "swd_16": 15.0, **scores, "seconds": 60.0}
    floor = {**record, "trainer": "floor", "label": "reals vs reals", "swd_avg": 11.5}
    lines = [json.dumps(floor), json.dumps(record)]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    table = study.report(tmp_path)
    assert "| project | recipe | 1 | 20.0 | 25.0 | 15.0 | 8.5 | 0 |  | 1.00 | 60.0 |" in table
    assert "| floor | reals vs reals | 1 | 11.5 | 25.0 | 15.0 |  | 0 |  | 1.00 | 60.0 |" in table
    record |= {"peaks": 1, "top_peaks": [[0.46875, 0.0, 9.51]]}
    (tmp_path / "results.jsonl").write_text(json.dumps(record) + "\n")
    assert "| 15.0 |  | 1 | (0.469, 0.000): 9.5x | 1.00 | 60.0 |" in study.report(tmp_path)


def test_nearest_upsampled_half_resolution_content_peaks_on_the_axes_near_nyquist() -> None:
    # The flat-colour set's own images, 2x2-averaged and nearest-upsampled back (the blocky
    # image of the real fade at alpha 0): peaks the reals lack at (0.469, 0) and (0, 0.469).
    from progan_lightning.imaging import to_float, to_uint8
    from progan_lightning.layers import fade_reals

    shapes = ShapesSource(256, seed=0, shape_size=(0.3, 0.7))
    images = np.stack([flat_shapes.flat_image(shapes, i, 32) for i in range(256)])
    images = images.transpose(0, 3, 1, 2)  # [N, 3, 32, 32]
    reals, others = images[:128], images[128:]
    blocky = to_uint8(fade_reals(to_float(others), 0.0)).numpy()
    scores = study.spectrum_scores(reals, blocky)
    assert sorted(tuple(p[:2]) for p in scores["top_peaks"][:2]) == [
        (0.0, 0.46875),
        (0.46875, 0.0),
    ]
    assert study.spectrum_scores(reals, others)["peaks"] == 0


def test_the_checkpoint_table_has_a_row_per_final_stage_checkpoint(tiny_run: Path) -> None:
    from benchmarks.plaid.checkpoints import table

    rows = table(tiny_run, num_images=64, num_reals=64).splitlines()
    assert rows[0].startswith("| checkpoint | kimg | alpha | peaks |")
    cells = [row.strip("| ").split(" | ") for row in rows[2:]]
    last = {c[0]: float(c[1]) for c in cells}["last.ckpt"]
    assert last == pytest.approx(0.256)
    # Only 8x8 checkpoints: from the fade-in (alpha < 1) to the end (alpha 1).
    kimg = [float(c[1]) for c in cells]
    assert kimg == sorted(kimg) and min(kimg) > 0.064
    alphas = [float(c[2]) for c in cells]
    assert alphas[0] < 1 and alphas[-1] == 1.0
    assert all(int(c[3]) >= 0 and float(c[5]) > 0 for c in cells)
