"""The fused resampling layers against their unfused forms in the backward pass too.

The fused up-conv of G (``EqualizedConv2d(resample="up")``, the official ``upscale2d_conv2d``)
and the fused conv + pool of D (``resample="down"``, the official ``conv2d_downscale2d``) are
the same functions as nearest upsampling then the convolution, and the convolution then 2x2
average pooling. Here, in float64 with tight tolerances: the gradients with respect to the
weights and the inputs agree, and so does the WGAN-GP penalty's double backward (the gradient,
with respect to the weights, of a function of the input gradient). Whole networks: G with and
without ``fused_scale``; D in the official fused order (``lrelu(pool(conv(x)))``) against the
same order built from the unfused ops; the penalty measured at the final resolution against a
literal emulation of the official code (images nearest-upscaled to the final resolution, D
average-pooling them back), weight gradients included.
"""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from progan_lightning.layers import LRELU_SLOPE, EqualizedConv2d, downsample2x, upsample2x
from progan_lightning.losses import WGANGP, gradient_penalty
from progan_lightning.networks import Discriminator, DiscriminatorBlock, Generator

RES = 32
TINY = {"fmap_base": 64, "fmap_max": 6}
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _penalty_grads(
    critic, x: Tensor, weights: list[Tensor], target: float = 0.5
) -> tuple[Tensor, ...]:
    """The penalty's double backward: ``d (||d critic(x).sum() / dx|| - target)^2 / d
    (weights, x)``, summed over the batch."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    penalty = (grad.flatten(1).norm(dim=1) - target).square().sum()
    # A bias that only shifts a piecewise-linear net leaves the input gradient alone: zero.
    inputs = [*weights, x]
    grads = torch.autograd.grad(penalty, inputs, allow_unused=True)
    pairs = zip(grads, inputs, strict=True)
    return tuple(torch.zeros_like(w) if g is None else g for g, w in pairs)


def _assert_all_close(got: tuple[Tensor, ...], expected: tuple[Tensor, ...]) -> None:
    """Each pair agrees, and no weight's or input's gradient is all zero. (A bias has no
    effect on the input gradient of a piecewise-linear net: its penalty gradient is zero.)"""
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    assert all(b.abs().max() > 0 for b in expected if b.ndim > 1)


@pytest.mark.parametrize("resample", ["up", "down"])
@pytest.mark.parametrize("use_wscale", [True, False])
def test_fused_layer_double_backward_equals_the_separate_ops(
    resample: str, use_wscale: bool
) -> None:
    torch.manual_seed(0)
    plain = EqualizedConv2d(4, 5, 3, use_wscale=use_wscale).double()
    nn.init.normal_(plain.bias)
    fused = EqualizedConv2d(4, 5, 3, use_wscale=use_wscale, resample=resample).double()
    fused.load_state_dict(plain.state_dict())

    def separate(x: Tensor) -> Tensor:
        return plain(upsample2x(x)) if resample == "up" else downsample2x(plain(x))

    # A smooth nonlinearity after the layer makes the input gradient depend on the input
    # and the bias.
    upstream = torch.randn(3, 5, *((16, 16) if resample == "up" else (4, 4)), dtype=torch.float64)

    def critic(layer):
        return lambda x: (torch.tanh(layer(x)) * upstream).flatten(1).sum(1)

    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    _assert_all_close(
        _penalty_grads(critic(fused), x, [fused.weight, fused.bias]),
        _penalty_grads(critic(separate), x, [plain.weight, plain.bias]),
    )


def test_fused_generator_gradients_equal_the_separate_ops() -> None:
    torch.manual_seed(1)
    fused = Generator(RES, z_dim=8, **TINY).double()
    with torch.no_grad():  # non-zero biases, so that every term is exercised
        for p in fused.parameters():
            p.add_(0.1 * torch.randn_like(p))
    separate = Generator(RES, z_dim=8, fused_scale=False, **TINY).double()
    separate.load_state_dict(fused.state_dict())
    assert fused.blocks["b32"].conv0.resample == "up"
    assert separate.blocks["b32"].conv0.resample == "none"
    z = torch.randn(4, 8, dtype=torch.float64)
    pf, ps = list(fused.parameters()), list(separate.parameters())
    for stage in (1, 3):
        for alpha in (0.4, 1.0):
            zf, zs = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
            out_f, out_s = fused(zf, stage, alpha), separate(zs, stage, alpha)
            torch.testing.assert_close(out_f, out_s, **TOL)
            upstream = torch.randn_like(out_f)
            got = torch.autograd.grad(out_f, [*pf, zf], upstream, allow_unused=True)
            expected = torch.autograd.grad(out_s, [*ps, zs], upstream, allow_unused=True)
            live = [i for i, g in enumerate(expected) if g is not None]
            assert len(live) > 4 and [g is None for g in got] == [g is None for g in expected]
            _assert_all_close(tuple(got[i] for i in live), tuple(expected[i] for i in live))


def _official_order(block: DiscriminatorBlock, x: Tensor) -> Tensor:
    """A D block in the official fused order from the unfused ops: conv0, lrelu, conv1,
    2x2 average pool, lrelu."""
    x = F.leaky_relu(block.conv0(x), LRELU_SLOPE)
    return F.leaky_relu(downsample2x(block.conv1(x)), LRELU_SLOPE)


def _pair_of_discriminators() -> tuple[Discriminator, Discriminator]:
    """A fused D and the same weights run in the same order through the unfused ops."""
    torch.manual_seed(2)
    fused = Discriminator(RES, **TINY).double()
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(0.1 * torch.randn_like(p))
    separate = Discriminator(RES, fused_scale=False, **TINY).double()
    separate.load_state_dict(fused.state_dict())
    for key, block in separate.blocks.items():
        if key != "b4":
            assert block.conv1.resample == "none"
            block.forward = types.MethodType(_official_order, block)
    return fused, separate


@pytest.mark.parametrize("stage,alpha", [(1, 1.0), (3, 1.0), (3, 0.3)])
def test_fused_discriminator_gradients_and_double_backward_equal_the_unfused_ops(
    stage: int, alpha: float
) -> None:
    fused, separate = _pair_of_discriminators()
    res = 4 * 2**stage
    x = torch.randn(8, 3, res, res, dtype=torch.float64)
    xf, xs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_f, out_s = fused(xf, stage, alpha), separate(xs, stage, alpha)
    torch.testing.assert_close(out_f, out_s, **TOL)

    # Plain backward: weights and input.
    upstream = torch.randn_like(out_f)
    pf, ps = list(fused.parameters()), list(separate.parameters())
    got = torch.autograd.grad(out_f, [*pf, xf], upstream, allow_unused=True)
    expected = torch.autograd.grad(out_s, [*ps, xs], upstream, allow_unused=True)
    live = [i for i, g in enumerate(expected) if g is not None]
    assert len(live) > 4 and [g is None for g in got] == [g is None for g in expected]
    _assert_all_close(tuple(got[i] for i in live), tuple(expected[i] for i in live))

    # The penalty's double backward: weights and input.
    live_f = [pf[i] for i in live[:-1]]
    live_s = [ps[i] for i in live[:-1]]
    _assert_all_close(
        _penalty_grads(lambda y: fused(y, stage, alpha), x, live_f),
        _penalty_grads(lambda y: separate(y, stage, alpha), x, live_s),
    )


def _emulated_official_penalty(
    D: Discriminator, stage: int, alpha: float, reals: Tensor, fakes: Tensor, t: Tensor
) -> Tensor:
    """The official penalty, literally: both image sets nearest-upscaled to the final
    resolution, mixed there, D fed their 2x2-average-pooled-back copies, the gradient with
    respect to the full-size mix."""
    k = RES // (4 * 2**stage)

    def up(x: Tensor) -> Tensor:
        return x.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)

    mixed = torch.lerp(up(reals), up(fakes), t).requires_grad_(True)
    pooled = F.avg_pool2d(mixed, k) if k > 1 else mixed
    (grad,) = torch.autograd.grad(D(pooled, stage, alpha).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).square()


@pytest.mark.parametrize("stage,alpha", [(1, 1.0), (2, 0.5), (3, 1.0)])
def test_final_resolution_penalty_weight_gradients_match_the_official_emulation(
    stage: int, alpha: float
) -> None:
    fused, _ = _pair_of_discriminators()
    res, n = 4 * 2**stage, 6
    gen = torch.Generator().manual_seed(stage)
    reals = torch.randn(n, 3, res, res, generator=gen, dtype=torch.float64)
    fakes = torch.randn(n, 3, res, res, generator=gen, dtype=torch.float64)
    params = [p for p in fused.parameters()]

    torch.manual_seed(7)  # gradient_penalty draws t first from the global generator
    t = torch.rand(n, 1, 1, 1, dtype=torch.float64)
    expected_gp = _emulated_official_penalty(fused, stage, alpha, reals, fakes, t)
    expected = torch.autograd.grad(expected_gp.sum(), params, allow_unused=True)

    torch.manual_seed(7)
    critic = lambda x: fused(x, stage, alpha)  # noqa: E731
    gp = gradient_penalty(critic, reals, fakes, 1.0, resolution_scale=RES / res)
    got = torch.autograd.grad(gp.sum(), params, allow_unused=True)
    torch.testing.assert_close(gp, expected_gp, **TOL)
    live = [i for i, g in enumerate(expected) if g is not None]
    _assert_all_close(tuple(got[i] for i in live), tuple(expected[i] for i in live))

    # And through the loss object the trainer calls, penalty weight 10 (official).
    torch.manual_seed(7)
    loss, _ = WGANGP(drift=0.0).discriminator(critic, reals, fakes, resolution_scale=RES / res)
    torch.manual_seed(7)
    plain = (critic(fakes)[:, 0] - critic(reals)[:, 0]).mean() + 10 * _emulated_official_penalty(
        fused, stage, alpha, reals, fakes, torch.rand(n, 1, 1, 1, dtype=torch.float64)
    ).mean()
    _assert_all_close(
        tuple(g for g in torch.autograd.grad(loss, params, allow_unused=True) if g is not None),
        tuple(g for g in torch.autograd.grad(plain, params, allow_unused=True) if g is not None),
    )
