"""Differentiable augmentations of every image D sees (DiffAugment, ADA), and ADA's controller.

Few training images let D memorise them; augmenting every image D scores (reals and fakes, in
the D step, the G step and the penalty) with random, differentiable transforms keeps its
feedback useful (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"; Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data").
G learns through the transforms, so they must be differentiable; they must also not leak into
G's images, which holds while each is applied with a probability ``p`` below 1 (ADA), or for
transforms whose distribution of outputs still tells the original distribution apart.

The ops are pure tensor functions of a batch [NCHW] (any resolution, 1 or 3 channels) and
per-image parameters, written here rather than taken from kornia: each is a few lines
(an addition, a blend with a mean, an index gather, a mask), exact (integer shifts by a gather,
not an interpolating warp) and bit-for-bit the identity on the images they skip, and kornia
would add a dependency for six functions. Every parameter is drawn per image, on the batch's
device, from a ``torch.Generator`` the caller passes (see :func:`step_generator`: a function of
the seed, the images seen and the rank, so a resumed run draws exactly what the uninterrupted
one drew). Nothing here knows of Lightning.

Ranges (DiffAugment's ``color,translation,cutout`` policy, images in [-1, 1]):

- ``brightness``: ``x + b``, ``b ~ U(-0.5, 0.5)``;
- ``saturation``: ``(x - mean_c) * s + mean_c``, ``s ~ U(0, 2)`` (the identity for 1 channel);
- ``contrast``: ``(x - mean_chw) * c + mean_chw``, ``c ~ U(0.5, 1.5)``;
- ``translation``: integer shifts of up to ``round(size / 8)`` pixels in each direction, with
  reflection padding (ADA's choice; DiffAugment pads with zeros, which shows D a border that
  no real image has);
- ``cutout``: a square of half the image size at a random centre set to 0, clipped by the
  image border (as DiffAugment);
- ``flip``: left-right.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

P_MAX = math.nextafter(1.0, 0.0)
"""ADA's ``p`` is clipped to ``[0, P_MAX]``, i.e. kept below 1 (at 1 an op always applies and
its effect leaks into G's images)."""


def _per_image(values: Tensor, x: Tensor) -> Tensor:
    """``values`` [N] as [N, 1, 1, 1] in ``x``'s dtype (bf16 fakes stay bf16)."""
    return values.to(x.dtype).view(-1, 1, 1, 1)


def brightness(x: Tensor, shift: Tensor) -> Tensor:
    """``x + shift`` per image. x: [NCHW], shift: [N]."""
    return x + _per_image(shift, x)


def saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Each pixel's distance from its channel mean scaled by ``factor`` [N]. x: [NCHW]"""
    mean = x.mean(dim=1, keepdim=True)  # [N1HW]
    return (x - mean) * _per_image(factor, x) + mean


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Each image's distance from its mean (over C, H, W) scaled by ``factor`` [N]. x: [NCHW]"""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # [N111]
    return (x - mean) * _per_image(factor, x) + mean


def reflect(index: Tensor, size: int) -> Tensor:
    """Indices reflected into ``[0, size)`` about the edge pixels (``-1 -> 1``,
    ``size -> size - 2``), as ``numpy.pad(mode="reflect")``."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def translate(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Images moved right by ``dx`` and down by ``dy`` whole pixels (int [N] each), with
    reflection padding: ``out[n, :, i, j] = x[n, :, reflect(i - dy[n]), reflect(j - dx[n])]``.
    x: [NCHW]"""
    n, c, h, w = x.shape
    rows = reflect(torch.arange(h, device=x.device) - dy.view(-1, 1), h)  # [N, H]
    cols = reflect(torch.arange(w, device=x.device) - dx.view(-1, 1), w)  # [N, W]
    index = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w)  # [N, 1, HW]
    return x.reshape(n, c, h * w).gather(2, index.expand(n, c, h * w)).view(n, c, h, w)


def cutout_size(size: int) -> int:
    """Side of the cutout square in an image of side ``size``: half of it, rounded."""
    return int(size * 0.5 + 0.5)


def cutout(x: Tensor, cy: Tensor, cx: Tensor, size: int) -> Tensor:
    """Images with a ``size`` x ``size`` square set to 0: rows ``cy - size // 2`` up to
    ``cy - size // 2 + size`` (excluded) and the same for columns around ``cx`` (int [N] each),
    clipped by the border. x: [NCHW]"""
    h, w = x.shape[-2:]
    top = (cy - size // 2).view(-1, 1)  # [N, 1]
    left = (cx - size // 2).view(-1, 1)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top) & (rows < top + size)  # [N, H]
    in_cols = (cols >= left) & (cols < left + size)  # [N, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # [N, H, W]
    return x * keep[:, None].to(x.dtype)


def flip(x: Tensor) -> Tensor:
    """Images mirrored left-right. x: [NCHW]"""
    return x.flip(-1)


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def _integers(n: int, low: int, high: int, g: torch.Generator, device: torch.device) -> Tensor:
    """``n`` integers in ``[low, high)``."""
    return torch.randint(low, high, (n,), generator=g, device=device)


def _random_translation(x: Tensor, g: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    sy, sx = int(h / 8 + 0.5), int(w / 8 + 0.5)
    dy = _integers(n, -sy, sy + 1, g, x.device)
    dx = _integers(n, -sx, sx + 1, g, x.device)
    return translate(x, dx, dy)


def _random_cutout(x: Tensor, g: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    size = cutout_size(min(h, w))
    cy = _integers(n, 0, h + (1 - size % 2), g, x.device)
    cx = _integers(n, 0, w + (1 - size % 2), g, x.device)
    return cutout(x, cy, cx, size)


RandomOp = Callable[[Tensor, torch.Generator], Tensor]

OPS: dict[str, RandomOp] = {
    "flip": lambda x, g: flip(x),
    "translation": _random_translation,
    "cutout": _random_cutout,
    "brightness": lambda x, g: brightness(x, _uniform(len(x), -0.5, 0.5, g, x.device)),
    "saturation": lambda x, g: saturation(x, _uniform(len(x), 0.0, 2.0, g, x.device)),
    "contrast": lambda x, g: contrast(x, _uniform(len(x), 0.5, 1.5, g, x.device)),
}
"""Each op with its random parameters: (images [NCHW], generator) -> images."""


def check_ops(ops: Sequence[str]) -> list[str]:
    """``ops`` as a list, each a name of :data:`OPS`.

    Raises:
        ValueError: an unknown name (naming ``augment.ops`` and the known ones).
    """
    ops = [str(op) for op in ops]
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(
            f"augment.ops has unknown {', '.join(map(repr, unknown))}; use names from "
            f"{', '.join(OPS)}"
        )
    return ops


def augment(x: Tensor, ops: Sequence[str], p: float, generator: torch.Generator) -> Tensor:
    """Each op of ``ops`` in turn applied to each image with probability ``p``.

    An image an op skips is passed on bit for bit (``torch.where``); with ``p = 0`` or no ops
    ``x`` itself is returned and nothing is drawn. Gradients flow to ``x`` through every op.

    Args:
        x: Images. [NCHW]
        ops: Names of :data:`OPS`, applied in this order.
        p: Probability that an op applies to an image (1: always, DiffAugment).
        generator: Source of every random draw, on ``x``'s device.

    Returns:
        The augmented images, shaped and typed like ``x``. [NCHW]
    """
    if p <= 0 or not ops:
        return x
    for op in ops:
        out = OPS[op](x, generator)
        if p < 1:
            chosen = torch.rand(len(x), generator=generator, device=x.device) < p  # [N]
            out = torch.where(chosen.view(-1, 1, 1, 1), out, x)
        x = out
    return x


def step_generator(seed: int, nimg: int, rank: int, device: torch.device) -> torch.Generator:
    """The generator of one training step's augmentations on ``device``: seeded from
    (``seed``, images seen before the step, the process's rank), so each rank draws its own
    parameters and a resumed run draws what the uninterrupted one did."""
    mixed = np.random.SeedSequence([seed, nimg, rank]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(mixed) >> 1)


class AdaptiveP:
    """ADA's controller of ``p`` (pure logic; the caller reduces the signal across ranks).

    The overfitting heuristic ``r_t = E[sign(D(reals))]`` (reals as D sees them: augmented)
    is gathered over ``interval`` steps; then ``p`` moves by ``sign(r_t - target) * images /
    (speed_kimg * 1000)``, where ``images`` is the number of reals those steps trained on
    (all ranks), so ``p`` can go from 0 to 1 in ``speed_kimg`` thousand images; it is clipped
    to ``[0, 1)``. ``r_t`` above the target says D tells the reals apart too surely (more
    augmentation), below it that it does not (less).

    Args:
        target: ``r_t`` the controller holds (ADA: 0.6).
        speed_kimg: Thousands of images over which ``p`` can move by 1 (ADA: 500).
        interval: Steps between adjustments (ADA: 4).
    """

    def __init__(self, target: float = 0.6, speed_kimg: float = 500.0, interval: int = 4):
        check_adaptive(target, speed_kimg, interval)
        self.target = float(target)
        self.speed_kimg = float(speed_kimg)
        self.interval = int(interval)
        self.p = 0.0
        self.signal = 0.0  # r_t of the last adjustment
        self.steps = 0  # steps gathered since it
        self.images = 0  # reals those steps trained on (all ranks)
        self.totals = torch.zeros(2, dtype=torch.float64)  # this rank's [sum of signs, count]

    def gather(self, sign_sum: Tensor, count: int, images: int) -> bool:
        """Add one step: this rank's ``sign_sum`` (a 0-dim tensor, no host sync) over
        ``count`` reals, and the ``images`` all ranks trained on; True when ``p`` is due."""
        step = torch.stack([sign_sum.detach().double(), sign_sum.new_tensor(count).double()])
        self.totals = self.totals.to(step.device) + step
        self.steps += 1
        self.images += images
        return self.steps >= self.interval

    def adjust(self, totals: Tensor | None = None) -> float:
        """Move ``p`` by ``r_t = sum / count`` of ``totals`` (the gathered ``[sum, count]``
        summed over every rank; default: this rank's :attr:`totals`) and gather anew;
        returns the new ``p``."""
        sign_sum, count = (self.totals if totals is None else totals).tolist()
        self.signal = sign_sum / max(count, 1.0)
        if self.signal != self.target:
            step = self.images / (self.speed_kimg * 1000)
            self.p += step if self.signal > self.target else -step
        self.p = min(max(self.p, 0.0), P_MAX)
        self.steps = self.images = 0
        self.totals = torch.zeros_like(self.totals)
        return self.p

    def state_dict(self) -> dict[str, Any]:
        return {
            "p": self.p,
            "signal": self.signal,
            "steps": self.steps,
            "images": self.images,
            "totals": self.totals.detach().cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state.get("p", 0.0))
        self.signal = float(state.get("signal", 0.0))
        self.steps = int(state.get("steps", 0))
        self.images = int(state.get("images", 0))
        self.totals = torch.as_tensor(state.get("totals", [0.0, 0.0]), dtype=torch.float64)


def check_adaptive(target: float, speed_kimg: float, interval: int) -> None:
    """Refuse ADA settings that cannot work, naming the key.

    Raises:
        ValueError: ``target`` outside (0, 1), ``speed_kimg`` <= 0, ``interval`` < 1.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(
            f"augment.target={target!r}; use a value in (0, 1) for E[sign(D(reals))] (ADA: 0.6)"
        )
    if not speed_kimg > 0:
        raise ValueError(
            f"augment.speed_kimg={speed_kimg!r}; use the thousands of images (> 0) over "
            "which p may move from 0 to 1 (ADA: 500)"
        )
    if int(interval) != interval or not interval >= 1:
        raise ValueError(
            f"augment.interval={interval!r}; use a whole number of steps >= 1 (ADA: 4)"
        )


class Augment:
    """The ``augment`` config group: which ops D's images go through, with a fixed ``p``
    (DiffAugment: 1) or ADA's adaptive one, and the seed of their random parameters.

    Calling it augments a batch (:func:`augment`); with no ops (``augment=none``) it returns
    the batch itself.

    Args:
        ops: Names of :data:`OPS`, applied in this order; empty: no augmentation.
        p: The probability of each op per image, in [0, 1]: fixed, or ADA's starting value.
        adaptive: Let :class:`AdaptiveP` move ``p`` (ADA).
        target: ADA's target of ``E[sign(D(reals))]``.
        speed_kimg: Thousands of images over which ADA's ``p`` can move by 1.
        interval: Steps between two moves of ADA's ``p``.
        seed: Seed of the random parameters (with the images seen and the rank: see
            :func:`step_generator`); None draws one from torch's global generator (when
            there are ops).
    """

    def __init__(
        self,
        ops: Sequence[str] = (),
        p: float = 1.0,
        adaptive: bool = False,
        target: float = 0.6,
        speed_kimg: float = 500.0,
        interval: int = 4,
        seed: int | None = None,
    ):
        self.ops = check_ops(ops)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"augment.p={p!r}; use a probability in [0, 1] (DiffAugment: 1)")
        self.fixed_p = float(p)
        self.controller = AdaptiveP(target, speed_kimg, interval) if adaptive else None
        if self.controller is not None:
            self.controller.p = min(self.fixed_p, P_MAX)
        if seed is None:  # Drawn only where it is used: no ops leave torch's stream alone.
            seed = int(torch.randint(0, 2**62, ())) if self.ops else 0
        self.seed = int(seed)

    @property
    def enabled(self) -> bool:
        """Whether any op is configured (False: ``augment=none``)."""
        return bool(self.ops)

    @property
    def p(self) -> float:
        """The probability each op applies to an image now."""
        return self.controller.p if self.controller is not None else self.fixed_p

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """``x`` [NCHW] augmented with parameters drawn from ``generator``."""
        return augment(x, self.ops, self.p, generator)

    def state_dict(self) -> dict[str, Any]:
        """The seed (with ops: a run without them has none to pass on) and ADA's state."""
        state: dict[str, Any] = {"seed": self.seed} if self.ops else {}
        if self.controller is not None:
            state["adaptive"] = self.controller.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        if self.controller is not None and "adaptive" in state:
            self.controller.load_state_dict(state["adaptive"])
