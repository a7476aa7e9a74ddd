"""MS-SSIM diversity: mean multi-scale SSIM between pairs of generated images (lower = more
diverse), as the paper uses it after Odena et al. (5 scales, 11x11 Gaussian, sigma 1.5)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from progan_lightning.imaging import to_uint8

# The standard MS-SSIM scale weights (Wang et al. 2003).
BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_setup(resolution: int, kernel_size: int = 11, scales: int = 5) -> tuple[int, tuple]:
    """Kernel size and scale weights that fit ``resolution``.

    Small images cannot hold 5 scales of an 11x11 window; the coarsest scales are dropped
    first (weights renormalized to sum 1), and below 11x11 the window shrinks (torchmetrics
    derives the Gaussian window from sigma, so :class:`MSSSIMDiversity` narrows sigma with it).
    """
    for n in range(scales, 0, -1):
        if resolution >= 2**n and resolution // max(1, n - 1) ** 2 > kernel_size - 1:
            betas = BETAS[:n]
            return kernel_size, tuple(b / sum(betas) for b in betas)
    kernel = resolution - 1 if resolution % 2 == 0 else resolution - 2
    return max(kernel, 1), (1.0,)


class MSSSIMDiversity(Metric):
    """Mean MS-SSIM over pairs of generated images (consecutive images form a pair).

    ``update(images, real)`` ignores real images; ``compute()`` returns ``{"ms_ssim": ...}``.
    Sums are reduced across processes under DDP.

    Args:
        resolution: Image resolution (chooses how many scales fit).
        kernel_size: Gaussian window size (paper 11).
        sigma: Gaussian window sigma (paper 1.5).
        scales: Number of scales at full size (paper 5).
        kwargs: Passed to ``torchmetrics.Metric``.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        resolution: int,
        kernel_size: int = 11,
        sigma: float = 1.5,
        scales: int = 5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.kernel_size, self.betas = ms_ssim_setup(resolution, kernel_size, scales)
        # torchmetrics sizes the Gaussian window as 2 * int(3.5 * sigma + 0.5) + 1.
        self.sigma = min(sigma, (self.kernel_size // 2) / 3.5)
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("pairs", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, images: Tensor, real: bool) -> None:
        """Add generated images (pairs 0-1, 2-3, ...); real images are ignored. [NCHW]"""
        if real:
            return
        x = to_uint8(images).float() / 255.0
        n = len(x) // 2
        if n == 0:
            return
        scores = multiscale_structural_similarity_index_measure(
            x[0 : 2 * n : 2],
            x[1 : 2 * n : 2],
            kernel_size=self.kernel_size,
            sigma=self.sigma,
            betas=self.betas,
            data_range=1.0,
            reduction="none",
        )
        self.total += scores.double().sum()
        self.pairs += n

    def compute(self) -> dict[str, Tensor]:
        """``{"ms_ssim": mean MS-SSIM over all pairs}``."""
        return {"ms_ssim": (self.total / self.pairs.clamp_min(1)).float()}
