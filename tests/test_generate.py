"""progan-generate's images: latents drawn chunk by chunk (memory bounded by the chunk, not by
num_images), the same images as one draw; small outputs upscaled for viewing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import FIXTURES
from progan_lightning import generate as generate_module
from progan_lightning.generate import generate, render
from progan_lightning.imaging import to_uint8, view_tile
from progan_lightning.networks import seeded_latents
from progan_lightning.official import load_official_generator

PICKLE = FIXTURES / "official-progan" / "tiny32.pkl"


def test_latents_are_drawn_and_rendered_chunk_by_chunk_with_the_same_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    G = load_official_generator(PICKLE)
    monkeypatch.setattr(generate_module, "LATENT_CHUNK", 16)
    sizes: list[int] = []

    def spy(G, z, *args, **kwargs):
        sizes.append(len(z))
        return render(G, z, *args, **kwargs)

    monkeypatch.setattr(generate_module, "render", spy)
    result = generate(G, tmp_path, num_images=40, seed=3, interp_keyframes=0, grid=False)
    assert sizes == [16, 16, 8] and len(result["images"]) == 40
    expected = render(G, seeded_latents((40, G.z_dim), 3), G.trained_stage, 1.0)
    for i in (0, 17, 39):
        png = np.asarray(Image.open(result["images"][i]))
        assert np.array_equal(png, to_uint8(expected[i : i + 1])[0].permute(1, 2, 0).numpy())


def test_a_huge_num_images_starts_writing_without_allocating_every_latent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    G = load_official_generator(PICKLE)

    class Stop(Exception):
        pass

    written: list[Path] = []

    def save_png(path, image):
        written.append(path)
        if len(written) == 3:
            raise Stop

    monkeypatch.setattr(generate_module, "save_png", save_png)
    with pytest.raises(Stop):
        generate(G, tmp_path, num_images=1_000_000_000, interp_keyframes=0)
    assert [p.name for p in written] == ["seed0_0000.png", "seed0_0001.png", "seed0_0002.png"]


def test_small_images_are_upscaled_by_a_whole_factor_in_the_grid_and_the_animation(
    tmp_path: Path,
):
    G = load_official_generator(PICKLE)  # 32 x 32 images
    assert view_tile(32) == 128 and view_tile(100) == 200 and view_tile(256) == 256
    result = generate(G, tmp_path, num_images=16, interp_keyframes=2, interp_steps=2)
    first = np.asarray(Image.open(result["images"][0]))
    assert first.shape == (32, 32, 3)  # the image files keep G's resolution
    grid = np.asarray(Image.open(result["grid"]))
    assert grid.shape == (4 * 128, 4 * 128, 3)
    assert np.array_equal(grid[:128, :128], first.repeat(4, axis=0).repeat(4, axis=1))
    gif = Image.open(result["interp"])
    assert gif.size == (128, 128) and gif.n_frames == 4
