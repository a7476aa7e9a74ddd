"""FID through torchmetrics' ``FrechetInceptionDistance`` (opt-in: needs Inception weights)."""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from progan_lightning.metrics.inception import inception_input


class FrechetDistance(FrechetInceptionDistance):
    """FID between real and generated images of one resolution, real statistics kept.

    ``update(images, real)`` takes uint8 [0, 255] or float [-1, 1] images [NCHW] (grayscale
    is repeated to RGB for Inception); ``compute()`` returns ``{"fid": ...}``. Sums are
    reduced across processes under DDP.

    Args:
        resolution: Image resolution (the feature network resizes as it needs).
        feature: A feature network taking uint8 [NCHW] images (the 2048 pool features of
            ``inception.inception_network``, or any stand-in with ``num_features``).
        kwargs: Passed to ``FrechetInceptionDistance``.
    """

    def __init__(self, resolution: int, feature: nn.Module, **kwargs) -> None:
        super().__init__(feature=feature, reset_real_features=False, **kwargs)
        self.resolution = resolution

    def update(self, images: Tensor, real: bool) -> None:
        """Add real or generated images. [NCHW]"""
        super().update(inception_input(images, self.inception), real=real)

    def compute(self) -> dict[str, Tensor]:
        """``{"fid": ...}``."""
        return {"fid": super().compute()}
