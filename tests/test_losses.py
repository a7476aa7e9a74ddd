"""Losses against their definitions."""

import math

import pytest
import torch
import torch.nn.functional as F

from progan_lightning.losses import LSGAN, WGANGP, Logistic, gradient_penalty
from progan_lightning.networks import Discriminator


class LinearCritic(torch.nn.Module):
    """D(x) = <w, x> + b, whose input gradient is w for every sample."""

    def __init__(self, shape, scale):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(shape) * scale)
        self.b = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1, keepdim=True) + self.b


@pytest.mark.parametrize("scale,target", [(1.0, 1.0), (0.01, 1.0), (3.0, 750.0)])
def test_gradient_penalty_matches_analytic_value_on_linear_critic(scale, target):
    torch.manual_seed(0)
    D = LinearCritic((3, 4, 4), scale)
    reals, fakes = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    gp = gradient_penalty(D, reals, fakes, target)
    expected = (D.w.detach().norm() - target) ** 2
    assert gp.shape == (5,)
    torch.testing.assert_close(gp, expected.expand(5), rtol=1e-5, atol=1e-5)


def test_gradient_penalty_is_differentiable_wrt_critic():
    torch.manual_seed(0)
    D = LinearCritic((2, 4, 4), 1.0)
    gp = gradient_penalty(D, torch.randn(4, 2, 4, 4), torch.randn(4, 2, 4, 4)).mean()
    gp.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    w = D.w.detach()
    expected = 2 * (w.norm() - 1) * w / w.norm()
    torch.testing.assert_close(D.w.grad, expected, rtol=1e-4, atol=1e-5)


def test_wgan_gp_total_equals_its_parts():
    torch.manual_seed(0)
    D = LinearCritic((1, 4, 4), 0.3)
    reals, fakes = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    loss_fn = WGANGP(gp_lambda=10.0, gp_target=2.0, drift=0.001)
    loss, stats = loss_fn.discriminator(D, reals, fakes)
    with torch.no_grad():
        real, fake = D(reals).flatten(), D(fakes).flatten()
    gp = (D.w.detach().norm() - 2.0) ** 2
    expected = (fake - real + 10.0 / 4.0 * gp + 0.001 * real**2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats["loss/gp"], gp, rtol=1e-5, atol=1e-5)
    assert loss_fn.generator(fake[:, None]) == pytest.approx(-fake.mean().item(), rel=1e-6)


def test_lsgan_and_logistic_values():
    real, fake = torch.tensor([[1.0], [0.0]]), torch.tensor([[0.0], [2.0]])

    def D(x):
        return real if x is reals else fake

    reals, fakes = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    loss, _ = LSGAN().discriminator(D, reals, fakes)
    # 0.5 * mean([(1-1)^2 + 0^2, (0-1)^2 + 2^2]) = 0.5 * 2.5
    assert loss.item() == pytest.approx(1.25)
    assert LSGAN().generator(fake).item() == pytest.approx(0.5 * (1 + 1) / 2)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected = ((sp(0) + sp(-1)) + (sp(2) + sp(0))) / 2
    loss, _ = Logistic().discriminator(lambda x: real if x.sum() == 0 else fake, reals, fakes)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert Logistic().generator(fake).item() == pytest.approx((sp(0) + sp(-2)) / 2, rel=1e-6)


def test_logistic_r1_penalty_on_linear_critic():
    torch.manual_seed(0)
    D = LinearCritic((1, 4, 4), 1.0)
    reals, fakes = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    _, stats = Logistic(r1_gamma=10.0).discriminator(D, reals, fakes)
    torch.testing.assert_close(stats["loss/r1"], D.w.detach().square().sum())


# The official gradient penalty, emulated literally: the official networks work at the final
# resolution at every stage (reals and G's output nearest-upscaled, D average-pooling its input
# down to the stage), and D_wgangp_acgan differentiates with respect to the full-size image.
FINAL = 32


def tiny_discriminator() -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(FINAL, img_channels=3, fmap_base=32, fmap_max=8).double()


def emulated_penalty(D, stage, alpha, reals, fakes, t, target, upscale):
    """``(||d D(x_full) / d x_full|| - target)^2`` with ``x_full = up(lerp(real, fake, t))`` fed
    through a D that average-pools back to the stage (``upscale=False``: at the stage)."""
    k = FINAL // (4 * 2**stage) if upscale else 1

    def up(x):
        return x.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)

    mixed = torch.lerp(up(reals), up(fakes), t).requires_grad_(True)
    scores = D(F.avg_pool2d(mixed, k) if k > 1 else mixed, stage, alpha)
    (grad,) = torch.autograd.grad(scores.sum(), mixed)
    return (grad.flatten(1).norm(dim=1) - target).square()


@pytest.mark.parametrize("stage,alpha", [(0, 1.0), (1, 0.5), (2, 1.0), (2, 0.25), (3, 1.0)])
@pytest.mark.parametrize("gp_resolution", ["final", "stage"])
def test_penalty_matches_an_emulation_of_the_official_full_resolution_gradient(
    stage, alpha, gp_resolution
):
    D = tiny_discriminator()
    res, n, target = 4 * 2**stage, 6, 0.5
    gen = torch.Generator().manual_seed(stage)
    reals = torch.randn(n, 3, res, res, generator=gen, dtype=torch.float64)
    fakes = torch.randn(n, 3, res, res, generator=gen, dtype=torch.float64)
    k = FINAL / res

    # The same t: gradient_penalty draws it first from the global generator.
    torch.manual_seed(7)
    t = torch.rand(n, 1, 1, 1, dtype=torch.float64)
    expected = emulated_penalty(D, stage, alpha, reals, fakes, t, target, gp_resolution == "final")

    loss_fn = WGANGP(gp_lambda=1.0, gp_target=target, drift=0.0, gp_resolution=gp_resolution)
    torch.manual_seed(7)
    _, stats = loss_fn.discriminator(
        lambda x: D(x, stage, alpha), reals, fakes, resolution_scale=k
    )
    torch.manual_seed(7)
    scale = k if gp_resolution == "final" else 1.0
    ours = gradient_penalty(
        lambda x: D(x, stage, alpha), reals, fakes, target, resolution_scale=scale
    )
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats["loss/gp"], expected.mean(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_full_resolution_norm_is_the_stage_norm_over_k(stage):
    """With target 0 the penalty is the squared norm: the ratio must be k^2 exactly (a wrong
    power of k, e.g. dividing by k^2 or not at all, fails here)."""
    D = tiny_discriminator()
    res, n = 4 * 2**stage, 4
    gen = torch.Generator().manual_seed(10 + stage)
    reals = torch.randn(n, 3, res, res, generator=gen, dtype=torch.float64)
    fakes = torch.randn(n, 3, res, res, generator=gen, dtype=torch.float64)
    t = torch.rand(n, 1, 1, 1, generator=gen, dtype=torch.float64)
    full = emulated_penalty(D, stage, 1.0, reals, fakes, t, 0.0, upscale=True)
    at_stage = emulated_penalty(D, stage, 1.0, reals, fakes, t, 0.0, upscale=False)
    k = FINAL / res
    torch.testing.assert_close(at_stage / full, torch.full_like(full, k**2), rtol=1e-10, atol=0)
    assert full.min() > 1e-6  # not a degenerate zero gradient


def test_wgan_gp_defaults_to_the_official_resolution_and_rejects_unknown_ones():
    assert WGANGP().gp_resolution == "final"
    with pytest.raises(ValueError, match="gp_resolution='full'.*final.*stage"):
        WGANGP(gp_resolution="full")


class SquareCritic(torch.nn.Module):
    """D(x) = <w, x^2>: the input gradient 2 w x differs from sample to sample. Records the
    batch size of every call."""

    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(shape))
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return (x.square() * self.w).flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize("fraction,n", [(1.0, 8), (0.25, 2), (0.5, 4), (0.01, 1)])
def test_wgan_gp_fraction_penalizes_the_first_pairs_of_the_batch(fraction, n):
    D = SquareCritic((2, 4, 4))
    reals, fakes = torch.randn(8, 2, 4, 4), torch.randn(8, 2, 4, 4)
    loss_fn = WGANGP(gp_lambda=10.0, gp_target=2.0, drift=0.001, gp_fraction=fraction)
    torch.manual_seed(3)
    loss, stats = loss_fn.discriminator(D, reals, fakes, resolution_scale=2.0)
    assert D.batches == [8, 8, n]  # reals, fakes, then the penalty's mixed images
    with torch.no_grad():
        real, fake = D(reals).flatten(), D(fakes).flatten()
    torch.manual_seed(3)  # the same interpolation weights
    gp = gradient_penalty(D, reals[:n], fakes[:n], 2.0, resolution_scale=2.0)
    assert gp.shape == (n,)
    assert n == 1 or gp.std() > 0  # per-sample values: which pairs are penalized matters
    expected = (fake - real + 0.001 * real**2).mean() + 10.0 / 4.0 * gp.mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats["loss/gp"], gp.mean().detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_wgan_gp_rejects_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match=rf"gp_fraction={fraction}.*\(0, 1\]"):
        WGANGP(gp_fraction=fraction)


@pytest.mark.parametrize("loss_fn", [LSGAN(), Logistic(r1_gamma=1.0)])
def test_other_losses_take_and_ignore_the_resolution_scale(loss_fn):
    D = LinearCritic((1, 4, 4), 1.0)
    reals, fakes = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    plain, _ = loss_fn.discriminator(D, reals, fakes)
    scaled, _ = loss_fn.discriminator(D, reals, fakes, resolution_scale=8.0)
    torch.testing.assert_close(plain, scaled)


@pytest.mark.parametrize(
    "loss, reals, expected",
    [
        # WGAN-GP: about the midpoint of the mean real (2.5) and fake (0) scores, 1.25.
        (WGANGP(gp_lambda=0), [3.0, 1.0, 2.0, 4.0], 0.5),
        (Logistic(), [1.0, -1.0, 2.0, 3.0], 0.5),  # about 0
        (LSGAN(), [0.6, 0.4, 1.0, 0.0], 0.0),  # about 0.5, between the targets 1 and 0
    ],
    ids=type,
)
def test_real_sign_is_adas_heuristic_about_each_losss_boundary(loss, reals, expected):
    def D(x):  # the first pixel is the score [N, 1]
        return x.flatten(1)[:, :1]

    reals = torch.tensor(reals).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    fakes = torch.tensor([0.0, 0.0, -2.0, 2.0]).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    _, stats = loss.discriminator(D, reals, fakes)
    assert stats["loss/real_sign"].item() == expected
