"""FID through torchmetrics' ``FrechetInceptionDistance`` (opt-in: needs Inception weights)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from progan_lightning.metrics.swd import to_uint8_images

# torch-fidelity's Inception-v3 weights (the TF FID network), as torchmetrics loads them.
WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)


class FIDSetupError(RuntimeError):
    """FID was requested but cannot run: a missing package or missing Inception weights."""


def inception_features(feature: int = 2048, weights_path: str | Path | None = None) -> nn.Module:
    """The Inception-v3 feature extractor of torchmetrics, loaded now so that a missing
    package or missing weights fail at start-up with one message.

    Args:
        feature: Feature layer (64, 192, 768 or 2048; FID uses 2048).
        weights_path: Local ``weights-inception-2015-12-05-6726825d.pth``; ``None`` uses
            torch's hub cache or downloads it.
    """
    how = (
        f"download {WEIGHTS_URL} once and set metrics.fid.weights_path=/path/to/that file "
        "(or PROGAN_INCEPTION_WEIGHTS in .env), or drop FID with metrics=default"
    )
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
    except ImportError as err:  # pragma: no cover - depends on the torchmetrics version
        raise FIDSetupError(f"FID needs torchmetrics' image extras: {err}") from err
    if not _TORCH_FIDELITY_AVAILABLE:
        raise FIDSetupError(
            'FID needs torch-fidelity: pip install -e ".[fid]" (or drop FID with metrics=default)'
        )
    if weights_path is not None:
        weights_path = Path(weights_path).expanduser()
        if not weights_path.is_file():
            raise FIDSetupError(f"metrics.fid.weights_path={weights_path} does not exist: {how}")
    try:
        return NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(feature)],
            feature_extractor_weights_path=None if weights_path is None else str(weights_path),
        )
    except Exception as err:
        raise FIDSetupError(f"FID could not load the Inception weights ({err}): {how}") from err


class FrechetDistance(FrechetInceptionDistance):
    """FID between real and generated images of one resolution, real statistics kept.

    ``update(images, real)`` takes uint8 [0, 255] or float [-1, 1] images [NCHW] (grayscale
    is repeated to RGB for Inception); ``compute()`` returns ``{"fid": ...}``. Sums are
    reduced across processes under DDP.

    Args:
        resolution: Image resolution (the feature network resizes as it needs).
        feature: A feature network taking uint8 [NCHW] images (from
            :func:`inception_features`, or any stand-in with ``num_features``).
        kwargs: Passed to ``FrechetInceptionDistance``.
    """

    def __init__(self, resolution: int, feature: nn.Module, **kwargs) -> None:
        super().__init__(feature=feature, reset_real_features=False, **kwargs)
        self.resolution = resolution
        self.rgb = type(feature).__name__ == "NoTrainInceptionV3"

    def update(self, images: Tensor, real: bool) -> None:
        """Add real or generated images. [NCHW]"""
        images = to_uint8_images(images)
        if self.rgb and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        super().update(images, real=real)

    def compute(self) -> dict[str, Tensor]:
        """``{"fid": ...}``."""
        return {"fid": super().compute()}
