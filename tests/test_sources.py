"""Image sources: procedural shapes and a folder of image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from progan_lightning.data.sources import FolderSource, ImageSource, ShapesSource


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


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A nested folder of mixed images: RGBA, grayscale, non-square, odd extensions."""
    root = tmp_path / "images"
    (root / "b" / "deep").mkdir(parents=True)
    # 40x20: red left and right quarters, blue middle -> blue after the centre crop.
    stripes = np.zeros((20, 40, 3), dtype=np.uint8)
    stripes[:, :10] = stripes[:, 30:] = (255, 0, 0)
    stripes[:, 10:30] = (0, 0, 255)
    Image.fromarray(stripes).save(root / "a_stripes.PNG")
    # RGBA: an opaque white left half, a transparent white right half (-> black).
    rgba = np.full((16, 16, 4), 255, dtype=np.uint8)
    rgba[:, 8:, 3] = 0
    Image.fromarray(rgba, "RGBA").save(root / "b" / "rgba.png")
    Image.fromarray(np.full((30, 50), 200, dtype=np.uint8), "L").save(root / "b" / "gray.Jpg")
    Image.fromarray(np.full((64, 48, 3), 90, dtype=np.uint8)).save(root / "b" / "deep" / "c.jpeg")
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(stripes).save(root / "b" / "._hidden.png")
    return root


def test_folder_lists_images_recursively_sorted(image_folder: Path) -> None:
    source = FolderSource(image_folder)
    names = [f.relative_to(image_folder).as_posix() for f in source.files]
    assert names == ["a_stripes.PNG", "b/deep/c.jpeg", "b/gray.Jpg", "b/rgba.png"]
    assert len(source) == 4


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_sizes_and_dtype(image_folder: Path, channels: int) -> None:
    source = FolderSource(image_folder)
    for i in range(len(source)):
        image = source.load(i, 8, channels)
        assert image.shape == (8, 8, channels)
        assert image.dtype == np.uint8


def test_folder_centre_crop(image_folder: Path) -> None:
    image = FolderSource(image_folder).load(0, 16, 3).astype(int)  # a_stripes.PNG
    # The 20x20 centre is all blue; Lanczos may ring slightly at the edges only.
    assert (image[..., 2] > 200).mean() > 0.9
    assert (image[..., 0] < 50).mean() > 0.9


def test_folder_transparency_on_black_and_grayscale(image_folder: Path) -> None:
    source = FolderSource(image_folder)
    rgba = source.load(3, 16, 3).astype(int)  # b/rgba.png
    assert rgba[:, :6].min() > 240
    assert rgba[:, 10:].max() < 15
    gray = source.load(2, 8, 1).astype(int)  # b/gray.Jpg
    assert np.abs(gray - 200).max() <= 3


def test_folder_fingerprint_changes_with_files(image_folder: Path) -> None:
    before = FolderSource(image_folder).fingerprint()
    assert before == FolderSource(image_folder).fingerprint()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8), "L").save(image_folder / "z.bmp")
    after = FolderSource(image_folder).fingerprint()
    assert after["num_files"] == before["num_files"] + 1
    assert after["files_sha1"] != before["files_sha1"]


def test_folder_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="does not exist") as error:
        FolderSource(missing)
    assert str(missing) in str(error.value)


def test_folder_empty_or_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.md").write_text("no images here")
    with pytest.raises(ValueError, match=r"\.png") as error:
        FolderSource(empty)
    assert str(empty) in str(error.value)
    file = tmp_path / "one.png"
    Image.new("RGB", (4, 4)).save(file)
    with pytest.raises(ValueError, match="not a folder") as error:
        FolderSource(file)
    assert str(file) in str(error.value)


def test_folder_unreadable_image(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        FolderSource(tmp_path).load(0, 8, 3)
