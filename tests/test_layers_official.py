"""The real-image fade, minibatch stddev and the pixel norm's epsilon against the official
code's formulations (tkarras/progressive_growing_of_gans), gradients included where they
train something."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.layers import MinibatchStddev, PixelNorm, fade_reals


def official_fade_lod(x: torch.Tensor, lod: float) -> torch.Tensor:
    """``train.process_reals``' FadeLOD, transcribed: the 2x2 means tiled back over their
    cells, blended in by the fractional part of the level of detail. [NCHW]"""
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5), keepdim=True)
    y = y.expand(n, c, h // 2, 2, w // 2, 2).reshape(n, c, h, w)
    return x + (y - x) * (lod - float(int(lod)))


@pytest.mark.parametrize("alpha", [1e-6, 0.1, 0.5, 0.9, 1.0])
def test_fade_reals_is_the_official_fade_lod(alpha: float) -> None:
    # During the fade into a resolution the official lod runs from k + 1 down to k (fraction
    # 1 - alpha), with the reals at the new resolution. (At lod k + 1 itself it takes the
    # lower resolution's reals, upscaled: the blocky image, as fade_reals(x, 0).)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(
        fade_reals(x, alpha), official_fade_lod(x, 2.0 + (1.0 - alpha)), rtol=0, atol=1e-14
    )


def official_minibatch_stddev(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """``networks.minibatch_stddev_layer``, transcribed (in the input's dtype)."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    y = x.reshape(g, -1, c, h, w)
    y = y - y.mean(dim=0, keepdim=True)
    y = torch.sqrt(y.square().mean(dim=0) + 1e-8)
    y = y.mean(dim=(1, 2, 3), keepdim=True)  # [M111]
    y = y.repeat(g, 1, h, w)  # [N1HW]
    return torch.cat([x, y], dim=1)


@pytest.mark.parametrize("n,group_size", [(8, 4), (4, 4), (3, 4), (16, 16)])
def test_minibatch_stddev_and_its_gradient_are_the_official_layer(n: int, group_size: int):
    torch.manual_seed(n)
    x = torch.randn(n, 5, 4, 4, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    ours, ref = MinibatchStddev(group_size)(x), official_minibatch_stddev(x_ref, group_size)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)  # the layer runs in float32
    upstream = torch.randn_like(ours)
    (g,) = torch.autograd.grad(ours, x, upstream)
    (g_ref,) = torch.autograd.grad(ref, x_ref, upstream)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


def test_the_folder_recipe_normalizes_with_the_official_epsilon(tmp_path: Path) -> None:
    # The recipe of python train.py data=folder in fp32 (the peer comparison's recipe).
    overrides = ["data=folder", f"data.path={tmp_path}", "data.resolution=32"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = compose("train", overrides=[*overrides, "model/precision=fp32"])
    finally:
        GlobalHydra.instance().clear()
    G = instantiate(cfg.model.G)
    norms = [m for m in G.modules() if isinstance(m, PixelNorm)]
    assert len(norms) == G.num_stages + 1  # one per block (used twice), and the latent's
    assert {m.eps for m in norms} == {1e-8}
