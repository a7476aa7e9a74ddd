"""Data settings as a user types them: quoted paths in Hydra overrides, data.max_image_pixels."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
from hydra.errors import HydraException
from PIL import Image

from progan_lightning.data.cache import load_level
from progan_lightning.data.cache_build import prepare_cache
from progan_lightning.data.datamodule import build_datamodule
from progan_lightning.data.files import DEFAULT_MAX_IMAGE_PIXELS, FolderSource

# Folder names that Hydra's override grammar does not take unquoted (all but the first).
AWKWARD_NAMES = ["my faces", "données/ça va", "~tilde", "a, b=c (1) [2] #3 it's"]


def image_folder(root: Path, name: str) -> Path:
    """``root / name`` holding one 6x6 image with a non-ASCII file name."""
    folder = root / name
    folder.mkdir(parents=True)
    Image.new("RGB", (6, 6), (10, 120, 230)).save(folder / "été.png")
    return folder


@pytest.mark.parametrize("name", AWKWARD_NAMES)
@pytest.mark.parametrize("quote", ['"', "'"])
def test_quoted_path_override_reaches_the_source(
    make_cfg, tmp_path: Path, name: str, quote: str
) -> None:
    folder = image_folder(tmp_path, name)
    value = str(folder).replace(quote, "\\" + quote)  # A quote inside must be escaped.
    cfg = make_cfg("data=folder", f"data.path={quote}{value}{quote}", tiny=False)
    assert cfg.data.path == str(folder) == cfg.data.source.path
    source = hydra.utils.instantiate(cfg.data.source)
    assert source.files == ["été.png"]
    cache = prepare_cache(source, 4, 3, tmp_path / "cache", progress=False)
    assert np.array_equal(load_level(cache, 4)[0, :, 0, 0], [10, 120, 230])


def test_spaces_alone_need_no_hydra_quotes(make_cfg, tmp_path: Path) -> None:
    """One shell argument with spaces (``'data.path=/data/my faces'``) is fine unquoted."""
    folder = image_folder(tmp_path, "my faces")
    assert make_cfg("data=folder", f"data.path={folder}", tiny=False).data.path == str(folder)


@pytest.mark.parametrize("name", AWKWARD_NAMES[1:])
def test_other_awkward_paths_fail_unquoted(make_cfg, tmp_path: Path, name: str) -> None:
    """Why the README says to quote: Hydra's grammar refuses these characters unquoted."""
    with pytest.raises(HydraException):
        make_cfg("data=folder", f"data.path={tmp_path / name}", tiny=False)


def test_max_image_pixels_setting_reaches_the_source(make_cfg, tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "images")
    cfg = make_cfg("data=folder", f"data.path={folder}", tiny=False)
    assert cfg.data.max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS  # conf/data/folder.yaml
    for override, expected in (("100", 100), ("null", None)):
        cfg = make_cfg(
            "data=folder", f"data.path={folder}", f"data.max_image_pixels={override}", tiny=False
        )
        datamodule = build_datamodule(cfg.data)
        assert isinstance(datamodule.source, FolderSource)
        assert datamodule.source.max_image_pixels == expected
