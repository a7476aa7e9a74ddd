"""Images from files: folders and zips, odd images, bad files, and the cache built from them."""

from __future__ import annotations

import json
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import TINY, run_command
from progan_lightning.data.cache import load_level, read_manifest
from progan_lightning.data.cache_build import BadImagesError, BadImagesWarning, prepare_cache
from progan_lightning.data.files import (
    DEFAULT_MAX_IMAGE_PIXELS,
    FolderSource,
    IgnoredFilesWarning,
    SmallImageWarning,
    UnreadableImageError,
    parse_background,
)
from progan_lightning.data.sources import ImageSource
from progan_lightning.train import train


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
    # RGBA: an opaque white left half, a transparent white right half (-> background).
    rgba = np.full((16, 16, 4), 255, dtype=np.uint8)
    rgba[:, 8:, 3] = 0
    Image.fromarray(rgba, "RGBA").save(root / "b" / "rgba.png")
    Image.fromarray(np.full((30, 50), 200, dtype=np.uint8), "L").save(root / "b" / "gray.Jpg")
    Image.fromarray(np.full((64, 48, 3), 90, dtype=np.uint8)).save(root / "b" / "deep" / "c.jpeg")
    Image.fromarray(np.full((20, 20, 3), 40, dtype=np.uint8)).save(root / "b" / "d.webp")
    Image.fromarray(np.full((20, 20, 3), 60, dtype=np.uint8)).save(root / "b" / "e.BMP")
    Image.fromarray(np.full((20, 20, 3), 80, dtype=np.uint8)).save(root / "b" / "f.tiff")
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(stripes).save(root / "b" / "._hidden.png")
    return root


NAMES = [
    "a_stripes.PNG",
    "b/d.webp",
    "b/deep/c.jpeg",
    "b/e.BMP",
    "b/f.tiff",
    "b/gray.Jpg",
    "b/rgba.png",
]


def zip_folder(folder: Path, archive: Path) -> Path:
    """``folder`` as a zip, with a macOS ``__MACOSX`` fork that must be ignored."""
    with zipfile.ZipFile(archive, "w") as out:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                out.write(file, file.relative_to(folder).as_posix())
        out.writestr("__MACOSX/b/._rgba.png", b"resource fork")
    return archive


def salt(folder: Path) -> list[str]:
    """Add a truncated PNG, a text file named .jpg and a zero-byte file; return their names."""
    good = folder / "a_stripes.PNG"
    (folder / "truncated.png").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "text.jpg").write_text("this is not a JPEG")
    (folder / "zero.png").write_bytes(b"")
    return ["text.jpg", "truncated.png", "zero.png"]


# --- the source -----------------------------------------------------------------------


def test_lists_images_recursively_sorted(image_folder: Path) -> None:
    source = FolderSource(image_folder)
    assert isinstance(source, ImageSource)
    assert source.files == NAMES
    assert len(source) == len(NAMES)
    assert source.name(0) == f"{image_folder}/a_stripes.PNG"


@pytest.mark.parametrize("channels", [1, 3])
def test_every_format_gives_square_uint8(image_folder: Path, channels: int) -> None:
    source = FolderSource(image_folder)
    for i in range(len(source)):
        image = source.load(i, 8, channels)
        assert image.shape == (8, 8, channels) and image.dtype == np.uint8
    assert np.abs(source.load(1, 8, 3).astype(int) - 40).max() <= 2  # webp is lossy
    assert np.array_equal(source.load(3, 8, 3), np.full((8, 8, 3), 60, np.uint8))  # BMP
    assert np.array_equal(source.load(4, 8, 3), np.full((8, 8, 3), 80, np.uint8))  # TIFF


def test_centre_crop(image_folder: Path) -> None:
    image = FolderSource(image_folder).load(0, 16, 3).astype(int)  # a_stripes.PNG
    # The 20x20 centre is all blue; Lanczos may ring slightly at the edges only.
    assert (image[..., 2] > 200).mean() > 0.9
    assert (image[..., 0] < 50).mean() > 0.9


def test_pad_keeps_the_whole_image_on_the_background(image_folder: Path) -> None:
    image = FolderSource(image_folder, background="white", fit="pad").load(0, 40, 3).astype(int)
    # 40x20 centred on a 40x40 white square: rows 0-9 and 30-39 are white.
    assert image[:8].min() > 240 and image[32:].min() > 240
    middle = image[12:28]
    assert (middle[:, :8, 0] > 240).all() and (middle[:, :8, 2] < 15).all()  # red left
    assert (middle[:, 12:28, 2] > 240).all() and (middle[:, 12:28, 0] < 15).all()  # blue


def test_transparency_on_the_background_and_grayscale(image_folder: Path) -> None:
    rgba = FolderSource(image_folder).load(6, 16, 3).astype(int)  # b/rgba.png
    assert rgba[:, :6].min() > 240
    assert rgba[:, 10:].max() < 15
    on_red = FolderSource(image_folder, background=[255, 0, 0]).load(6, 16, 3).astype(int)
    assert (on_red[:, 10:, 0] > 240).all() and (on_red[:, 10:, 1:] < 15).all()
    gray = FolderSource(image_folder).load(5, 8, 1).astype(int)  # b/gray.Jpg stays 1 channel
    assert np.abs(gray - 200).max() <= 3
    as_rgb = FolderSource(image_folder).load(5, 8, 3).astype(int)  # ... or becomes RGB
    assert np.abs(as_rgb - 200).max() <= 3


def test_small_image_warns(image_folder: Path) -> None:
    source = FolderSource(image_folder)
    with pytest.warns(SmallImageWarning, match=r"b/f\.tiff is 20x20 after crop, upscaled to 32"):
        source.load(4, 32, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallImageWarning)
        source.load(4, 16, 3)  # Large enough: no warning.


def test_zip_reads_the_same_images(image_folder: Path, tmp_path: Path) -> None:
    folder = FolderSource(image_folder)
    archive = FolderSource(zip_folder(image_folder, tmp_path / "images.zip"))
    assert archive.files == folder.files
    assert archive.name(0) == f"{tmp_path / 'images.zip'}:a_stripes.PNG"
    assert archive.fingerprint()["kind"] == "zip"
    for i in range(len(folder)):
        np.testing.assert_array_equal(archive.load(i, 8, 3), folder.load(i, 8, 3))


def test_fingerprint_follows_files_and_settings(image_folder: Path) -> None:
    before = FolderSource(image_folder).fingerprint()
    assert before == FolderSource(image_folder).fingerprint()
    assert FolderSource(image_folder, fit="pad").fingerprint() != before
    assert FolderSource(image_folder, background="white").fingerprint() != before
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8), "L").save(image_folder / "z.bmp")
    after = FolderSource(image_folder).fingerprint()
    assert after["num_files"] == before["num_files"] + 1
    assert after["files_sha1"] != before["files_sha1"]


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="does not exist") as error:
        FolderSource(missing)
    assert str(missing) in str(error.value)


def test_empty_folder_or_other_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.md").write_text("no images here")
    with pytest.raises(ValueError, match=r"holds no image files.*\.png") as error:
        FolderSource(empty)
    assert str(empty) in str(error.value)
    file = tmp_path / "one.png"
    Image.new("RGB", (4, 4)).save(file)
    with pytest.raises(ValueError, match="not a folder or a .zip") as error:
        FolderSource(file)
    assert str(file) in str(error.value)


def test_bad_settings() -> None:
    assert parse_background("white") == (255, 255, 255)
    assert parse_background("#102030") == (16, 32, 48)
    assert parse_background([1, 2, 3]) == (1, 2, 3)
    for bad in ("notacolour", [300, 0, 0], [1, 2]):
        with pytest.raises(ValueError, match="data.background="):
            parse_background(bad)
    with pytest.raises(ValueError, match="data.fit='stretch'"):
        FolderSource(".", fit="stretch")  # type: ignore[arg-type]


def test_unreadable_files_name_themselves(image_folder: Path) -> None:
    salt(image_folder)
    source = FolderSource(image_folder)
    for name in ("text.jpg", "truncated.png", "zero.png"):
        with pytest.raises(UnreadableImageError, match=name) as error:
            source.load(source.files.index(name), 8, 3)
        assert error.value.name == f"{image_folder}/{name}"


# --- the cache built from files -------------------------------------------------------


def test_bad_files_are_skipped_with_one_warning(image_folder: Path, tmp_path: Path) -> None:
    bad = salt(image_folder)
    source = FolderSource(image_folder)
    with pytest.warns(BadImagesWarning) as caught:
        folder = prepare_cache(source, 8, 3, tmp_path / "cache", progress=False)
    summaries = [w for w in caught if issubclass(w.category, BadImagesWarning)]
    assert len(summaries) == 1
    message = str(summaries[0].message)
    assert message.startswith("3 image files could not be read") and "data.strict=true" in message
    assert all(name in message for name in bad)
    manifest = read_manifest(folder)
    assert manifest["num_images"] == len(NAMES) and manifest["num_skipped"] == 3
    good = [i for i, name in enumerate(source.files) if name not in bad]
    expected = np.stack([source.load(i, 8, 3).transpose(2, 0, 1) for i in good])
    np.testing.assert_array_equal(load_level(folder, 8, mmap=False), expected)  # shrunk .npy
    assert load_level(folder, 4).shape == (len(NAMES), 3, 4, 4)


def test_strict_stops_with_the_list_and_keeps_the_good_cache(
    image_folder: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    good = prepare_cache(FolderSource(image_folder), 8, 3, cache, progress=False)
    before = {file.name: file.read_bytes() for file in good.iterdir()}
    bad = salt(image_folder)
    with pytest.raises(BadImagesError, match="data.strict=false") as error:
        prepare_cache(FolderSource(image_folder), 8, 3, cache, progress=False, strict=True)
    assert all(name in str(error.value) for name in bad)
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [good.name]  # nothing new
    assert {file.name: file.read_bytes() for file in good.iterdir()} == before
    # A cache built leniently still stops a strict run, with the same list.
    with pytest.warns(BadImagesWarning):
        prepare_cache(FolderSource(image_folder), 8, 3, cache, progress=False)
    with pytest.raises(BadImagesError, match="truncated.png"):
        prepare_cache(FolderSource(image_folder), 8, 3, cache, progress=False, strict=True)


def test_no_readable_image_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("text")
    with pytest.raises(BadImagesError, match="none of the 2 image files could be read"):
        prepare_cache(FolderSource(tmp_path), 8, 3, tmp_path / "cache", progress=False)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]


def test_upscaled_images_counted_in_one_warning(image_folder: Path, tmp_path: Path) -> None:
    with pytest.warns(SmallImageWarning) as caught:
        folder = prepare_cache(FolderSource(image_folder), 32, 3, tmp_path, progress=False)
    summaries = [str(w.message) for w in caught if issubclass(w.category, SmallImageWarning)]
    # Only a_stripes (20 after crop), d, e, f (20), gray (30) and rgba (16) are below 32.
    assert len(summaries) == 1 and summaries[0].startswith("6 of 7 images are smaller")
    assert read_manifest(folder)["num_upscaled"] == 6


def test_changed_files_or_settings_rebuild(image_folder: Path, tmp_path: Path) -> None:
    first = prepare_cache(FolderSource(image_folder), 8, 3, tmp_path, progress=False)
    assert prepare_cache(FolderSource(image_folder), 8, 3, tmp_path, progress=False) == first
    padded = prepare_cache(FolderSource(image_folder, fit="pad"), 8, 3, tmp_path, progress=False)
    assert padded != first
    Image.new("RGB", (8, 8)).save(image_folder / "new.png")
    grown = prepare_cache(FolderSource(image_folder), 8, 3, tmp_path, progress=False)
    assert grown not in (first, padded)
    assert read_manifest(grown)["num_images"] == len(NAMES) + 1
    assert (first / "manifest.json").is_file()  # Earlier caches are left alone.


def test_zip_cache_equals_folder_cache(image_folder: Path, tmp_path: Path) -> None:
    archive = zip_folder(image_folder, tmp_path / "images.zip")
    from_folder = prepare_cache(FolderSource(image_folder), 8, 3, tmp_path / "c", progress=False)
    from_zip = prepare_cache(
        FolderSource(archive), 8, 3, tmp_path / "c", num_workers=2, progress=False
    )
    assert from_zip != from_folder
    for res in (4, 8):
        np.testing.assert_array_equal(load_level(from_zip, res), load_level(from_folder, res))


def test_gif_reads_its_first_frame_and_netpbm_tga_count(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (12, 12), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    frames[0].save(tmp_path / "anim.GIF", save_all=True, append_images=frames[1:])
    Image.new("L", (12, 12), 100).save(tmp_path / "gray.pgm")
    Image.new("RGB", (12, 12), (0, 150, 0)).save(tmp_path / "green.ppm")
    Image.new("RGB", (12, 12), (0, 0, 150)).save(tmp_path / "blue.tga")
    Image.new("RGB", (12, 12), (90, 90, 90)).save(tmp_path / "photo.jfif", "JPEG")
    source = FolderSource(tmp_path)
    assert source.files == ["anim.GIF", "blue.tga", "gray.pgm", "green.ppm", "photo.jfif"]
    first = source.load(0, 8, 3).astype(int)
    assert (first[..., 0] > 180).all() and (first[..., 2] < 30).all()  # red, not blue
    assert np.array_equal(source.load(1, 8, 3), np.full((8, 8, 3), (0, 0, 150), np.uint8))
    assert np.array_equal(source.load(2, 8, 1), np.full((8, 8, 1), 100, np.uint8))
    assert np.array_equal(source.load(3, 8, 3), np.full((8, 8, 3), (0, 150, 0), np.uint8))
    assert np.abs(source.load(4, 8, 3).astype(int) - 90).max() <= 2


def test_transparent_gif_on_the_background(tmp_path: Path) -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    image.save(tmp_path / "clear.gif", transparency=1)  # every pixel transparent
    loaded = FolderSource(tmp_path, background=[0, 255, 0]).load(0, 8, 3)
    assert np.array_equal(loaded, np.full((8, 8, 3), (0, 255, 0), np.uint8))


def test_ignored_image_formats_warn_once_with_counts(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "kept.png")
    for name in ("a.psd", "b.HEIC", "c.heic", "d.jp2"):
        (folder / name).write_bytes(b"not decoded: only the extension counts")
    (folder / "notes.txt").write_text("not an image: no warning")
    (folder / "._x.heic").write_bytes(b"a hidden fork: no warning")
    for path in (folder, zip_folder(folder, tmp_path / "images.zip")):
        with pytest.warns(IgnoredFilesWarning) as caught:
            source = FolderSource(path)
        assert source.files == ["kept.png"]
        assert len(caught) == 1
        message = str(caught[0].message)
        assert "4 files" in message and ".heic: 2, .jp2: 1, .psd: 1" in message
        assert str(path) in message and "convert them" in message and ".png" in message
    for name in ("a.psd", "b.HEIC", "c.heic", "d.jp2"):
        (folder / name).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", IgnoredFilesWarning)
        FolderSource(folder)  # Other files (notes.txt) pass without a word.


def test_max_image_pixels_skips_larger_images_and_names_the_setting(tmp_path: Path) -> None:
    Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / "big.png")  # 1024 pixels
    Image.new("RGB", (8, 8), (40, 50, 60)).save(tmp_path / "small.png")  # 64 pixels
    with pytest.raises(UnreadableImageError, match=r"32x32.*data\.max_image_pixels=100") as error:
        FolderSource(tmp_path, max_image_pixels=100).load(0, 8, 3)
    assert "null" in error.value.reason  # The reason itself says how to lift the limit.
    assert FolderSource(tmp_path, max_image_pixels=1024).load(0, 8, 3).shape == (8, 8, 3)
    assert FolderSource(tmp_path, max_image_pixels=None).load(0, 8, 3).shape == (8, 8, 3)
    for bad in (0, -1, 1.5, True, "many"):
        with pytest.raises(ValueError, match=f"data.max_image_pixels={bad!r}.*null"):
            FolderSource(tmp_path, max_image_pixels=bad)  # type: ignore[arg-type]


def test_max_image_pixels_reaches_the_cache_workers_and_the_key(tmp_path: Path) -> None:
    Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / "big.png")
    Image.new("RGB", (8, 8), (40, 50, 60)).save(tmp_path / "small.png")
    default = FolderSource(tmp_path)
    assert default.max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS
    # The default leaves the fingerprint (and so every existing cache's key) as it was.
    assert "max_image_pixels" not in default.fingerprint()
    limited = FolderSource(tmp_path, max_image_pixels=100)
    assert limited.fingerprint() != default.fingerprint()
    assert FolderSource(tmp_path, max_image_pixels=None).fingerprint() != default.fingerprint()
    cache = tmp_path / "cache"
    with pytest.warns(BadImagesWarning, match=r"big\.png \(32x32.*data\.max_image_pixels=100"):
        folder = prepare_cache(limited, 8, 3, cache, num_workers=1, progress=False)
    assert read_manifest(folder)["num_images"] == 1
    full = prepare_cache(default, 8, 3, cache, num_workers=1, progress=False)
    assert full != folder and read_manifest(full)["num_images"] == 2


# --- as a user runs it ----------------------------------------------------------------

# The tiny model without the shapes data, at 8x8 with batch 4: 24 images, three ticks.
SHORT_RUN = [
    *(override for override in TINY if not override.startswith("data.")),
    "growth.batch_size=4",
    "growth.stable_kimg=0.008",
    "growth.fade_kimg=0.008",
    "growth.tick_kimg=0.008",
    "callbacks.samples.num_images=4",
    "callbacks.samples.tile=8",
]


def test_training_proceeds_on_a_salted_folder(make_cfg, image_folder: Path, tmp_path: Path):
    salt(image_folder)
    cfg = make_cfg(
        "data=folder",
        f"data.path={image_folder}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.resolution=8",
        "data.prepare_workers=0",
        *SHORT_RUN,
        tiny=False,
    )
    with pytest.warns(BadImagesWarning, match="3 image files could not be read"):
        _, objects = train(cfg)
    assert objects["model"].cur_nimg == 24
    assert len(objects["datamodule"].images(8)) == len(NAMES)


def run_prepare(cwd: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    """``progan-prepare OVERRIDES`` as a user runs it."""
    return run_command("prepare", *overrides, cwd=cwd)


def test_prepare_command_then_training_reuses(
    make_cfg, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    data = ["data=folder", f"data.path={image_folder}", "data.resolution=8"]
    done = run_prepare(tmp_path, *data, f"data.cache_dir={cache}", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    assert "Data cache ready" in done.stdout
    (built,) = [p for p in cache.iterdir() if p.is_dir()]
    assert json.loads((built / "manifest.json").read_text())["num_images"] == len(NAMES)

    def no_decoding(*args: object) -> np.ndarray:
        raise AssertionError("training decoded an image: the prepared cache was not reused")

    monkeypatch.setattr(FolderSource, "load", no_decoding)
    cfg = make_cfg(
        *data,
        f"data.cache_dir={cache}",
        *SHORT_RUN,
        tiny=False,
    )
    _, objects = train(cfg)
    assert objects["datamodule"].cache_path == built


def test_prepare_command_bad_path_fails_with_one_message(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    done = run_prepare(
        tmp_path, "data=folder", f"data.path={missing}", f"hydra.run.dir={tmp_path}"
    )
    assert done.returncode != 0
    assert f"data.path={missing} does not exist; set data.path" in done.stderr
