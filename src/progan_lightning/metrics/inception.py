"""The Inception-v3 network that FID and the Inception Score share: torch-fidelity's port of
the TF 2015-12-05 graph, as torchmetrics loads it, from a local weights file when given."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from progan_lightning.faults import UserError
from progan_lightning.fs import expand_path
from progan_lightning.imaging import to_uint8

# torch-fidelity's Inception-v3 weights (the TF FID/IS network), as torchmetrics loads them.
WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)


class InceptionSetupError(UserError):
    """A metric that needs Inception (FID, IS) cannot run: a missing package or weights (a
    user error: one message, exit status 2)."""


def inception_network(
    feature: int | str, weights_path: str | Path | None, metric: str
) -> nn.Module:
    """torchmetrics' Inception-v3 feature extractor, loaded now so that a missing package or
    missing weights fail at start-up with one message.

    Args:
        feature: Output layer: 64, 192, 768 or 2048 (pool features; FID uses 2048) or
            ``logits_unbiased`` (the class logits without bias, as the official IS uses).
        weights_path: Local ``weights-inception-2015-12-05-6726825d.pth``; ``None`` uses
            torch's hub cache or downloads it.
        metric: The metric's name for the messages (``FID``, ``IS``).
    """
    how = (
        f"download {WEIGHTS_URL} once and set metrics.fid.weights_path=/path/to/that file "
        f"(or PROGAN_INCEPTION_WEIGHTS in .env), or drop {metric} with metrics=default"
    )
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
    except ImportError as err:  # pragma: no cover - depends on the torchmetrics version
        raise InceptionSetupError(f"{metric} needs torchmetrics' image extras: {err}") from err
    if not _TORCH_FIDELITY_AVAILABLE:
        raise InceptionSetupError(
            f'{metric} needs torch-fidelity: pip install -e ".[fid]" '
            f"(or drop {metric} with metrics=default)"
        )
    if weights_path is not None:
        weights_path = expand_path(weights_path, "PROGAN_INCEPTION_WEIGHTS")
        if not weights_path.is_file():
            raise InceptionSetupError(
                f"{metric}: weights_path={weights_path} does not exist: {how}"
            )
    try:
        return NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(feature)],
            feature_extractor_weights_path=None if weights_path is None else str(weights_path),
        )
    except Exception as err:
        raise InceptionSetupError(
            f"{metric} could not load the Inception weights ({err}): {how}"
        ) from err


def inception_input(images: Tensor, network: nn.Module) -> Tensor:
    """Images as the feature network takes them: uint8 [0, 255] (float [-1, 1] is quantized),
    grayscale repeated to RGB for the real Inception (stand-ins get the channels as they are).
    [NCHW]"""
    images = to_uint8(images)
    if images.shape[1] == 1 and type(network).__name__ == "NoTrainInceptionV3":
        images = images.expand(-1, 3, -1, -1)
    return images
