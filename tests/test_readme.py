"""What the README says of outputs and figures, checked against the code and configs."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from helpers import compose_config
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.imaging import to_uint8
from progan_lightning.metrics.swd import SlicedWassersteinDistance
from progan_lightning.networks import Generator


def test_a_multirun_writes_one_folder_per_job_under_multiruns(tmp_path: Path):
    cfg = compose_config(tmp_path, tmp_path / "cache", ["seed=1"])
    sweep = Path(cfg.hydra.sweep.dir)
    assert sweep.parent == tmp_path / "quickstart" / "multiruns"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", sweep.name)
    assert cfg.hydra.sweep.subdir == "0"  # the job number
    assert Path(cfg.hydra.run.dir).parent == tmp_path / "quickstart" / "runs"


def test_generated_images_are_not_clamped_and_to_uint8_clamps_them():
    torch.manual_seed(0)
    G = Generator(8, z_dim=16, fmap_base=32, fmap_max=16)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if "weight" in name:
                param.mul_(3)
        images = G(torch.randn(16, 16), G.num_stages - 1, 1.0)  # [16, 3, 8, 8]
    assert images.abs().max() > 1  # past [-1, 1]: the README says so
    uint8 = to_uint8(images)
    assert uint8.dtype == torch.uint8
    assert uint8[images >= 1].eq(255).all() and uint8[images <= -1].eq(0).all()


def test_the_floor_commands_differ_only_in_patches_and_real_sets():
    # README: the quoted floor uses the paper's 128 patches per image (the metric's default,
    # which the legibility script uses); progan-evaluate's defaults are 32 and seed 123.
    assert SlicedWassersteinDistance(32).nhoods_per_image == 128
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        default = compose("evaluate", ["source=reals"])
        quoted = compose(
            "evaluate",
            ["source=reals", "seed=0", "metrics=swd", "metrics.swd.nhoods_per_image=128"],
        )
    GlobalHydra.instance().clear()
    assert default.metrics.swd.nhoods_per_image == 32 and default.seed == 123
    assert quoted.metrics.swd.nhoods_per_image == 128 and quoted.seed == 0
    assert quoted.data.resolution == 32 and quoted.num_images == 2048  # the quickstart's digits


def test_evaluate_class_accuracy_settings_are_the_ones_quickstart_md_names():
    # quickstart.md: progan-evaluate uses the script's classifier settings (1500 steps, seed 0)
    # but 256 samples per class.
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("evaluate", ["source=reals"])
    GlobalHydra.instance().clear()
    assert dict(cfg.class_accuracy) == {"steps": 1500, "per_class": 256, "seed": 0}
