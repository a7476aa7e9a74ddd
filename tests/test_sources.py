"""The built-in procedural shapes source."""

from __future__ import annotations

import numpy as np
import pytest

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
