"""Class-conditional G and D (official G_paper / D_paper with label_size > 0) and the AC-GAN
class term of every loss (official D_wgangp_acgan / G_wgan_acgan)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from progan_lightning.layers import PixelNorm
from progan_lightning.losses import LSGAN, WGANGP, Logistic, gradient_penalty
from progan_lightning.networks import Discriminator, Generator

TINY = {"fmap_base": 64, "fmap_max": 16}
RES = 16
Z_DIM = 8
C = 3
N = 6
LOSSES = [WGANGP, LSGAN, Logistic]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _nets(num_classes: int = C) -> tuple[Generator, Discriminator]:
    torch.manual_seed(1)
    G = Generator(RES, z_dim=Z_DIM, num_classes=num_classes, **TINY)
    D = Discriminator(RES, num_classes=num_classes, **TINY)
    return G, D


def _labels(n: int = N) -> Tensor:
    return torch.arange(n) % C


@pytest.mark.parametrize("stage", range(3))
@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0, torch.tensor(0.7)])
def test_shapes_with_labels_at_every_stage_and_fade(stage: int, alpha: float | Tensor) -> None:
    G, D = _nets()
    res = 4 * 2**stage
    z, labels = torch.randn(N, Z_DIM), _labels()
    img = G(z, stage, alpha, labels)
    assert img.shape == (N, 3, res, res)
    assert D(img, stage, alpha).shape == (N, 1 + C)
    # One-hot floats are the indices' one-hot, taken as they are.
    onehot = F.one_hot(labels, C).float()
    torch.testing.assert_close(G(z, stage, alpha, onehot), img, rtol=0, atol=0)


def test_label_changes_the_image() -> None:
    G, _ = _nets()
    z = torch.randn(1, Z_DIM).expand(C, -1)
    img = G(z, 2, 1.0, torch.arange(C))
    assert not torch.allclose(img[0], img[1]) and not torch.allclose(img[1], img[2])


def test_label_enters_before_the_latent_norm() -> None:
    """Official G_paper: combo_in = concat([latents, labels]); pixel_norm; Dense (gain
    sqrt(2)/4); reshape, bias, lrelu, norm; Conv, lrelu, norm; ToRGB."""
    G, _ = _nets()
    z, labels = torch.randn(N, Z_DIM), _labels()
    block = G.blocks["b4"]
    seen = {}
    block.dense.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    out = G(z, 0, 1.0, labels)

    norm = PixelNorm(1e-8)
    combo = norm(torch.cat([z, F.one_hot(labels, C).float()], 1))  # [N, z_dim + C]
    torch.testing.assert_close(seen["x"], combo)
    w = block.dense.weight * block.dense.scale  # [16 C4, z_dim + C]
    assert w.shape[1] == Z_DIM + C
    x = F.linear(combo, w).reshape(N, -1, 4, 4) + block.bias.reshape(1, -1, 1, 1)
    x = norm(F.leaky_relu(x, 0.2))
    x = norm(F.leaky_relu(block.conv(x), 0.2))
    torch.testing.assert_close(out, G.to_rgb["b4"](x))
    # Normalizing the latent alone and appending the label after would be another function.
    wrong = torch.cat([norm(z), F.one_hot(labels, C).float()], 1)
    assert not torch.allclose(F.linear(wrong, w), F.linear(combo, w))


def test_unconditional_nets_unchanged() -> None:
    torch.manual_seed(3)
    G0, D0 = Generator(RES, z_dim=Z_DIM, **TINY), Discriminator(RES, **TINY)
    G, D = _nets(0)
    for net, ref in ((G, G0), (D, D0)):
        assert "num_classes" not in net.init_kwargs and net.num_classes == 0
        assert net.init_kwargs == ref.init_kwargs
        assert {k: v.shape for k, v in net.state_dict().items()} == {
            k: v.shape for k, v in ref.state_dict().items()
        }
    # Same seed, same draws, same outputs as a net built without the argument.
    torch.manual_seed(1)
    G0 = Generator(RES, z_dim=Z_DIM, **TINY)
    D0 = Discriminator(RES, **TINY)
    z = torch.randn(N, Z_DIM)
    assert torch.equal(G(z, 2, 0.5), G0(z, 2, 0.5))
    img = G0(z, 2)
    assert torch.equal(D(img, 2, 0.5), D0(img, 2, 0.5))
    assert D(img, 2).shape == (N, 1)


def test_conditional_nets_differ_only_in_the_label_layers() -> None:
    G0, D0 = _nets(0)
    G, D = _nets()
    assert G.init_kwargs == {**G0.init_kwargs, "num_classes": C}
    assert D.init_kwargs == {**D0.init_kwargs, "num_classes": C}
    for net, ref, changed in (
        (G, G0, {"blocks.b4.dense.weight": (G.channels[0] * 16, Z_DIM + C)}),
        (
            D,
            D0,
            {"blocks.b4.dense1.weight": (1 + C, D.channels[0]), "blocks.b4.dense1.bias": (1 + C,)},
        ),
    ):
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        assert shapes == {**ref_shapes, **changed}
        rebuilt = type(net)(**net.init_kwargs)
        rebuilt.load_state_dict(net.state_dict())


def test_gradient_reaches_the_label_columns_and_the_class_logits() -> None:
    G, D = _nets()
    labels = _labels()
    fakes = G(torch.randn(N, Z_DIM), 1, 0.5, labels)
    WGANGP().generator(D(fakes, 1, 0.5), labels).backward()
    assert G.blocks["b4"].dense.weight.grad[:, Z_DIM:].abs().sum() > 0
    assert D.blocks["b4"].dense1.weight.grad[1:].abs().sum() > 0


@pytest.mark.parametrize(
    "labels,match",
    [
        (None, "class-conditional .3 classes.*pass labels"),
        (torch.tensor([0, 1, 2, 3, 0, 1]), r"\[3\] are outside the classes 0..2"),
        (torch.tensor([0, -1, 2, 0, 0, 1]), r"\[-1\] are outside"),
        (torch.zeros(N + 1, dtype=torch.long), r"shape \[7\].*int64 \[6\]"),
        (torch.zeros(N, 1, dtype=torch.long), r"shape \[6, 1\]"),
        (torch.zeros(N, C + 1), r"shape \[6, 4\].*float \[6, 3\]"),
        (torch.zeros(N, dtype=torch.bool), "dtype torch.bool"),
    ],
)
def test_bad_labels_name_the_problem(labels: Tensor | None, match: str) -> None:
    G, _ = _nets()
    with pytest.raises(ValueError, match=match):
        G(torch.randn(N, Z_DIM), 0, 1.0, labels)


def test_labels_for_an_unconditional_generator_fail() -> None:
    G, _ = _nets(0)
    with pytest.raises(ValueError, match="unconditional generator.*drop them"):
        G(torch.randn(N, Z_DIM), 0, 1.0, _labels())


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_num_classes(bad: object) -> None:
    with pytest.raises(ValueError, match=r"model.G.num_classes="):
        Generator(RES, num_classes=bad, **TINY)
    with pytest.raises(ValueError, match=r"model.D.num_classes="):
        Discriminator(RES, num_classes=bad, **TINY)


class ConditionalCritic(nn.Module):
    """Score <w, x> + b (input gradient w for every sample) and class logits that depend on x
    steeply: the score alone must drive every penalty."""

    def __init__(self, shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        size = torch.Size(shape).numel()
        self.w = nn.Parameter(torch.randn(shape) * 0.3)
        self.b = nn.Parameter(torch.tensor(0.5))
        self.m = nn.Parameter(torch.randn(size, num_classes))

    def score(self, x: Tensor) -> Tensor:
        return (x * self.w).flatten(1).sum(1, keepdim=True) + self.b  # [N1]

    def logits(self, x: Tensor) -> Tensor:
        return 5 * x.flatten(1).square() @ self.m  # [NC]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.score(x), self.logits(x)], 1)  # [N, 1 + C]


def _hand_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax cross-entropy by hand: -log_softmax at the label. [N]"""
    return -torch.log_softmax(logits, 1)[torch.arange(len(labels)), labels]


def _loss(cls: type, **kwargs: float):
    extra = {"r1_gamma": 2.0} if cls is Logistic else {}
    return cls(**extra, **kwargs)


@pytest.mark.parametrize("cls", LOSSES)
@pytest.mark.parametrize("cond_weight", [1.0, 0.25])
def test_class_term_against_a_hand_computation(cls: type, cond_weight: float) -> None:
    D = ConditionalCritic((1, 4, 4), C)
    reals, fakes, labels = torch.randn(N, 1, 4, 4), torch.randn(N, 1, 4, 4), _labels()
    loss_fn = _loss(cls, cond_weight=cond_weight)
    torch.manual_seed(5)
    plain, plain_stats = loss_fn.discriminator(D.score, reals, fakes)
    torch.manual_seed(5)
    cond, stats = loss_fn.discriminator(D, reals, fakes, labels=labels)
    with torch.no_grad():
        ce_real, ce_fake = _hand_ce(D.logits(reals), labels), _hand_ce(D.logits(fakes), labels)
    torch.testing.assert_close(cond, plain + cond_weight * (ce_real + ce_fake).mean())
    torch.testing.assert_close(stats["loss/class_real"], ce_real.mean())
    torch.testing.assert_close(stats["loss/class_fake"], ce_fake.mean())
    assert set(stats) == set(plain_stats) | {"loss/class_real", "loss/class_fake"}
    for key, value in plain_stats.items():
        torch.testing.assert_close(stats[key], value)
    assert "loss/class_real" not in plain_stats

    fake_out = D(fakes)
    g_plain = loss_fn.generator(fake_out[:, :1])
    g_cond = loss_fn.generator(fake_out, labels)
    torch.testing.assert_close(g_cond, g_plain + cond_weight * ce_fake.mean())
    # Soft (one-hot) labels give the same term as indices (softmax_cross_entropy_with_logits).
    torch.testing.assert_close(loss_fn.generator(fake_out, F.one_hot(labels, C).float()), g_cond)


@pytest.mark.parametrize("cls", LOSSES)
def test_class_term_needs_labels_and_an_unconditional_critic_ignores_them(cls: type) -> None:
    D = ConditionalCritic((1, 4, 4), C)
    reals, fakes = torch.randn(N, 1, 4, 4), torch.randn(N, 1, 4, 4)
    loss_fn = _loss(cls)
    with pytest.raises(ValueError, match="3 class logits but the loss got no labels"):
        loss_fn.discriminator(D, reals, fakes)
    with pytest.raises(ValueError, match="no labels"):
        loss_fn.generator(D(fakes))
    torch.manual_seed(5)
    plain, _ = loss_fn.discriminator(D.score, reals, fakes)
    torch.manual_seed(5)
    ignored, stats = loss_fn.discriminator(D.score, reals, fakes, labels=_labels())
    assert torch.equal(plain, ignored) and "loss/class_real" not in stats
    assert torch.equal(
        loss_fn.generator(D.score(fakes), _labels()), loss_fn.generator(D.score(fakes))
    )


def test_gradient_penalty_and_r1_use_the_score_column_only() -> None:
    D = ConditionalCritic((2, 4, 4), C)
    reals, fakes, labels = torch.randn(N, 2, 4, 4), torch.randn(N, 2, 4, 4), _labels()
    torch.manual_seed(7)
    gp = gradient_penalty(D, reals, fakes, resolution_scale=2.0)
    torch.manual_seed(7)
    torch.testing.assert_close(gp, gradient_penalty(D.score, reals, fakes, resolution_scale=2.0))
    torch.testing.assert_close(gp, ((D.w.detach().norm() / 2.0 - 1) ** 2).expand(N))
    _, stats = WGANGP().discriminator(D, reals, fakes, resolution_scale=2.0, labels=labels)
    torch.testing.assert_close(stats["loss/gp"], gp.mean())
    _, stats = Logistic(r1_gamma=1.0).discriminator(D, reals, fakes, labels=labels)
    torch.testing.assert_close(stats["loss/r1"], D.w.detach().square().sum())


@pytest.mark.parametrize("cls", LOSSES)
def test_losses_with_real_nets_as_the_module_calls_them(cls: type) -> None:
    G, D = _nets()
    labels = _labels()
    stage, alpha = 1, 0.5
    with torch.no_grad():
        fakes = G(torch.randn(N, Z_DIM), stage, alpha, labels)
    reals = torch.randn_like(fakes)
    loss, stats = _loss(cls).discriminator(
        lambda x: D(x, stage, alpha), reals, fakes, resolution_scale=2.0, labels=labels
    )
    loss.backward()
    assert torch.isfinite(loss) and {"loss/class_real", "loss/class_fake"} <= set(stats)
    assert D.blocks["b4"].dense1.weight.grad[1:].abs().sum() > 0
