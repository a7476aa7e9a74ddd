"""Generator and discriminator against the paper's architecture and fade-in definitions."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from progan_lightning.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStddev,
    PixelNorm,
    downsample2x,
    upsample2x,
)
from progan_lightning.networks import Discriminator, Generator, num_features

TINY = {"fmap_base": 128, "fmap_max": 32}
RES = 32
STAGES = range(4)  # 4, 8, 16, 32


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(1)
    return Generator(RES, z_dim=16, **TINY)


@pytest.fixture(scope="module")
def D() -> Discriminator:
    torch.manual_seed(2)
    return Discriminator(RES, **TINY)


def _features(G: Generator, z: torch.Tensor, stage: int) -> torch.Tensor:
    """G features after blocks 0..stage-1, by hand."""
    x = z
    for key in list(G.blocks)[:stage]:
        x = G.blocks[key](x)
    return x


def _res(stage: int) -> int:
    return 4 * 2**stage


def test_num_features_table() -> None:
    got = [num_features(r.bit_length() - 2, 8192, 1.0, 512) for r in (4, 8, 16, 32, 64)]
    got += [num_features(r.bit_length() - 2, 8192, 1.0, 512) for r in (128, 256, 512, 1024)]
    assert got == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    G = Generator(1024, z_dim=8)
    assert G.channels == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert G.num_stages == 9


def test_block_layout(G: Generator, D: Discriminator) -> None:
    keys = ["b4", "b8", "b16", "b32"]
    assert list(G.blocks) == list(G.to_rgb) == keys
    assert list(D.blocks) == list(D.from_rgb) == keys
    assert G.num_stages == D.num_stages == 4
    assert G.channels == [32, 32, 16, 8]
    # 4x4: dense z -> nf*16 with gain sqrt(2)/4 and a per-channel bias added after reshape.
    b4 = G.blocks["b4"]
    assert b4.dense.weight.shape == (32 * 16, 16)
    assert b4.dense.scale == pytest.approx((2**0.5 / 4) / 16**0.5)
    assert b4.dense.bias is None and b4.bias.shape == (32,)
    assert G.blocks["b16"].conv0.weight.shape == (16, 32, 3, 3)
    assert G.to_rgb["b32"].weight.shape == (3, 8, 1, 1)
    assert G.to_rgb["b32"].scale == pytest.approx(1 / 8**0.5)
    # D: fromRGB -> nf(block), conv keeps, conv -> nf(lower); 4x4 mbstd adds one channel.
    assert D.from_rgb["b32"].conv.weight.shape == (8, 3, 1, 1)
    assert D.blocks["b32"].conv0.weight.shape == (8, 8, 3, 3)
    assert D.blocks["b32"].conv1.weight.shape == (16, 8, 3, 3)
    out = D.blocks["b4"]
    assert isinstance(out.mbstd, MinibatchStddev)
    assert out.conv.weight.shape == (32, 33, 3, 3)
    assert out.dense0.weight.shape == (32, 32 * 16)
    assert out.dense1.weight.shape == (1, 32)
    assert out.dense1.scale == pytest.approx(1 / 32**0.5)


@pytest.mark.parametrize("stage", STAGES)
def test_shapes(G: Generator, D: Discriminator, stage: int) -> None:
    z = torch.randn(4, 16)
    for alpha in (1.0, 0.5, torch.tensor(0.3)):
        img = G(z, stage, alpha)
        assert img.shape == (4, 3, _res(stage), _res(stage))
        assert D(img, stage, alpha).shape == (4, 1)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_generator_fade(G: Generator, stage: int) -> None:
    z = torch.randn(4, 16)
    key, prev = list(G.blocks)[stage], list(G.blocks)[stage - 1]
    x = _features(G, z, stage)
    new = G.to_rgb[key](G.blocks[key](x))
    old = upsample2x(G.to_rgb[prev](x))
    assert not torch.allclose(old, new)
    torch.testing.assert_close(G(z, stage, 1.0), new)
    torch.testing.assert_close(G(z, stage, torch.tensor(1.0)), new)
    assert torch.equal(G(z, stage, 0.0), old)
    assert torch.equal(G(z, stage, torch.tensor(0.0)), old)
    torch.testing.assert_close(G(z, stage, 0.3), 0.7 * old + 0.3 * new)
    torch.testing.assert_close(G(z, stage, torch.tensor(0.3)), 0.7 * old + 0.3 * new)
    # Alpha 0 is the previous stage, upsampled.
    assert torch.equal(G(z, stage, 0.0), upsample2x(G(z, stage - 1, 1.0)))


def test_generator_stage0_ignores_alpha(G: Generator) -> None:
    z = torch.randn(2, 16)
    expected = G.to_rgb["b4"](G.blocks["b4"](z))
    torch.testing.assert_close(G(z, 0, 0.0), expected)
    torch.testing.assert_close(G(z, 0), expected)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_discriminator_fade(D: Discriminator, stage: int) -> None:
    img = torch.randn(4, 3, _res(stage), _res(stage))
    key, prev = list(D.blocks)[stage], list(D.blocks)[stage - 1]
    new = D.blocks[key](D.from_rgb[key](img))
    old = D.from_rgb[prev](downsample2x(img))

    def tail(x: torch.Tensor) -> torch.Tensor:
        for k in reversed(list(D.blocks)[:stage]):
            x = D.blocks[k](x)
        return x

    torch.testing.assert_close(D(img, stage, 1.0), tail(new))
    torch.testing.assert_close(D(img, stage, 0.0), tail(old))
    torch.testing.assert_close(D(img, stage, 0.25), tail(0.75 * old + 0.25 * new))
    torch.testing.assert_close(D(img, stage, torch.tensor(0.25)), tail(0.75 * old + 0.25 * new))
    # Alpha 0 is the previous stage on the pooled image.
    assert torch.equal(D(img, stage, 0.0), D(downsample2x(img), stage - 1, 1.0))
    assert not torch.allclose(D(img, stage, 0.0), D(img, stage, 1.0))


def test_generator_pixel_norm_and_latent_norm(G: Generator) -> None:
    z = torch.randn(4, 16)
    # Every layer of G (latent dense, convs, toRGB) sees pixel-normalized input: unit RMS
    # over channels at every pixel.
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, args, name=name: inputs.update({name: args[0]}))
        for name, m in G.named_modules()
        if isinstance(m, (EqualizedConv2d, EqualizedLinear))
    ]
    try:
        G(z, 3, 0.5)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(inputs) == 2 + 3 * 2 + 2  # b4 dense and conv, two per higher block, two toRGB
    for name, x in inputs.items():
        rms = x.square().mean(dim=1).sqrt()
        torch.testing.assert_close(rms, torch.ones_like(rms), msg=name)


def test_switches() -> None:
    G = Generator(8, z_dim=16, use_pixel_norm=False, normalize_latent=False, **TINY)
    assert not any(isinstance(m, PixelNorm) for m in G.modules())
    z = torch.randn(2, 16)
    assert not torch.allclose(G(z * 10, 1), G(z, 1))
    G = Generator(8, z_dim=16, use_pixel_norm=False, **TINY)
    assert sum(isinstance(m, PixelNorm) for m in G.modules()) == 1
    G = Generator(8, z_dim=16, use_wscale=False, **TINY)
    assert G.blocks["b8"].conv0.scale == 1.0

    D = Discriminator(8, mbstd_group_size=0, **TINY)
    assert not any(isinstance(m, MinibatchStddev) for m in D.modules())
    assert D.blocks["b4"].conv.weight.shape[1] == 32
    assert D(torch.randn(3, 3, 8, 8), 1, 0.5).shape == (3, 1)
    for bad in (1, -4):  # a group of 1 is a constant feature map: refused, not dropped
        with pytest.raises(ValueError, match=rf"model\.D\.mbstd_group_size={bad}.*or 0 to"):
            Discriminator(8, mbstd_group_size=bad, **TINY)


def test_widths_too_small_for_the_resolution_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"fmap_base=64 gives 0 feature maps at 256x256.*128"):
        Generator(256, fmap_base=64)
    with pytest.raises(ValueError, match=r"fmap_base=64 gives 0 feature maps at 256x256"):
        Discriminator(256, fmap_base=64)


def test_minibatch_stddev_depends_on_batch(D: Discriminator) -> None:
    # With mbstd a sample's score depends on its group; each is scored alone without it.
    img = torch.randn(4, 3, 8, 8)
    alone = torch.cat([D(img[i : i + 1], 1) for i in range(4)])
    assert not torch.allclose(D(img, 1), alone)
    torch.manual_seed(3)
    D0 = Discriminator(RES, mbstd_group_size=0, **TINY)
    torch.testing.assert_close(D0(img, 1), torch.cat([D0(img[i : i + 1], 1) for i in range(4)]))


def test_single_channel() -> None:
    G = Generator(16, img_channels=1, z_dim=16, **TINY)
    D = Discriminator(16, img_channels=1, **TINY)
    img = G(torch.randn(2, 16), 2, 0.5)
    assert img.shape == (2, 1, 16, 16)
    assert D(img, 2, 0.5).shape == (2, 1)


@pytest.mark.parametrize("res", [48, 2, 0, 3, 100])
def test_bad_resolution(res: int) -> None:
    with pytest.raises(ValueError, match=f"img_resolution={res} is not a power of two"):
        Generator(res)
    with pytest.raises(ValueError, match=f"img_resolution={res} "):
        Discriminator(res)


def test_bad_inputs(G: Generator, D: Discriminator) -> None:
    with pytest.raises(ValueError, match="img_channels=0"):
        Generator(8, img_channels=0)
    with pytest.raises(ValueError, match="stage=4"):
        G(torch.randn(2, 16), 4)
    with pytest.raises(ValueError, match="stage=-1"):
        D(torch.randn(2, 3, 4, 4), -1)
    with pytest.raises(ValueError, match=r"expected \[N, 16\]"):
        G(torch.randn(2, 8), 0)
    with pytest.raises(ValueError, match=r"stage 2 expects .*16, 16\], got \[2, 3, 8, 8\]"):
        D(torch.randn(2, 3, 8, 8), 2)


def test_state_dict_independent_of_stage(G: Generator, D: Discriminator) -> None:
    g_keys, d_keys = list(G.state_dict()), list(D.state_dict())
    for stage in STAGES:
        G(torch.randn(2, 16), stage, 0.5)
        D(torch.randn(2, 3, _res(stage), _res(stage)), stage, 0.5)
        assert list(G.state_dict()) == g_keys
        assert list(D.state_dict()) == d_keys
    assert "blocks.b32.conv1.weight" in g_keys and "to_rgb.b4.weight" in g_keys
    assert "from_rgb.b4.conv.weight" in d_keys and "blocks.b4.dense1.bias" in d_keys


def test_init_kwargs_rebuild(G: Generator, D: Discriminator) -> None:
    for net, cls in ((G, Generator), (D, Discriminator)):
        kwargs = json.loads(json.dumps(net.init_kwargs))
        twin = cls(**kwargs)
        twin.load_state_dict(net.state_dict())
        assert {k: v.shape for k, v in twin.state_dict().items()} == {
            k: v.shape for k, v in net.state_dict().items()
        }
    assert G.init_kwargs["z_dim"] == 16 and D.init_kwargs["mbstd_group_size"] == 4


def test_parameter_count_matches_paper() -> None:
    # Paper, Table 2: 23.1M parameters each for the 1024x1024 G and D.
    with torch.device("meta"):
        G, D = Generator(1024), Discriminator(1024)
    for net in (G, D):
        count = sum(p.numel() for p in net.parameters())
        assert count == pytest.approx(23.1e6, rel=0.01)


def _grads(net: nn.Module) -> dict[str, bool]:
    return {
        n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in net.named_parameters()
    }


@pytest.mark.parametrize(("stage", "alpha"), [(0, 1.0), (2, 0.5), (2, 1.0), (3, 0.5)])
def test_gradients_reach_active_parameters_only(stage: int, alpha: float) -> None:
    G = Generator(RES, z_dim=16, **TINY)
    D = Discriminator(RES, **TINY)
    D(G(torch.randn(4, 16), stage, alpha), stage, alpha).sum().backward()
    active = {f"b{_res(s)}" for s in range(stage + 1)}
    rgb = {f"b{_res(stage)}"} | ({f"b{_res(stage - 1)}"} if stage > 0 and alpha < 1 else set())
    for net, rgb_name in ((G, "to_rgb"), (D, "from_rgb")):
        for name, has_grad in _grads(net).items():
            group, key = name.split(".")[:2]
            expected = key in (rgb if group == rgb_name else active)
            assert has_grad == expected, name


def test_fused_generator_is_the_same_function() -> None:
    torch.manual_seed(3)
    fused = Generator(RES, z_dim=16, **TINY)
    separate = Generator(RES, z_dim=16, fused_scale=False, **TINY)
    separate.load_state_dict(fused.state_dict())
    assert fused.blocks["b8"].conv0.resample == "up"
    z = torch.randn(4, 16)
    for stage in STAGES:
        for alpha in (0.0, 0.4, 1.0):
            torch.testing.assert_close(fused(z, stage, alpha), separate(z, stage, alpha))


def test_fused_discriminator_block_is_the_official_order() -> None:
    torch.manual_seed(4)
    fused = Discriminator(RES, **TINY)
    separate = Discriminator(RES, fused_scale=False, **TINY)
    separate.load_state_dict(fused.state_dict())
    block, reference = fused.blocks["b16"], separate.blocks["b16"]
    assert block.conv1.resample == "down" and reference.conv1.resample == "none"
    x = torch.randn(4, block.conv0.weight.shape[1], 16, 16)
    h = F.leaky_relu(reference.conv0(x), 0.2)
    # fused_scale=True: lrelu(pool(conv(h))); fused_scale=False: pool(lrelu(conv(h))).
    torch.testing.assert_close(block(x), F.leaky_relu(downsample2x(reference.conv1(h)), 0.2))
    torch.testing.assert_close(reference(x), downsample2x(F.leaky_relu(reference.conv1(h), 0.2)))
    assert not torch.allclose(block(x), reference(x))
