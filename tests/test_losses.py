"""Losses against their definitions."""

import math

import pytest
import torch

from progan_lightning.losses import LSGAN, WGANGP, Logistic, gradient_penalty


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
