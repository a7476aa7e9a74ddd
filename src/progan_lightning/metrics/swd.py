"""Sliced Wasserstein distance (SWD) between Laplacian-pyramid patches, as in the ProGAN paper.

The algorithm of the official code (``metrics/sliced_wasserstein.py``): every image is split
into a Laplacian pyramid from its resolution down to 16x16 (at 8x8 and below the image itself
is the only level); from each level of each image ``nhoods_per_image`` random 7x7
neighbourhoods are taken; each level's set of neighbourhoods is normalized per channel; the
distance between the real and the fake set is the mean absolute difference of the sorted
projections on ``dir_repeats x dirs_per_repeat`` random unit directions, reported x1e3 per
level and averaged over levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from progan_lightning.imaging import to_uint8

# The 5x5 binomial filter of cv2.pyrDown / pyrUp.
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
_GAUSSIAN = torch.outer(_BINOMIAL, _BINOMIAL) / 256.0

# Odd 64-bit constants for the per-image patch positions (see ``patch_positions``).
_MIX = (0x9E3779B97F4A7C15 - 2**64, 0xBF58476D1CE4E5B9 - 2**64, 0x94D049BB133111EB - 2**64)


def pyramid_resolutions(resolution: int, min_resolution: int = 16) -> list[int]:
    """Resolutions of the Laplacian levels: ``resolution`` halved down to ``min_resolution``
    (one level, the image itself, when ``resolution`` is below it)."""
    levels = [resolution]
    while levels[-1] // 2 >= min_resolution:
        levels.append(levels[-1] // 2)
    return levels


def _blur(x: Tensor, gain: float = 1.0) -> Tensor:
    """5x5 binomial filter per channel with mirror borders (``scipy.ndimage`` 'mirror'). [NCHW]"""
    c = x.shape[1]
    kernel = (_GAUSSIAN * gain).to(x).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=c)


def pyr_down(x: Tensor) -> Tensor:
    """Blur and keep every second pixel (``cv2.pyrDown``). [NCHW] -> [N, C, H/2, W/2]"""
    return _blur(x)[:, :, ::2, ::2]


def pyr_up(x: Tensor) -> Tensor:
    """Insert zeros and blur with 4x gain (``cv2.pyrUp``). [NCHW] -> [N, C, 2H, 2W]"""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, gain=4.0)


def laplacian_pyramid(images: Tensor, num_levels: int) -> list[Tensor]:
    """Laplacian pyramid of float images, finest level first; the last level is low-pass."""
    levels = [images.float()]
    for _ in range(1, num_levels):
        levels.append(pyr_down(levels[-1]))
        levels[-2] = levels[-2] - pyr_up(levels[-1])
    return levels


def patch_positions(images: Tensor, count: int, low: int, high: int, seed: int = 0) -> Tensor:
    """``count`` pseudo-random positions in ``[low, high)`` per image, drawn from the image's
    own pixels (a hash), so a set of images yields the same patches in any order. [N, count]"""
    flat = images.reshape(images.shape[0], -1).long()
    weights = torch.arange(1, flat.shape[1] + 1, device=flat.device) * _MIX[0]
    h = (flat * weights).sum(1, keepdim=True)  # [N, 1]; int64 arithmetic wraps around
    h = h + torch.tensor(seed, device=flat.device) * _MIX[1]
    h = h + torch.arange(1, count + 1, device=flat.device) * _MIX[0]  # [N, count]
    # splitmix64 finalizer (arithmetic shifts are fine: only the low bits are kept).
    h = (h ^ (h >> 30)) * _MIX[1]
    h = (h ^ (h >> 27)) * _MIX[2]
    h = h ^ (h >> 31)
    return low + torch.remainder(h, high - low)


def extract_patches(level: Tensor, positions: Tensor, size: int) -> Tensor:
    """Square neighbourhoods of ``size`` pixels around ``positions`` (y and x).

    Args:
        level: One pyramid level. [NCHW]
        positions: Centres [N, P, 2] (y, x), at least ``size // 2`` from every border.
        size: Odd side length.

    Returns:
        [N * P, C, size, size]
    """
    n, p, _ = positions.shape
    offsets = torch.arange(size, device=level.device) - size // 2
    idx = torch.arange(n, device=level.device).repeat_interleave(p).view(-1, 1, 1)
    ys = positions[..., 0].reshape(-1, 1, 1) + offsets.view(1, -1, 1)
    xs = positions[..., 1].reshape(-1, 1, 1) + offsets.view(1, 1, -1)
    return level[idx, :, ys, xs].permute(0, 3, 1, 2)  # [N*P, size, size, C] -> [N*P, C, s, s]


def normalize_descriptors(desc: Tensor) -> Tensor:
    """Zero mean and unit (biased) std per channel over the set, flattened. [M, C, s, s] ->
    [M, C*s*s]"""
    desc = desc.double()
    mean = desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
    return ((desc - mean) / std).float().flatten(1)


def sliced_wasserstein(
    a: Tensor, b: Tensor, dir_repeats: int, dirs_per_repeat: int, generator: torch.Generator
) -> Tensor:
    """Mean |sorted projection of a - sorted projection of b| over random unit directions.

    Sets of different sizes are compared quantile to quantile (the larger one is sampled at
    the smaller one's quantiles).

    Args:
        a: Descriptors [M, D].
        b: Descriptors [M', D].
        dir_repeats: Batches of directions.
        dirs_per_repeat: Directions per batch.
        generator: CPU generator of the directions (the same on every rank).
    """
    results = []
    for _ in range(dir_repeats):
        dirs = torch.randn(a.shape[1], dirs_per_repeat, generator=generator).to(a)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        # [directions, M]: sorting along the contiguous last dim is faster on CPU.
        proj_a = (dirs.T @ a.T).sort(dim=1).values
        proj_b = (dirs.T @ b.T).sort(dim=1).values
        if proj_a.shape[1] != proj_b.shape[1]:
            n = min(proj_a.shape[1], proj_b.shape[1])
            proj_a, proj_b = (_quantiles(p, n) for p in (proj_a, proj_b))
        results.append((proj_a - proj_b).abs().mean())
    return torch.stack(results).mean()


def _quantiles(sorted_values: Tensor, n: int) -> Tensor:
    """``n`` evenly spaced values of each row of ``sorted_values``. [D, M] -> [D, n]"""
    idx = torch.linspace(0, sorted_values.shape[1] - 1, n, device=sorted_values.device)
    return sorted_values[:, idx.round().long()]


class SlicedWassersteinDistance(Metric):
    """The paper's SWD between real and generated images of one resolution.

    ``update(images, real)`` adds images (uint8 [0, 255] or float [-1, 1], [NCHW]);
    ``compute()`` returns ``{"swd_<res>": ..., "swd_avg": ...}`` (x1e3). Descriptor states are
    concatenated across processes under DDP. Real descriptors survive ``reset()`` unless
    ``reset_real_features`` is set, so real statistics are computed once per resolution.

    Memory: each image adds ``nhoods_per_image * C * 49`` floats per level (paper sizes at
    1024x1024: about 1.2 GB per level and set).

    Args:
        resolution: Image resolution; levels go from it down to ``min_resolution``.
        nhood_size: Side of the neighbourhoods (paper 7; smaller for images below 8x8).
        nhoods_per_image: Neighbourhoods per image and level (paper 128).
        dir_repeats: Batches of random directions (paper 4).
        dirs_per_repeat: Directions per batch (paper 128).
        min_resolution: Coarsest Laplacian level (paper 16).
        seed: Seed of the patch positions and the directions.
        reset_real_features: Whether ``reset()`` also clears the real descriptors.
        kwargs: Passed to ``torchmetrics.Metric``.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        resolution: int,
        nhood_size: int = 7,
        nhoods_per_image: int = 128,
        dir_repeats: int = 4,
        dirs_per_repeat: int = 128,
        min_resolution: int = 16,
        seed: int = 0,
        reset_real_features: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if nhood_size < 1 or nhood_size % 2 == 0:
            raise ValueError(f"swd.nhood_size={nhood_size} must be a positive odd number")
        self.resolution = resolution
        self.levels = pyramid_resolutions(resolution, min_resolution)
        self.nhood_size = nhood_size
        self.nhoods_per_image = nhoods_per_image
        self.dir_repeats = dir_repeats
        self.dirs_per_repeat = dirs_per_repeat
        self.seed = seed
        self.reset_real_features = reset_real_features
        for kind in ("real", "fake"):
            for res in self.levels:
                self.add_state(f"{kind}_{res}", default=[], dist_reduce_fx="cat")

    def _size(self, res: int) -> int:
        # Neighbourhoods must fit inside the level: at 4x4 they shrink to 3x3.
        return min(self.nhood_size, res - 1 if res % 2 == 0 else res)

    def update(self, images: Tensor, real: bool) -> None:
        """Add a batch of real or generated images at ``resolution``. [NCHW]"""
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            raise ValueError(
                f"SWD for {self.resolution}x{self.resolution} got images of shape "
                f"{tuple(images.shape)}"
            )
        images = to_uint8(images)
        pyramid = laplacian_pyramid(images, len(self.levels))
        for res, level in zip(self.levels, pyramid, strict=True):
            size = self._size(res)
            half = size // 2
            pos = patch_positions(
                images, 2 * self.nhoods_per_image, half, res - half, self.seed + res
            )
            pos = pos.view(len(images), self.nhoods_per_image, 2)
            getattr(self, f"{'real' if real else 'fake'}_{res}").append(
                extract_patches(level, pos, size)
            )

    def compute(self) -> dict[str, Tensor]:
        """SWD x1e3 per level (``swd_<res>``) and their mean (``swd_avg``)."""
        generator = torch.Generator().manual_seed(self.seed)
        out: dict[str, Tensor] = {}
        for res in self.levels:
            reals, fakes = getattr(self, f"real_{res}"), getattr(self, f"fake_{res}")
            if len(reals) == 0 or len(fakes) == 0:
                raise RuntimeError("SWD needs both real and generated images before compute()")
            a = normalize_descriptors(dim_zero_cat(reals))
            b = normalize_descriptors(dim_zero_cat(fakes))
            dist = sliced_wasserstein(a, b, self.dir_repeats, self.dirs_per_repeat, generator)
            out[f"swd_{res}"] = dist * 1e3
        out["swd_avg"] = torch.stack(list(out.values())).mean()
        return out

    @property
    def num_real(self) -> int:
        """Real images added on this process."""
        return sum(len(x) for x in getattr(self, f"real_{self.levels[0]}")) // (
            self.nhoods_per_image
        )

    def reset(self) -> None:
        """Clear generated descriptors (and real ones if ``reset_real_features``)."""
        if self.reset_real_features:
            super().reset()
            return
        kept = {res: list(getattr(self, f"real_{res}")) for res in self.levels}
        super().reset()
        for res, value in kept.items():
            setattr(self, f"real_{res}", value)
