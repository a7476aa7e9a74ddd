"""Image sources refuse what they cannot use in one line naming the setting, and count every
file they leave out."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from progan_lightning.data import cache_build
from progan_lightning.data.cache import read_manifest
from progan_lightning.data.cache_build import BadImagesWarning, prepare_cache
from progan_lightning.data.digits import DigitsSource
from progan_lightning.data.files import FolderSource
from progan_lightning.data.sources import ShapesSource


def images(folder: Path, count: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    return folder


def test_a_damaged_zip_is_called_a_damaged_zip(tmp_path: Path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:
        for i in range(4):
            archive.writestr(f"{i}.png", b"x" * 100)
    damaged = tmp_path / "data.zip"
    damaged.write_bytes(good.read_bytes()[:-30])  # the central directory cut off
    with pytest.raises(ValueError, match=r"data.path=.*data\.zip is a damaged \.zip"):
        FolderSource(damaged)


def test_another_file_as_data_path_says_what_it_is(tmp_path: Path):
    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")
    with pytest.raises(ValueError, match=r"one\.png is a PNG image, not a folder or a \.zip"):
        FolderSource(tmp_path / "one.png")


def test_dataset_json_paths_are_normalised(tmp_path: Path):
    folder = images(tmp_path / "imgs")
    labels = [["./0.png", 0], ["1.png", 1], ["./sub/../2.png", 0], ["3.png", 1]]
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    source = FolderSource(folder, labels="json")
    assert [source.label(i) for i in range(4)] == [0, 1, 0, 1]


def test_a_path_listed_twice_once_with_dot_slash_is_refused(tmp_path: Path):
    folder = images(tmp_path / "imgs")
    labels = [["./0.png", 0], ["0.png", 1], ["1.png", 1], ["2.png", 0], ["3.png", 1]]
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    with pytest.raises(ValueError, match=r"listed more than once: 0\.png"):
        FolderSource(folder, labels="json")


@pytest.mark.parametrize("cls", [DigitsSource, ShapesSource])
@pytest.mark.parametrize("seed", [-1, -5])
def test_a_negative_seed_names_the_key(cls, seed: int):
    with pytest.raises(ValueError, match=rf"data.source.seed={seed} .*>= 0"):
        cls(num_images=4, seed=seed)


def test_a_dangling_symlink_is_counted_with_the_unreadable_files(tmp_path: Path):
    folder = images(tmp_path / "imgs")
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.warns(BadImagesWarning, match=r"gone\.png"):
        cache = prepare_cache(FolderSource(folder), 8, 3, tmp_path / "cache", progress=False)
    manifest = read_manifest(cache)
    assert manifest["num_images"] == 4 and manifest["num_skipped"] == 1


def test_a_build_that_waits_for_anothers_lock_says_for_whom(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    lock_file = tmp_path / "key.lock"
    hold = (
        "import sys, time; from pathlib import Path; from progan_lightning.data import "
        "cache_build\nwith cache_build._locked(Path(sys.argv[1])):\n"
        "    print('held', flush=True); time.sleep(2)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(lock_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with caplog.at_level(logging.INFO), cache_build._locked(lock_file):
            pass
    finally:
        holder.wait(timeout=60)
    waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(waits) == 1 and f"process {holder.pid} on " in waits[0], caplog.text
    assert str(lock_file.parent) in waits[0]
