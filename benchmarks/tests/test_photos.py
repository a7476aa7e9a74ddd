"""The photo crops of ``python -m benchmarks.photos``: flat, or a folder per photo
(a labelled data set for ``data=folder data.labels=folders``). Synthetic photos stand in for
scikit-image's (not a test dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import photos


@pytest.fixture(autouse=True)
def _synthetic_photos(monkeypatch: pytest.MonkeyPatch) -> None:
    """One flat colour per photo, so a crop tells which photo it came from."""
    colours = [(30 * i, 255 - 30 * i, 100) for i in range(len(photos.PHOTOS))]
    monkeypatch.setattr(
        photos, "load_photos", lambda: [Image.new("RGB", (120, 90), c) for c in colours]
    )


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_by_photo_writes_the_same_crops_into_a_folder_per_photo(tmp_path: Path) -> None:
    flat = photos.write_crops(tmp_path / "flat", 40, resolution=8, seed=3)
    by_photo = photos.write_crops(tmp_path / "classes", 40, resolution=8, seed=3, by_photo=True)
    files = sorted(flat.glob("*.png"))
    assert len(files) == 40
    placed = {p.name: p for p in by_photo.glob("*/*.png")}
    assert sorted(placed) == [p.name for p in files]  # the same crops, only moved
    assert not list(by_photo.glob("*.png"))
    stems = [Path(name).stem for name in photos.PHOTOS]
    for path in files:
        twin = placed[path.name]
        assert np.array_equal(_pixels(path), _pixels(twin))
        # Its folder is the photo it was cut from (here: told by the photo's colour).
        colour = tuple(int(v) for v in _pixels(twin)[0, 0])
        assert stems.index(twin.parent.name) == [30 * i for i in range(8)].index(colour[0])
    assert len({p.parent.name for p in placed.values()}) > 4


def test_the_command_line_takes_by_photo(tmp_path: Path) -> None:
    photos.main([str(tmp_path), "--count", "12", "--resolution", "8", "--by-photo"])
    assert len(list(tmp_path.glob("*/*.png"))) == 12
