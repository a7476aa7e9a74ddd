"""Layers against the paper's and the official code's definitions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from progan_lightning.layers import (
    LRELU_SLOPE,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStddev,
    PixelNorm,
    downsample2x,
    fade,
    fade_reals,
    upsample2x,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_lrelu_slope() -> None:
    assert LRELU_SLOPE == 0.2


@pytest.mark.parametrize("gain", [math.sqrt(2), 1.0, math.sqrt(2) / 4])
def test_equalized_conv_scale_and_output(gain: float) -> None:
    conv = EqualizedConv2d(5, 7, 3, gain=gain)
    assert conv.scale == pytest.approx(gain / math.sqrt(5 * 3 * 3))
    assert conv.weight.shape == (7, 5, 3, 3)
    assert torch.equal(conv.bias, torch.zeros(7))
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 5, 6, 6)
    expected = F.conv2d(x, conv.weight * conv.scale, padding=1) + conv.bias.view(1, -1, 1, 1)
    out = conv(x)
    assert out.shape == (2, 7, 6, 6)
    torch.testing.assert_close(out, expected)


def test_equalized_conv_1x1_keeps_size() -> None:
    conv = EqualizedConv2d(4, 3, 1, gain=1.0)
    assert conv.scale == pytest.approx(1 / 2)
    assert conv(torch.randn(2, 4, 5, 5)).shape == (2, 3, 5, 5)


@pytest.mark.parametrize("gain", [math.sqrt(2), 1.0])
def test_equalized_linear_scale_and_output(gain: float) -> None:
    lin = EqualizedLinear(12, 5, gain=gain)
    assert lin.scale == pytest.approx(gain / math.sqrt(12))
    assert torch.equal(lin.bias, torch.zeros(5))
    with torch.no_grad():
        lin.bias.normal_()
    x = torch.randn(3, 12)
    out = lin(x)
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, x @ (lin.weight * lin.scale).T + lin.bias)


def test_equalized_weight_statistics() -> None:
    # With wscale: N(0, 1) storage; without: N(0, gain / sqrt(fan_in)) and scale 1.
    conv = EqualizedConv2d(64, 128, 3)
    assert conv.weight.std().item() == pytest.approx(1.0, rel=0.02)
    assert conv.weight.mean().item() == pytest.approx(0.0, abs=0.01)
    plain = EqualizedConv2d(64, 128, 3, use_wscale=False)
    assert plain.scale == 1.0
    he = math.sqrt(2) / math.sqrt(64 * 9)
    assert plain.weight.std().item() == pytest.approx(he, rel=0.02)

    lin = EqualizedLinear(256, 512, gain=1.0)
    assert lin.weight.std().item() == pytest.approx(1.0, rel=0.02)
    plain_lin = EqualizedLinear(256, 512, gain=1.0, use_wscale=False)
    assert plain_lin.weight.std().item() == pytest.approx(1 / 16, rel=0.02)
    x = torch.randn(4, 256)
    torch.testing.assert_close(plain_lin(x), F.linear(x, plain_lin.weight, plain_lin.bias))


def test_equalized_no_bias() -> None:
    assert EqualizedConv2d(2, 3, 3, bias=False).bias is None
    lin = EqualizedLinear(4, 3, bias=False)
    assert lin.bias is None
    x = torch.randn(2, 4)
    torch.testing.assert_close(lin(x), x @ (lin.weight * lin.scale).T)


def test_equalized_output_has_unit_scale_activations() -> None:
    # The point of wscale: unit-variance input -> output variance ~ gain^2.
    conv = EqualizedConv2d(64, 64, 3, gain=1.0)
    y = conv(torch.randn(8, 64, 16, 16))[:, :, 1:-1, 1:-1]
    assert y.var().item() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("shape", [(4, 16), (3, 8, 5, 5)])
def test_pixel_norm_unit_rms_and_scale_invariance(shape: tuple[int, ...]) -> None:
    norm = PixelNorm()
    x = torch.randn(shape) * 3 + 1
    y = norm(x)
    assert y.shape == x.shape
    rms = y.square().mean(dim=1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms))
    torch.testing.assert_close(norm(x * 7.5), y)
    # Direction per pixel is preserved.
    torch.testing.assert_close(y * x.square().mean(dim=1, keepdim=True).sqrt(), x)


def test_pixel_norm_eps() -> None:
    assert torch.equal(PixelNorm()(torch.zeros(2, 4, 3, 3)), torch.zeros(2, 4, 3, 3))
    x = torch.full((1, 4), 1e-3)
    torch.testing.assert_close(PixelNorm(eps=1e-6)(x), x / math.sqrt(1e-6 + 1e-6))


def _mbstd_reference(x: torch.Tensor, group: int) -> torch.Tensor:
    """Explicit loop: group j holds samples j, j + M, j + 2M, ... (official strided order)."""
    n, _, h, w = x.shape
    m = n // group
    extra = torch.empty(n, 1, h, w)
    for j in range(m):
        members = x[[j + k * m for k in range(group)]].double()  # [GCHW]
        var = ((members - members.mean(0)) ** 2).mean(0)
        value = torch.sqrt(var + 1e-8).mean()
        for k in range(group):
            extra[j + k * m] = value
    return torch.cat([x, extra], dim=1)


@pytest.mark.parametrize(("n", "group_size", "used"), [(8, 4, 4), (6, 4, 3), (3, 4, 3), (7, 4, 1)])
def test_minibatch_stddev_matches_loop(n: int, group_size: int, used: int) -> None:
    x = torch.randn(n, 5, 3, 3) * torch.linspace(0.5, 2, n).view(-1, 1, 1, 1)
    y = MinibatchStddev(group_size)(x)
    assert y.shape == (n, 6, 3, 3)
    torch.testing.assert_close(y[:, :5], x)
    torch.testing.assert_close(y, _mbstd_reference(x, used))
    # The extra channel is constant over H, W.
    extra = y[:, 5]
    assert torch.equal(extra, extra[:, :1, :1].expand_as(extra))


def test_minibatch_stddev_groups_are_strided() -> None:
    # Samples 0 and 1 are in different groups for N=8, G=4 (groups {0,2,4,6} and {1,3,5,7}).
    x = torch.zeros(8, 1, 2, 2)
    x[1::2] = torch.arange(4.0).view(4, 1, 1, 1)
    y = MinibatchStddev(4)(x)[:, 1, 0, 0]
    torch.testing.assert_close(y[0::2], torch.full((4,), 1e-4))
    torch.testing.assert_close(y[1::2], torch.full((4,), math.sqrt(1.25 + 1e-8)))


def test_minibatch_stddev_identical_samples() -> None:
    x = torch.randn(1, 3, 4, 4).expand(4, 3, 4, 4).contiguous()
    extra = MinibatchStddev(4)(x)[:, 3]
    torch.testing.assert_close(extra, torch.full_like(extra, math.sqrt(1e-8)))


def test_minibatch_stddev_half_precision_keeps_dtype() -> None:
    x = torch.randn(4, 2, 2, 2).to(torch.bfloat16)
    assert MinibatchStddev(2)(x).dtype == torch.bfloat16


@pytest.mark.parametrize("group_size", [0, 1, -2])
def test_minibatch_stddev_rejects_small_groups(group_size: int) -> None:
    with pytest.raises(ValueError, match=f"group_size={group_size}"):
        MinibatchStddev(group_size)


def test_resampling() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    down = downsample2x(x)
    torch.testing.assert_close(down, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    up = upsample2x(down)
    assert up.shape == (1, 1, 4, 4)
    torch.testing.assert_close(up[0, 0, :2, :2], torch.full((2, 2), 2.5))
    torch.testing.assert_close(up[0, 0, 2:, 2:], torch.full((2, 2), 12.5))
    torch.testing.assert_close(downsample2x(upsample2x(x)), x)


def test_fade_reals() -> None:
    x = torch.randn(2, 3, 8, 8)
    blocky = upsample2x(downsample2x(x))
    assert torch.equal(fade_reals(x, 0.0), blocky)
    assert torch.equal(fade_reals(x, 1.0), x)
    torch.testing.assert_close(fade_reals(x, 0.25), 0.75 * blocky + 0.25 * x)
    assert torch.equal(fade_reals(x, torch.tensor(0.0)), blocky)
    assert torch.equal(fade_reals(x, torch.tensor(1.0)), x)
    torch.testing.assert_close(fade_reals(x, torch.tensor(0.6)), 0.4 * blocky + 0.6 * x)
    # Blocky: constant over each 2x2 cell and mean-preserving.
    assert torch.equal(blocky[..., 0::2, 0::2], blocky[..., 1::2, 1::2])
    torch.testing.assert_close(blocky.mean(), x.mean())


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, torch.tensor(0.3)])
def test_fade_blends_paths_of_different_dtypes_in_the_wider(alpha: float | torch.Tensor) -> None:
    # bf16 autocast on CUDA hands G's fade an fp32 old path and a bf16 new one; torch.lerp
    # refuses mixed dtypes, which stopped every bf16 GPU run at its first fade-in.
    old = torch.randn(2, 3, 8, 8)
    new = torch.randn(2, 3, 8, 8).bfloat16()
    for a, b in ((old, new), (old.bfloat16(), new.float())):
        out = fade(a, b, alpha)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, torch.lerp(a.float(), b.float(), float(alpha)))
    assert torch.equal(fade(old, new, 0.0), old)
    assert torch.equal(fade(old, new, 1.0), new.float())


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (EqualizedConv2d(6, 5, 3), (2, 6, 5, 5)),
        (EqualizedConv2d(6, 3, 1, gain=1.0), (2, 6, 4, 4)),
        (EqualizedConv2d(4, 5, 3, bias=False), (2, 4, 4, 4)),
        (EqualizedLinear(12, 7), (3, 12)),
        (EqualizedLinear(12, 7, gain=math.sqrt(2) / 4, bias=False), (3, 12)),
    ],
    ids=["conv3x3", "conv1x1", "conv-no-bias", "linear", "linear-no-bias"],
)
def test_equalized_layer_is_the_he_layer_with_scaled_gradients(layer, shape) -> None:
    # Reference: the plain layer with the He-initialised weight w_eff = scale * w. Equalized lr
    # gives the same outputs and input gradients, and the stored weight's gradient is
    # scale * dL/dw_eff (the runtime scale sits on the weight's gradient path).
    if layer.bias is not None:
        with torch.no_grad():
            layer.bias.normal_()
    w_eff = (layer.weight.detach() * layer.scale).requires_grad_(True)
    bias = None if layer.bias is None else layer.bias.detach().clone().requires_grad_(True)
    x = torch.randn(shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    if isinstance(layer, EqualizedConv2d):
        expected = F.conv2d(x_ref, w_eff, bias, padding=layer.weight.shape[-1] // 2)
    else:
        expected = F.linear(x_ref, w_eff, bias)
    out = layer(x)
    torch.testing.assert_close(out, expected)

    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(layer.weight.grad, layer.scale * w_eff.grad)
    torch.testing.assert_close(x.grad, x_ref.grad)
    if bias is not None:
        torch.testing.assert_close(layer.bias.grad, bias.grad)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("use_wscale", [True, False])
def test_fused_resampling_equals_the_separate_ops(kernel_size: int, use_wscale: bool) -> None:
    """Official upscale2d_conv2d / conv2d_downscale2d: the same function as the two steps."""
    torch.manual_seed(0)
    plain = EqualizedConv2d(5, 7, kernel_size, use_wscale=use_wscale).double()
    nn.init.normal_(plain.bias)
    up = EqualizedConv2d(5, 7, kernel_size, use_wscale=use_wscale, resample="up").double()
    down = EqualizedConv2d(5, 7, kernel_size, use_wscale=use_wscale, resample="down").double()
    up.load_state_dict(plain.state_dict())
    down.load_state_dict(plain.state_dict())
    x = torch.randn(3, 5, 6, 6, dtype=torch.float64, requires_grad=True)

    for fused, separate in [
        (up, lambda x: plain(upsample2x(x))),  # [3, 7, 12, 12]
        (down, lambda x: downsample2x(plain(x))),  # [3, 7, 3, 3]
    ]:
        y, reference = fused(x), separate(x)
        assert y.shape == reference.shape
        torch.testing.assert_close(y, reference, rtol=0, atol=1e-12)
        g = torch.randn_like(y)
        grads = torch.autograd.grad(y, [x, fused.weight, fused.bias], g)
        expected = torch.autograd.grad(reference, [x, plain.weight, plain.bias], g)
        for a, b in zip(grads, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-11)
    assert "resample=up" in repr(up)
    with pytest.raises(ValueError, match="resample='left'"):
        EqualizedConv2d(1, 1, 3, resample="left")
