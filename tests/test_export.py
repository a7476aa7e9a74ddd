"""Export -> load_generator -> generate reproduces the module; the command writes its files."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from safetensors.torch import load_file, save_file

import progan_lightning
from progan_lightning.checkpoint import export_checkpoint, load_checkpoint
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.cli.generate import main as generate_main
from progan_lightning.export import export_generator, load_generator
from progan_lightning.generate import generate, load_any
from progan_lightning.imaging import to_uint8
from progan_lightning.networks import Generator, seeded_latents
from progan_lightning.train import train


@pytest.fixture
def trained(make_cfg, tmp_path: Path):
    """A tiny run stopped mid-fade (96 images: 8x8 fade, alpha 0.5)."""
    _, objects = train(make_cfg("logger=none", "metrics=none", "growth.total_kimg=0.096"))
    return objects["model"]


def test_export_load_generate_reproduces_module(trained, tmp_path: Path):
    model = trained
    assert (model.stage, model.cur_nimg) == (1, 96)
    arch = json.loads((tmp_path / "generator.json").read_text())
    assert arch["init_kwargs"] == model.G_ema.init_kwargs and arch["resolution"] == 8

    z = seeded_latents((5, model.G_ema.z_dim), seed=3)
    with torch.no_grad():
        expected = model.eval()(z)  # G_ema at the module's stage and alpha
    from_export = progan_lightning.load_generator(tmp_path / "generator.safetensors")
    weights, _ = export_checkpoint(
        tmp_path / "checkpoints" / "last.ckpt", tmp_path / "x.safetensors"
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    # A run's folder stands for its newest checkpoint (the end of training, or where it
    # stopped: newer than an export an earlier end wrote).
    for G in (from_export, load_any(weights), load_any(last), load_any(tmp_path)):
        assert (G.trained_stage, G.trained_alpha) == (model.stage, model.alpha)
        with torch.no_grad():
            torch.testing.assert_close(G(z, G.trained_stage, G.trained_alpha), expected)

    out = generate(from_export, tmp_path / "gen", num_images=5, seed=3, interp_keyframes=2)
    png = np.asarray(Image.open(out["images"][2])).reshape(8, 8, -1)  # grayscale: [8, 8]
    assert np.array_equal(png, to_uint8(expected[2:3])[0].permute(1, 2, 0).numpy())
    assert Image.open(out["grid"]).size == (3 * 128, 2 * 128)  # 8 px shown at 128
    assert Image.open(out["interp"]).n_frames == 2 * 12

    low = generate(from_export, tmp_path / "low", num_images=1, resolution=4, interp_keyframes=0)
    assert Image.open(low["images"][0]).size == (4, 4) and low["interp"] is None
    with pytest.raises(ValueError, match=r"resolution=16 is not a trained stage"):
        generate(from_export, tmp_path / "bad", resolution=16)


def test_checkpoint_loading_never_unpickles_without_consent(tmp_path: Path):
    path = tmp_path / "foreign.ckpt"
    state = {"G_ema.w": torch.zeros(1)}
    extra = argparse.Namespace(a=1)
    torch.save({"pytorch-lightning_version": "2.5", "state_dict": state, "extra": extra}, path)
    with pytest.raises(ValueError, match="allow_pickle=true"):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_pickle=True)["extra"].a == 1


def test_generate_command_writes_requested_files(trained, tmp_path: Path):
    out = tmp_path / "cmd"
    cmd = [
        sys.executable,
        "-m",
        "progan_lightning.cli.generate",
        f"source={tmp_path / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={out}",
        "num_images=3",
        "interp.keyframes=2",
        "interp.steps=3",
        "device=cpu",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    names = {p.name for p in out.iterdir()}
    assert {
        "seed0_0000.png",
        "seed0_0001.png",
        "seed0_0002.png",
        "grid.png",
        "interp.gif",
    } <= names
    assert Image.open(out / "interp.gif").n_frames == 6


def tiny_generator(seed: int) -> Generator:
    """An 8x8 generator with small feature maps, initialised from ``seed``."""
    torch.manual_seed(seed)
    return Generator(img_resolution=8, z_dim=8, fmap_base=32, fmap_max=8)


def test_export_pair_from_different_runs_is_refused(tmp_path: Path):
    first, _ = export_generator(tiny_generator(0), tmp_path / "a" / "generator.safetensors")
    second, arch = export_generator(tiny_generator(1), tmp_path / "b" / "generator.safetensors")
    assert json.loads(arch.read_text())["export_id"]
    assert load_generator(second).trained_stage == 1  # A matching pair loads.
    shutil.copy(first.with_suffix(".json"), arch)  # a's architecture beside b's weights
    with pytest.raises(ValueError, match="different exports") as error:
        load_generator(second)
    assert str(second) in str(error.value) and str(arch) in str(error.value)
    with pytest.raises(ValueError, match="different exports"):
        load_any(arch)


def test_a_folder_that_is_not_a_run_is_refused_naming_what_source_takes(tmp_path: Path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"images is a folder without checkpoints/; give"):
        load_any(tmp_path / "images")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a run that wrote none yet
    with pytest.raises(FileNotFoundError, match=r"no readable checkpoint in .*run/checkpoints"):
        load_any(tmp_path / "run")


def test_export_without_id_still_loads(tmp_path: Path):
    """Exports written before export ids: no id in either file."""
    G = tiny_generator(0)
    weights, arch = export_generator(G, tmp_path / "old.safetensors")
    meta = json.loads(arch.read_text())
    del meta["export_id"]
    arch.write_text(json.dumps(meta))
    save_file(
        load_file(str(weights)), str(weights), metadata={"format": "progan-lightning/generator"}
    )
    loaded = load_generator(weights)
    z = seeded_latents((2, 8), seed=0)
    torch.testing.assert_close(loaded(z, 1, 1.0), G.eval()(z, 1, 1.0))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("num_images=0", "num_images=0"),
        ("num_images=-3", "num_images=-3"),
        ("batch_size=0", "batch_size=0"),
        ("interp.steps=0", "interp.steps=0"),
        ("interp.fps=0", "interp.fps=0"),
        ("interp.keyframes=-1", "interp.keyframes=-1"),
    ],
)
def test_generate_settings_checked_before_loading(override: str, key: str, tmp_path: Path, capsys):
    """A bad count fails with its key (one line, status 2) before the (missing) source is
    even looked at."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("generate", [f"source={tmp_path / 'missing.ckpt'}", override])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as exited:
        generate_main(cfg)
    assert exited.value.code == 2 and f"Error: {key} is out of range" in capsys.readouterr().err


def test_an_export_is_readable_as_the_umask_allows(tmp_path: Path):
    """safetensors creates its file 0600; the export (and every file written through
    ``fs.atomic_write``) gets the mode of a file the user creates, so a shared run folder's
    generator is readable where its JSON and checkpoints are."""
    previous = os.umask(0o022)
    try:
        weights, arch = export_generator(tiny_generator(0), tmp_path / "generator.safetensors")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644
    assert stat.S_IMODE(arch.stat().st_mode) == 0o644
