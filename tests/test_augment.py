"""The augmentation ops against hand-computed cases, their gradients and randomness, and ADA's
controller of p."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from progan_lightning.augment import (
    OPS,
    P_MAX,
    AdaptiveP,
    Augment,
    augment,
    brightness,
    contrast,
    cutout,
    cutout_size,
    flip,
    reflect,
    saturation,
    step_generator,
    translate,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_brightness_adds_each_images_shift():
    x = torch.zeros(2, 1, 2, 2)
    out = brightness(x, torch.tensor([0.5, -0.25]))
    assert out[0].eq(0.5).all() and out[1].eq(-0.25).all()


def test_saturation_scales_the_distance_from_the_channel_mean():
    x = torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1, 1) + 0.5  # channel mean 0.5
    out = saturation(x, torch.tensor([2.0]))
    torch.testing.assert_close(out.flatten(), torch.tensor([2.5, 0.5, -1.5]))
    assert torch.equal(saturation(x, torch.tensor([0.0])), x.mean(1, keepdim=True).expand_as(x))
    grey = torch.randn(3, 1, 4, 4)
    assert torch.equal(saturation(grey, torch.tensor([0.0, 1.7, 2.0])), grey)  # 1 channel


def test_contrast_scales_the_distance_from_the_image_mean():
    x = torch.tensor([[0.0, 1.0]]).view(1, 1, 1, 2)  # mean 0.5
    torch.testing.assert_close(
        contrast(x, torch.tensor([2.0])).flatten(), torch.tensor([-0.5, 1.5])
    )
    torch.testing.assert_close(
        contrast(x, torch.tensor([0.5])).flatten(), torch.tensor([0.25, 0.75])
    )


def test_reflect_is_numpys_reflect_padding():
    assert reflect(torch.arange(-3, 7), 4).tolist() == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert reflect(torch.tensor([-1, 0, 1]), 1).tolist() == [0, 0, 0]


def test_translate_moves_whole_pixels_with_reflection():
    row = torch.arange(4.0).view(1, 1, 1, 4)
    zero = torch.zeros(1, dtype=torch.long)
    assert translate(row, torch.tensor([1]), zero).flatten().tolist() == [1, 0, 1, 2]
    assert translate(row, torch.tensor([-1]), zero).flatten().tolist() == [1, 2, 3, 2]
    # Per image and per axis, against numpy's reflection padding.
    x = torch.randn(3, 2, 5, 6)
    dx, dy = torch.tensor([2, -1, 0]), torch.tensor([-2, 0, 1])
    out = translate(x, dx, dy)
    for n in range(3):
        padded = np.pad(x[n].numpy(), ((0, 0), (4, 4), (4, 4)), mode="reflect")
        top, left = 4 - int(dy[n]), 4 - int(dx[n])
        expected = padded[:, top : top + 5, left : left + 6]
        np.testing.assert_array_equal(out[n].numpy(), expected)


def test_cutout_zeroes_a_square_clipped_by_the_border():
    x = torch.ones(2, 1, 4, 4)
    out = cutout(x, torch.tensor([0, 2]), torch.tensor([0, 2]), size=2)
    first = torch.ones(4, 4)
    first[0, 0] = 0  # rows and columns -1..0, clipped
    second = torch.ones(4, 4)
    second[1:3, 1:3] = 0
    assert torch.equal(out[0, 0], first) and torch.equal(out[1, 0], second)
    assert cutout_size(32) == 16 and cutout_size(5) == 3


def test_flip_mirrors_left_right():
    x = torch.arange(3.0).view(1, 1, 1, 3)
    assert flip(x).flatten().tolist() == [2, 1, 0]


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_op_passes_gradients_and_keeps_shape_and_dtype(op, channels):
    x = torch.randn(4, channels, 8, 8, requires_grad=True)
    out = OPS[op](x, gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    half = OPS[op](x.detach().bfloat16(), gen())
    assert half.dtype == torch.bfloat16


@pytest.mark.parametrize("op", ["translation", "cutout", "brightness", "saturation", "contrast"])
def test_each_image_draws_its_own_parameters(op):
    x = torch.randn(1, 3, 16, 16).expand(8, 3, 16, 16).contiguous()
    out = OPS[op](x, gen())
    assert len({tuple(img.flatten().tolist()) for img in out}) > 1


def test_p_zero_and_no_ops_are_the_identity_bit_for_bit():
    x = torch.randn(4, 3, 8, 8)
    g = gen()
    state = g.get_state()
    assert augment(x, list(OPS), 0.0, g) is x
    assert augment(x, [], 1.0, g) is x
    assert torch.equal(g.get_state(), state)  # nothing drawn
    assert Augment(ops=list(OPS), p=0.0, adaptive=True, seed=0)(x, g) is x


def test_p_picks_images_and_leaves_the_others_bit_for_bit():
    x = torch.randn(4000, 1, 4, 4)
    out = augment(x, ["brightness"], 0.3, gen())
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.27 < changed < 0.33
    assert torch.equal(augment(x, list(OPS), 1.0, gen(5)), augment(x, list(OPS), 1.0, gen(5)))


def test_step_generator_is_a_function_of_seed_images_and_rank():
    def draw(*key):
        return torch.rand(4, generator=step_generator(*key, torch.device("cpu")))

    assert torch.equal(draw(1, 64, 0), draw(1, 64, 0))
    assert not torch.equal(draw(1, 64, 0), draw(1, 64, 1))
    assert not torch.equal(draw(1, 64, 0), draw(1, 80, 0))
    assert not torch.equal(draw(1, 64, 0), draw(2, 64, 0))


def test_adaptive_p_moves_by_the_sign_heuristic():
    ada = AdaptiveP(target=0.6, speed_kimg=1.0, interval=2)  # 0 -> 1 in 1000 images
    assert not ada.gather(torch.tensor(4.0), 4, images=8)
    assert ada.gather(torch.tensor(2.0), 4, images=8)
    assert ada.adjust() == pytest.approx(0.016)  # r_t = 6 / 8 = 0.75 > 0.6: up by 16 / 1000
    assert ada.signal == 0.75
    ada.gather(torch.tensor(0.0), 4, images=8)
    ada.gather(torch.tensor(0.0), 4, images=8)
    assert ada.adjust() == 0.0  # r_t = 0 < 0.6: down, clipped at 0
    ada.p = 0.999
    ada.gather(torch.tensor(4.0), 4, images=8)
    ada.gather(torch.tensor(4.0), 4, images=8)
    assert ada.adjust() == P_MAX < 1.0
    # Sums over ranks: the caller's totals win over this rank's.
    ada.gather(torch.tensor(4.0), 4, images=16)
    ada.gather(torch.tensor(4.0), 4, images=16)
    assert ada.adjust(torch.tensor([0.0, 16.0], dtype=torch.float64)) == pytest.approx(
        P_MAX - 0.032
    )


def test_adaptive_state_round_trips():
    ada = AdaptiveP(interval=4)
    ada.gather(torch.tensor(3.0), 4, images=4)
    ada.p = 0.25
    other = AdaptiveP(interval=4)
    other.load_state_dict(ada.state_dict())
    assert other.state_dict()["p"] == 0.25 and other.steps == 1 and other.images == 4
    assert torch.equal(other.totals, ada.totals)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"ops": ["rotate"]}, "augment.ops"),
        ({"adaptive": True, "target": 1.0}, "augment.target"),
        ({"adaptive": True, "target": 0.0}, "augment.target"),
        ({"adaptive": True, "speed_kimg": -1}, "augment.speed_kimg"),
        ({"adaptive": True, "interval": 0}, "augment.interval"),
        ({"p": 1.5}, "augment.p"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as error:
        Augment(**kwargs)
    assert "\n" not in str(error.value)


def test_ada_starts_at_its_p_below_1():
    assert Augment(ops=["flip"], p=0.0, adaptive=True).p == 0.0
    assert Augment(ops=["flip"], p=0.25, adaptive=True).p == 0.25
    assert Augment(ops=["flip"], p=1.0, adaptive=True).p == P_MAX < 1.0


def test_a_run_without_ops_passes_on_no_seed():
    ada = Augment(ops=["flip"], adaptive=True, seed=7)
    ada.load_state_dict(Augment().state_dict())  # resuming augment=none as augment=ada
    assert ada.seed == 7
    ada.load_state_dict(Augment(ops=["flip"], seed=3).state_dict())
    assert ada.seed == 3
