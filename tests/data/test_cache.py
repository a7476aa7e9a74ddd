"""The multi-resolution cache: levels, reuse, keys, atomic builds, parallel loading."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from progan_lightning.data import cache as cache_module
from progan_lightning.data import cache_build
from progan_lightning.data.cache import EncodedLevel, Storage, load_level, read_manifest
from progan_lightning.data.cache_build import box_downsample, prepare_cache
from progan_lightning.data.sources import ShapesSource
from progan_lightning.faults import DamagedFile, UserError, WriteError


class FailingShapes(ShapesSource):
    """Shapes whose image ``fail_at`` cannot be loaded (a crash mid-build)."""

    def __init__(self, num_images: int, fail_at: int, error: type[BaseException] = RuntimeError):
        super().__init__(num_images)
        self.fail_at = fail_at
        self.error = error

    def load(self, index: int, resolution: int, channels: int) -> np.ndarray:
        if index == self.fail_at:
            raise self.error("simulated crash")
        return super().load(index, resolution, channels)


def test_box_downsample_rounds_half_to_even() -> None:
    blocks = [
        [0, 0, 0, 1],
        [0, 1, 1, 1],
        [0, 0, 1, 1],
        [1, 1, 2, 2],
        [2, 2, 3, 3],
        [255] * 3 + [254],
    ]
    x = np.array(blocks, dtype=np.uint8).reshape(6, 1, 2, 2)  # Means .25 .75 .5 1.5 2.5 254.75
    assert box_downsample(x).ravel().tolist() == [0, 1, 0, 2, 2, 255]
    assert box_downsample(np.zeros((2, 3, 8, 6), dtype=np.uint8)).shape == (2, 3, 4, 3)
    with pytest.raises(ValueError, match="even"):
        box_downsample(np.zeros((1, 1, 3, 4), dtype=np.uint8))


def test_levels_match_source_and_box_filter(tmp_path: Path) -> None:
    source = ShapesSource(20, seed=3)
    folder = prepare_cache(source, 16, 3, tmp_path, progress=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["levels"] == [4, 8, 16]
    assert manifest["num_images"] == 20
    top = load_level(folder, 16)
    assert top.shape == (20, 3, 16, 16) and top.dtype == np.uint8
    expected = np.stack([source.load(i, 16, 3).transpose(2, 0, 1) for i in range(20)])
    np.testing.assert_array_equal(top, expected)
    for res in (8, 4):
        level = load_level(folder, res, mmap=False)
        assert level.shape == (20, 3, res, res)
        np.testing.assert_array_equal(
            level, box_downsample(np.asarray(load_level(folder, 2 * res)))
        )


def test_grayscale_cache(tmp_path: Path) -> None:
    source = ShapesSource(6, seed=0)
    level = load_level(prepare_cache(source, 8, 1, tmp_path, progress=False), 8)
    assert level.shape == (6, 1, 8, 8)
    np.testing.assert_array_equal(level[2, 0], source.load(2, 8, 1)[..., 0])


def test_second_call_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = ShapesSource(10, seed=0)
    first = prepare_cache(source, 8, 3, tmp_path, progress=False)

    def no_loading(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(ShapesSource, "load", no_loading)
    assert prepare_cache(ShapesSource(10, seed=0), 8, 3, tmp_path, progress=False) == first


def test_changed_settings_get_their_own_folder(tmp_path: Path) -> None:
    folders = {
        prepare_cache(ShapesSource(8, seed=0), 8, 3, tmp_path, progress=False),
        prepare_cache(ShapesSource(8, seed=1), 8, 3, tmp_path, progress=False),
        prepare_cache(ShapesSource(9, seed=0), 8, 3, tmp_path, progress=False),
        prepare_cache(ShapesSource(8, seed=0), 16, 3, tmp_path, progress=False),
        prepare_cache(ShapesSource(8, seed=0), 8, 1, tmp_path, progress=False),
    }
    assert len(folders) == 5
    assert all(f.parent == tmp_path for f in folders)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_crash_leaves_nothing_complete(tmp_path: Path, error: type[BaseException]) -> None:
    with pytest.raises(error, match="simulated crash"):
        prepare_cache(FailingShapes(12, fail_at=7, error=error), 8, 3, tmp_path, progress=False)
    assert not list(tmp_path.rglob("manifest.json"))
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
    # A good build of the same data afterwards succeeds (same key: same fingerprint).
    good = ShapesSource(12, seed=0)
    folder = prepare_cache(good, 8, 3, tmp_path, progress=False)
    np.testing.assert_array_equal(load_level(folder, 8)[7], good.load(7, 8, 3).transpose(2, 0, 1))


def test_stale_build_is_replaced(tmp_path: Path) -> None:
    source = ShapesSource(6, seed=0)
    key, _ = cache_module.cache_key(source, 8, 3)
    # Leftovers of a killed build: a tmp folder and a final folder without manifest.
    (tmp_path / f"{key}.tmp-999999").mkdir()
    (tmp_path / key).mkdir()
    (tmp_path / key / "8.npy").write_bytes(b"half-written")
    folder = prepare_cache(source, 8, 3, tmp_path, progress=False)
    assert folder == tmp_path / key
    assert load_level(folder, 8).shape == (6, 3, 8, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == [key, f"{key}.lock"]


def test_bad_resolution(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="24"):
        prepare_cache(ShapesSource(4), 24, 3, tmp_path, progress=False)
    with pytest.raises(ValueError, match="channels=2"):
        prepare_cache(ShapesSource(4), 8, 2, tmp_path, progress=False)


def test_missing_level(tmp_path: Path) -> None:
    folder = prepare_cache(ShapesSource(4), 8, 3, tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="16x16"):
        load_level(folder, 16)


def test_workers_match_serial(tmp_path: Path) -> None:
    source = ShapesSource(40, seed=5)
    serial = prepare_cache(source, 16, 3, tmp_path / "serial", num_workers=0, progress=False)
    parallel = prepare_cache(source, 16, 3, tmp_path / "parallel", num_workers=2, progress=False)
    for res in (4, 8, 16):
        np.testing.assert_array_equal(load_level(serial, res), load_level(parallel, res))


@pytest.mark.parametrize("compress_format", ["png", "jpeg"])
def test_compressed_top_levels(tmp_path: Path, compress_format: str) -> None:
    source = ShapesSource(12, seed=2)
    raw = prepare_cache(source, 32, 3, tmp_path, progress=False)
    storage = Storage(compress_above=8, compress_format=compress_format)
    packed = prepare_cache(source, 32, 3, tmp_path, progress=False, storage=storage)
    assert packed != raw
    manifest = read_manifest(packed)
    assert manifest["level_format"] == {
        "4": "npy",
        "8": "npy",
        "16": compress_format,
        "32": compress_format,
    }
    assert sorted(p.name for p in packed.iterdir()) == [
        "16.offsets.npy",
        "16.pack",
        "32.offsets.npy",
        "32.pack",
        "4.npy",
        "8.npy",
        "manifest.json",
    ]
    for res in (4, 8):
        np.testing.assert_array_equal(load_level(packed, res), load_level(raw, res))
    for res in (16, 32):
        level = load_level(packed, res)
        assert isinstance(level, EncodedLevel) and level.shape == (12, 3, res, res)
        assert level[3].shape == (3, res, res)
        decoded = level[np.arange(12)]
        expected = np.asarray(load_level(raw, res))
        if compress_format == "png":  # lossless: exactly the raw level
            np.testing.assert_array_equal(decoded, expected)
        else:  # quality 95, 4:4:4: close, and smaller once images outgrow the headers
            assert np.abs(decoded.astype(int) - expected).mean() < 3
            assert res == 16 or level.nbytes < expected.nbytes
    # Lower levels are still the box filter of the exact level above.
    np.testing.assert_array_equal(load_level(raw, 8), box_downsample(load_level(raw, 16)))


def test_encoded_level_pickles_as_paths(tmp_path: Path) -> None:
    storage = Storage(compress_above=4)
    folder = prepare_cache(
        ShapesSource(64, seed=1), 32, 3, tmp_path, progress=False, storage=storage
    )
    level = load_level(folder, 32)
    level[0]  # Opens the pack.
    blob = pickle.dumps(level)
    assert len(blob) < 4096
    np.testing.assert_array_equal(pickle.loads(blob)[[5, 2]], level[np.array([5, 2])])


def test_storage_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="data.compress_above=100"):
        Storage(compress_above=100)
    with pytest.raises(ValueError, match="data.compress_format='gif'"):
        Storage(compress_above=64, compress_format="gif")
    assert Storage(None, "jpeg").settings() == Storage(None, "png").settings()


def test_shrink_npy_keeps_the_first_rows(tmp_path: Path) -> None:
    file = tmp_path / "a.npy"
    array = np.lib.format.open_memmap(file, "w+", np.uint8, (1000, 3, 4, 4))
    array[:] = np.arange(1000, dtype=np.uint8)[:, None, None, None] % 251
    array.flush()
    del array
    cache_build._shrink_npy(file, 7)
    small = np.load(file)
    assert small.shape == (7, 3, 4, 4)
    np.testing.assert_array_equal(small[:, 0, 0, 0], np.arange(7))
    assert file.stat().st_size == 128 + 7 * 48


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_a_shrunk_npy_is_the_file_numpy_writes(tmp_path: Path, version: tuple[int, int]) -> None:
    """Byte for byte the .npy of the first rows that numpy writes in the same format version."""
    file = tmp_path / "a.npy"
    rows = np.arange(123 * 2 * 8 * 8, dtype=np.uint8).reshape(123, 2, 8, 8)
    array = np.lib.format.open_memmap(file, "w+", np.uint8, rows.shape, version=version)
    array[:] = rows
    array.flush()
    del array
    cache_build._shrink_npy(file, 5)
    expected = io.BytesIO()
    np.lib.format.write_array(expected, rows[:5], version=version)
    assert file.read_bytes() == expected.getvalue()


def _prepare_in_child(root: str, queue: multiprocessing.Queue) -> None:
    queue.put(str(prepare_cache(ShapesSource(300, seed=9), 32, 3, root, progress=False)))


def test_concurrent_preparations_share_one_cache(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [
        context.Process(target=_prepare_in_child, args=(str(tmp_path), queue)) for _ in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [child.exitcode for child in children] == [0, 0]
    first, second = queue.get(), queue.get()
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        Path(first).name,
        f"{Path(first).name}.lock",
    ]
    level = load_level(first, 32)
    np.testing.assert_array_equal(
        level[299], ShapesSource(300, seed=9).load(299, 32, 3).transpose(2, 0, 1)
    )


def test_a_cache_finished_elsewhere_wins_the_rename(tmp_path: Path) -> None:
    source = ShapesSource(6, seed=0)
    done = prepare_cache(source, 8, 3, tmp_path / "a", progress=False)
    _, settings = cache_module.cache_key(source, 8, 3)
    twin = tmp_path / "a" / "twin.tmp-1"
    shutil.copytree(done, twin)
    cache_build._publish(twin, done, settings)  # ``done`` is complete: keep it, drop the twin
    assert not twin.exists() and (done / "manifest.json").is_file()
    (done / "manifest.json").unlink()  # An incomplete target: the rename error is raised.
    shutil.copytree(tmp_path / "a" / done.name, twin)
    with pytest.raises(OSError):
        cache_build._publish(twin, done, settings)


def refuse_lock_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make taking the build lock fail as a read-only folder does."""

    class Refused:
        def __init__(self, path: Path) -> None:
            self.path = path

        def acquire(self, timeout: float | None = None) -> None:
            raise PermissionError(13, "Permission denied", str(self.path))

        def release(self) -> None:  # pragma: no cover - never acquired
            pass

    monkeypatch.setattr(cache_build, "file_lock", Refused)


def test_read_only_cache_dir_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_lock_files(monkeypatch)
    with pytest.raises(WriteError) as error:
        prepare_cache(ShapesSource(4), 8, 3, tmp_path, progress=False)
    message = error.value.message()  # exit status 4
    assert f"could not write {tmp_path}" in message and "Permission denied" in message
    assert "data.cache_dir" in message and "PROGAN_CACHE_DIR" in message


def test_cache_dir_that_cannot_be_created_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where the cache folder should go")
    with pytest.raises(
        UserError, match=r"data.cache_dir=.*file/cache cannot be a folder: .*file is a file"
    ):
        prepare_cache(ShapesSource(4), 8, 3, tmp_path / "file" / "cache", progress=False)


def test_read_only_cache_dir_still_serves_a_finished_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = prepare_cache(ShapesSource(4), 8, 3, tmp_path, progress=False)
    refuse_lock_files(monkeypatch)
    assert prepare_cache(ShapesSource(4), 8, 3, tmp_path, progress=False) == folder


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders"
)
def test_chmod_read_only_cache_dir(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(WriteError, match="Permission denied"):
            prepare_cache(ShapesSource(4), 8, 3, root, progress=False)
    finally:
        root.chmod(0o755)


def damage(file: Path, how: str) -> None:
    """Zero 64 bytes in the middle of ``file``, cut its tail, or overwrite its header."""
    data = bytearray(file.read_bytes())
    if how == "zeroed":
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)
    elif how == "truncated":
        data = data[: len(data) - 100]
    else:  # header
        data[20:40] = b"'descr': '|O', 'fo"
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["zeroed", "truncated", "header"])
def test_a_damaged_level_is_found_when_opened_and_rebuilt(tmp_path: Path, how: str) -> None:
    source = ShapesSource(12, seed=1)
    folder = prepare_cache(source, 16, 3, tmp_path, progress=False)
    level = folder / "8.npy"
    intact = level.read_bytes()
    damage(level, how)
    with pytest.warns(cache_module.DamagedCacheWarning, match=rf"{folder}.*8\.npy.*rebuilding"):
        assert prepare_cache(source, 16, 3, tmp_path, progress=False) == folder
    assert level.read_bytes() == intact and cache_module.cache_problems(folder, True) == []
    assert read_manifest(folder)["files"]["8.npy"]["bytes"] == len(intact)


def test_a_large_cache_checks_sizes_only_unless_asked(tmp_path: Path, monkeypatch) -> None:
    source = ShapesSource(12, seed=1)
    folder = prepare_cache(source, 16, 3, tmp_path, progress=False)
    monkeypatch.setattr(cache_module, "FULL_CHECK_BYTES", 100)  # "large": sizes only
    damage(folder / "16.npy", "zeroed")
    assert cache_module.cache_problems(folder) == []
    assert cache_module.cache_problems(folder, True) == [
        "16.npy differs from its SHA-256 when it was written"
    ]
    damage(folder / "16.npy", "header")
    with pytest.raises(DamagedFile, match=rf"16\.npy: damaged data cache level .* {folder}"):
        load_level(folder, 16)
    with pytest.warns(cache_module.DamagedCacheWarning):
        prepare_cache(source, 16, 3, tmp_path, progress=False, verify=True)
    assert np.asarray(load_level(folder, 16)).any()


def test_prepare_verify_true_rebuilds_a_damaged_large_cache(tmp_path: Path, monkeypatch) -> None:
    """``progan-prepare verify=true``: every checksum, also where opening checks sizes only."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from progan_lightning.cli.config import CONFIG_DIR
    from progan_lightning.cli.prepare import prepare

    GlobalHydra.instance().clear()
    overrides = ["data.resolution=8", "data.source.num_images=16", f"paths.cache_dir={tmp_path}"]
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("prepare", overrides=[*overrides, "verify=true"])
    GlobalHydra.instance().clear()
    folder = Path(prepare(cfg)["path"])
    intact = (folder / "8.npy").read_bytes()
    monkeypatch.setattr(cache_module, "FULL_CHECK_BYTES", 100)  # opening checks sizes only
    damage(folder / "8.npy", "zeroed")
    cfg.verify = False
    prepare(cfg)
    assert (folder / "8.npy").read_bytes() != intact  # not seen without verify
    cfg.verify = True
    prepare(cfg)
    assert (folder / "8.npy").read_bytes() == intact
