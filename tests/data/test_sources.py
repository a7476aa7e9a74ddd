"""The built-in procedural shapes source."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from progan_lightning.data.sources import ImageSource, ShapesSource


@pytest.mark.parametrize("resolution", [4, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_shape_and_dtype(resolution: int, channels: int) -> None:
    image = ShapesSource(num_images=8, seed=0).load(3, resolution, channels)
    assert image.shape == (resolution, resolution, channels)
    assert image.dtype == np.uint8


def test_shapes_is_a_source() -> None:
    source = ShapesSource(num_images=5)
    assert isinstance(source, ImageSource)
    assert len(source) == 5


def test_shapes_deterministic_by_seed_and_index() -> None:
    a = [ShapesSource(16, seed=1).load(i, 32, 3) for i in range(16)]
    b = [ShapesSource(16, seed=1).load(i, 32, 3) for i in reversed(range(16))][::-1]
    c = [ShapesSource(16, seed=2).load(i, 32, 3) for i in range(16)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not any(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_shapes_varied_and_visible() -> None:
    source = ShapesSource(64, seed=0)
    images = np.stack([source.load(i, 32, 3) for i in range(64)]).astype(np.float32)
    # Images differ from each other.
    flat = images.reshape(64, -1)
    distances = np.abs(flat[:, None] - flat[None]).mean(-1)  # [64, 64]
    assert distances[~np.eye(64, dtype=bool)].min() > 1.0
    # Every image shows something: shapes stand out from the background.
    assert images.std(axis=(1, 2, 3)).min() > 10.0
    # Grayscale keeps the contrast (no colour that vanishes in luma).
    gray = np.stack([source.load(i, 32, 1) for i in range(64)]).astype(np.float32)
    assert gray.std(axis=(1, 2, 3)).min() > 10.0


def test_shapes_fingerprint_tracks_settings() -> None:
    base = ShapesSource(100, seed=0).fingerprint()
    assert base == ShapesSource(100, seed=0).fingerprint()
    assert base != ShapesSource(101, seed=0).fingerprint()
    assert base != ShapesSource(100, seed=1).fingerprint()


def test_shapes_per_image_bounds_the_shapes_drawn(drawn: list[str]) -> None:
    """Each image draws ``low`` to ``high`` shapes, both ends reached; the default is 1-3."""
    counts = []
    for setting in ({}, {"shapes_per_image": [2, 4]}, {"shapes_per_image": [1, 1]}):
        source = ShapesSource(60, seed=1, **setting)
        per_image = set()
        for index in range(60):
            drawn.clear()
            source.load(index, 8, 3)
            per_image.add(len(drawn))
        counts.append(per_image)
    assert counts == [{1, 2, 3}, {2, 3, 4}, {1}]


@pytest.mark.parametrize("width", [0.3, 0.5, 0.8])
def test_shape_size_is_the_shapes_width(width: float) -> None:
    """A circle of width ``w`` (a share of the image's) covers pi * (w / 2)^2 of the image."""
    source = ShapesSource(4, kinds=["circle"], shape_size=[width, width])
    for index in range(4):
        coverage = source._shape_mask(np.random.default_rng(index), 64)  # [64, 64] in [0, 1]
        # PIL fills the boundary pixels of the 4x supersampled polygon: 1-2% over.
        assert coverage.mean() == pytest.approx(np.pi * (width / 2) ** 2, rel=0.03)


def test_shape_counts_and_sizes_are_part_of_the_cache_key() -> None:
    default = ShapesSource(60, seed=1)
    assert (
        default.fingerprint()
        == ShapesSource(60, seed=1, shapes_per_image=[1, 3], shape_size=[0.25, 0.6]).fingerprint()
    )
    # As Hydra passes them from data.source: ListConfig.
    single = ShapesSource(
        60,
        seed=1,
        shapes_per_image=OmegaConf.create([1, 1]),
        shape_size=OmegaConf.create([0.5, 0.8]),
    )
    assert single.fingerprint() == default.fingerprint() | {
        "shapes_per_image": [1, 1],
        "shape_size": [0.5, 0.8],
    }


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"shapes_per_image": [0, 2]}, r"shapes_per_image=\[0, 2\]: use \[low, high\] with 1 <="),
        ({"shapes_per_image": [3, 1]}, r"shapes_per_image=\[3, 1\]"),
        ({"shapes_per_image": [1.5, 2]}, r"shapes_per_image=\[1.5, 2\]"),
        ({"shape_size": [0.5, 1.2]}, r"shape_size=\[0.5, 1.2\]: .* 0 < low <= high <= 1"),
        ({"shape_size": [0.0, 0.5]}, r"shape_size=\[0.0, 0.5\]"),
        ({"shape_size": 0.5}, r"shape_size=0.5: use \[low, high\] .*default \[0.25, 0.6\]"),
    ],
)
def test_shapes_rejects_bad_counts_and_sizes(setting: dict, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        ShapesSource(10, **setting)


@pytest.mark.parametrize("num_images", [0, -3])
def test_shapes_rejects_empty(num_images: int) -> None:
    with pytest.raises(ValueError, match="num_images"):
        ShapesSource(num_images)


def test_shapes_rejects_bad_index_and_channels() -> None:
    source = ShapesSource(4)
    with pytest.raises(IndexError):
        source.load(4, 8, 3)
    with pytest.raises(ValueError, match="channels=2"):
        source.load(0, 8, 2)
