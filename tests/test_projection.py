"""The projection discriminator (``model.D.conditioning=projection``, Miyato & Koyama 2018):
score(x, y) = dense1(h) + <embed(y), h>, with h D's first dense layer's activations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from helpers import tiny_module
from progan_lightning.checkpoint import check_architecture
from progan_lightning.losses import WGANGP
from progan_lightning.networks import Discriminator

TINY = {"fmap_base": 64, "fmap_max": 16}
RES = 16
C = 3
N = 6


def _D(conditioning: str = "projection", num_classes: int = C) -> Discriminator:
    torch.manual_seed(1)
    return Discriminator(RES, num_classes=num_classes, conditioning=conditioning, **TINY)


def _labels(n: int = N) -> Tensor:
    return torch.arange(n) % C


def test_the_score_is_the_unconditional_score_plus_the_projection() -> None:
    D = _D()
    block = D.blocks["b4"]
    with torch.no_grad():  # a non-zero projection (the weights start random anyway)
        block.embed.weight.normal_()
    seen = {}
    block.dense0.register_forward_hook(lambda m, args, out: seen.update(h=F.leaky_relu(out, 0.2)))
    img, labels = torch.randn(N, 3, RES, RES), _labels()
    out = D(img, 2, 1.0, labels=labels)
    h = seen["h"]  # [N, hidden]
    dense1 = F.linear(h, block.dense1.weight * block.dense1.scale, block.dense1.bias)  # [N, 1]
    embed = block.embed.weight * block.embed.scale  # [hidden, C]
    expected = dense1 + (h * embed[:, labels].T).sum(1, keepdim=True)
    assert out.shape == (N, 1)
    torch.testing.assert_close(out, expected)
    # One-hot floats are the indices' one-hot.
    torch.testing.assert_close(D(img, 2, 1.0, labels=F.one_hot(labels, C).float()), out)


def test_the_label_changes_the_score_of_the_same_image() -> None:
    D = _D()
    img = torch.randn(1, 3, RES, RES).expand(C, -1, -1, -1)
    scores = D(img, 2, 1.0, labels=torch.arange(C))[:, 0]
    assert len(set(scores.tolist())) == C


@pytest.mark.parametrize("stage", range(3))
@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0, torch.tensor(0.7)])
def test_shapes_at_every_stage_and_fade(stage: int, alpha: float | Tensor) -> None:
    D = _D()
    res = 4 * 2**stage
    assert D(torch.randn(N, 3, res, res), stage, alpha, labels=_labels()).shape == (N, 1)


def test_it_adds_one_embedding_and_drops_the_class_logits() -> None:
    plain, acgan, D = _D(num_classes=0), _D("acgan"), _D()
    assert D.init_kwargs == {**plain.init_kwargs, "num_classes": C, "conditioning": "projection"}
    assert acgan.init_kwargs == {**plain.init_kwargs, "num_classes": C}  # as before
    shapes = {k: tuple(v.shape) for k, v in D.state_dict().items()}
    plain_shapes = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    assert shapes == {**plain_shapes, "blocks.b4.embed.weight": (D.channels[0], C)}
    rebuilt = Discriminator(**D.init_kwargs)
    rebuilt.load_state_dict(D.state_dict())
    # Unconditional, the switch changes nothing.
    assert _D(num_classes=0).init_kwargs == _D("acgan", num_classes=0).init_kwargs


def test_labels_are_required_by_projection_and_refused_elsewhere() -> None:
    img = torch.randn(N, 3, RES, RES)
    with pytest.raises(ValueError, match="projection discriminator scores images with their"):
        _D()(img, 2)
    with pytest.raises(ValueError, match="does not project them .conditioning=acgan"):
        _D("acgan")(img, 2, labels=_labels())
    with pytest.raises(ValueError, match="does not project them"):
        _D(num_classes=0)(img, 2, labels=_labels())
    with pytest.raises(
        ValueError, match=r"model.D.conditioning='aux'; use acgan .* or projection"
    ):
        _D("aux")


@pytest.mark.parametrize("gp_fraction", [1.0, 0.5])
def test_the_module_scores_reals_fakes_and_mixes_with_their_labels(gp_fraction: float) -> None:
    module = tiny_module(z_dim=8, fmap_max=8, num_classes=C)
    module.D = Discriminator(
        module.G.img_resolution, num_classes=C, conditioning="projection", fmap_base=32, fmap_max=8
    )
    module.loss = WGANGP(gp_fraction=gp_fraction)
    seen: list[tuple[int, list[int]]] = []
    forward = module.D.forward

    def spy(img: Tensor, stage: int, alpha: float = 1.0, labels: Tensor | None = None) -> Tensor:
        seen.append((img.shape[0], labels.tolist()))
        return forward(img, stage, alpha, labels=labels)

    module.D.forward = spy
    reals = torch.randn(N, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    loss, stats = module.discriminator_loss(reals, labels)
    loss.backward()
    n = round(N * gp_fraction)
    # Reals, their fakes (drawn with the reals' labels), then the penalty's first n mixes.
    assert seen == [(N, labels.tolist()), (N, labels.tolist()), (n, labels[:n].tolist())]
    assert "loss/class_real" not in stats  # no class logits, no class term
    assert module.D.blocks["b4"].embed.weight.grad.abs().sum() > 0

    seen.clear()
    module.generator_loss(4).backward()
    assert len(seen) == 1 and seen[0][0] == 4  # G's fakes, with the labels they were drawn with
    assert module.G.blocks["b4"].dense.weight.grad[:, 8:].abs().sum() > 0


def test_a_checkpoint_of_the_other_conditioning_is_refused_both_ways() -> None:
    acgan = tiny_module(z_dim=8, fmap_max=8, num_classes=C)
    projection = tiny_module(z_dim=8, fmap_max=8, num_classes=C)
    projection.D = Discriminator(
        8, num_classes=C, conditioning="projection", fmap_base=32, fmap_max=8
    )
    for saved, module, ours, theirs in (
        (projection, acgan, "'acgan'", "'projection'"),
        (acgan, projection, "'projection'", "'acgan'"),
    ):
        checkpoint = {"architecture": {"G": saved.G.init_kwargs, "D": saved.D.init_kwargs}}
        with pytest.raises(
            ValueError, match=rf"model.D.conditioning: checkpoint {theirs}, config {ours}"
        ):
            check_architecture(checkpoint, module)
    checkpoint = {"architecture": {"G": acgan.G.init_kwargs, "D": acgan.D.init_kwargs}}
    check_architecture(checkpoint, acgan)
