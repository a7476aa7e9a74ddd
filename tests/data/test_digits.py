"""The built-in procedural digits source (``data=digits``)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from progan_lightning.data import digits as digits_module
from progan_lightning.data.datamodule import build_datamodule
from progan_lightning.data.digits import DigitsSource
from progan_lightning.data.sources import ImageSource


@pytest.fixture
def drawn_digits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The digits that ``DigitsSource`` handed to the glyph renderer, in order."""
    digits: list[int] = []
    glyph = digits_module.glyph
    record = lambda digit, size, stroke: digits.append(digit) or glyph(digit, size, stroke)  # noqa: E731
    monkeypatch.setattr(digits_module, "glyph", record)
    return digits


@pytest.mark.parametrize("resolution", [4, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_digits_shape_and_dtype(resolution: int, channels: int) -> None:
    image = DigitsSource(num_images=8, seed=0).load(3, resolution, channels)
    assert image.shape == (resolution, resolution, channels)
    assert image.dtype == np.uint8


def test_rgb_is_the_grayscale_digit_in_every_channel() -> None:
    source = DigitsSource(4, seed=0)
    gray, rgb = source.load(1, 32, 1), source.load(1, 32, 3)
    assert np.array_equal(rgb, np.repeat(gray, 3, axis=2))


def test_digits_is_a_source() -> None:
    source = DigitsSource(num_images=5)
    assert isinstance(source, ImageSource)
    assert len(source) == 5 and source.class_names == []


def test_digits_deterministic_by_seed_and_index() -> None:
    a = [DigitsSource(16, seed=1).load(i, 32, 1) for i in range(16)]
    b = [DigitsSource(16, seed=1).load(i, 32, 1) for i in reversed(range(16))][::-1]
    c = [DigitsSource(16, seed=2).load(i, 32, 1) for i in range(16)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not any(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_labels_are_the_digits_drawn_and_every_digit_appears(drawn_digits: list[int]) -> None:
    source = DigitsSource(60, seed=3, labels="digit")
    assert source.class_names == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    drawn_digits.clear()  # the constructor's check of every class reads labels, draws nothing
    images = [source.load(i, 16, 1) for i in range(60)]
    labels = [source.label(i) for i in range(60)]
    assert labels == drawn_digits
    assert set(labels) == set(range(10))
    # Labelled and unlabelled images are the same images.
    unlabelled = DigitsSource(60, seed=3)
    assert all(np.array_equal(x, unlabelled.load(i, 16, 1)) for i, x in enumerate(images))


def test_each_digit_draws_its_own_glyph() -> None:
    """The same variations (one generator state) with another digit give another image;
    every glyph is white on black and far from every other digit's."""
    source = DigitsSource(1)
    images = np.stack(
        [np.asarray(source.draw(d, np.random.default_rng(7), 32), np.float32) for d in range(10)]
    )  # [10, 32, 32]
    assert images.max() == 255 and images.min() == 0
    distances = np.abs(images[:, None] - images[None]).mean((-1, -2))  # [10, 10]
    assert distances[~np.eye(10, dtype=bool)].min() > 5.0


def test_digits_varied_visible_and_inside_the_image() -> None:
    source = DigitsSource(64, seed=0)
    images = np.stack([source.load(i, 32, 1) for i in range(64)]).astype(np.float32)
    flat = images.reshape(64, -1)
    distances = np.abs(flat[:, None] - flat[None]).mean(-1)  # [64, 64]
    assert distances[~np.eye(64, dtype=bool)].min() > 1.0
    # White on black: the background is black, every digit has bright ink, 5-50% of the image.
    assert np.median(images) == 0 and images.max(axis=(1, 2, 3)).min() == 255
    ink = (images > 127).mean(axis=(1, 2, 3))
    assert ink.min() > 0.05 and ink.max() < 0.5
    # The whole digit lies inside: the outermost ring of pixels is black.
    ring = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    assert ring.max() < 32
    # Sizes, widths and slants vary: the ink's bounding boxes differ.
    rows = (images[..., 0] > 127).any(axis=2)  # [64, 32]
    heights = rows.shape[1] - rows[:, ::-1].argmax(1) - rows.argmax(1)
    assert heights.max() - heights.min() >= 6


def test_fingerprint_tracks_every_setting() -> None:
    base = DigitsSource(100, seed=0)
    assert base.fingerprint() == DigitsSource(100, seed=0).fingerprint()
    # As Hydra passes them from data.source: ListConfig.
    listed = DigitsSource(100, height=OmegaConf.create(list(DigitsSource.HEIGHT)))
    assert listed.fingerprint() == base.fingerprint()
    changed = [
        DigitsSource(101),
        DigitsSource(100, seed=1),
        DigitsSource(100, labels="digit"),
        DigitsSource(100, height=[0.6, 0.8]),
        DigitsSource(100, stroke=[0.0, 0.02]),
        DigitsSource(100, width=[1.0, 1.0]),
        DigitsSource(100, rotation=0),
        DigitsSource(100, shear=0),
        DigitsSource(100, warp=0),
    ]
    fingerprints = [base.fingerprint()] + [source.fingerprint() for source in changed]
    assert len({repr(sorted(f.items())) for f in fingerprints}) == len(fingerprints)


def test_each_setting_changes_the_pixels_it_names() -> None:
    base = DigitsSource(8, seed=0)
    for other in (DigitsSource(8, seed=0, rotation=0), DigitsSource(8, seed=0, warp=0)):
        assert not all(np.array_equal(base.load(i, 32, 1), other.load(i, 32, 1)) for i in range(8))


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"labels": "kind"}, r"data.labels=kind is not supported by the digits source"),
        ({"height": [0.5, 1.5]}, r"data.source.height=\[0.5, 1.5\]"),
        ({"height": [0.8, 0.5]}, r"data.source.height=\[0.8, 0.5\]"),
        ({"stroke": [0.0, 0.5]}, r"data.source.stroke=\[0.0, 0.5\]: .* 0 <= low <= high <= 0.3"),
        ({"stroke": [-0.1, 0.05]}, r"data.source.stroke=\[-0.1, 0.05\]"),
        ({"width": 1.0}, r"data.source.width=1.0: use \[low, high\]"),
        ({"rotation": 120}, r"data.source.rotation=120: use a number from 0 to 90"),
        ({"shear": -0.1}, r"data.source.shear=-0.1"),
        ({"warp": "a lot"}, r"data.source.warp='a lot'"),
        ({"num_images": 0}, r"data.source.num_images=0"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(setting: dict, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        DigitsSource(**{"num_images": 10, **setting})


def test_too_few_images_for_every_digit_are_refused() -> None:
    with pytest.raises(ValueError, match=r"data.labels=digit: the 4 digits images .* have no"):
        DigitsSource(4, labels="digit")
    with pytest.raises(ValueError, match="set data.labels=digit"):
        DigitsSource(4).label(0)


def test_data_digits_config_serves_labelled_grayscale_digits(make_cfg) -> None:
    cfg = make_cfg("data=digits", "data.labels=digit", "data.resolution=8")
    datamodule = build_datamodule(cfg.data)
    assert datamodule.channels == 1 and datamodule.class_names == [str(d) for d in range(10)]
    images, labels = datamodule.images(8), datamodule.labels
    source = datamodule.source
    assert images.shape == (256, 1, 8, 8)
    assert labels.tolist() == [source.label(i) for i in range(256)]
