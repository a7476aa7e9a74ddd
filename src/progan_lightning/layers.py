"""ProGAN building blocks, matching the official TF code (tkarras/progressive_growing_of_gans).

Equalized learning rate layers, pixel norm, minibatch standard deviation, nearest-neighbour
upsampling, 2x2 average-pool downsampling and the cross-fade of real images during a fade-in.
Pure torch: this module imports nothing else of the package.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.2
"""Negative slope of every leaky ReLU in G and D."""


def _he_std(fan_in: int, gain: float) -> float:
    """He initialisation standard deviation ``gain / sqrt(fan_in)``."""
    return gain / math.sqrt(fan_in)


Op = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""A linear op ``op(x, weight, bias)``: ``F.linear`` or a ``F.conv2d`` with its padding."""


def scale_weight(op: Op, x: Tensor, weight: Tensor, bias: Tensor | None, scale: float) -> Tensor:
    """Equalized lr by scaling the weight: ``op(x, weight * scale, bias)``.

    Costs a weight-sized multiply per call (and one in backward) whatever the batch, and
    keeps the bias fused into the op. The cheaper form for convolutions.
    """
    return op(x, weight * scale, bias)


def scale_output(op: Op, x: Tensor, weight: Tensor, bias: Tensor | None, scale: float) -> Tensor:
    """Equalized lr by scaling the output: ``bias + scale * op(x, weight)`` in one fused add.

    Costs an output-sized multiply-add instead of a weight-sized multiply: the cheaper form
    for dense layers, whose [N, out] output is smaller than their [out, in] weight.
    """
    y = op(x, weight, None)
    if bias is None:
        return y * scale
    return torch.add(bias.reshape(-1, *[1] * (y.ndim - 2)), y, alpha=scale)


RESAMPLES = ("none", "up", "down")


def _shift_sum(weight: Tensor) -> Tensor:
    """``weight`` [O, I, k, k] zero-padded by one and summed over its four one-pixel shifts:
    [O, I, k+1, k+1], the kernel shared by the fused resampling convolutions."""
    w = F.pad(weight, (1, 1, 1, 1))
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


def upsample_conv_kernel(weight: Tensor) -> Tensor:
    """The ``conv_transpose2d`` kernel equal to nearest 2x upsampling, then ``weight``.

    The official ``upscale2d_conv2d``: the kxk kernel, zero-padded by one, summed over its
    four one-pixel shifts gives the (k+1)x(k+1) kernel of the fused op; flipped and with
    in/out swapped, it is ``conv_transpose2d``'s weight. Exact: zero padding of the
    upsampled input is zero padding of the input.

    Args:
        weight: Convolution weight [O, I, k, k] (k odd).

    Returns:
        Transposed-convolution weight [I, O, k+1, k+1] (stride 2, padding k // 2).
    """
    return _shift_sum(weight).flip(2, 3).transpose(0, 1)


def conv_downsample_kernel(weight: Tensor) -> Tensor:
    """The stride-2 ``conv2d`` kernel equal to ``weight`` then 2x2 average pooling.

    The official ``conv2d_downscale2d``: the four-shift sum of :func:`_shift_sum`, times 1/4.

    Args:
        weight: Convolution weight [O, I, k, k] (k odd).

    Returns:
        Convolution weight [O, I, k+1, k+1] (stride 2, padding k // 2).
    """
    return _shift_sum(weight) * 0.25


class EqualizedConv2d(nn.Module):
    """2D convolution with the equalized learning rate and "same" padding.

    With ``use_wscale`` the weight is drawn from N(0, 1) and multiplied at run time by
    ``scale = gain / sqrt(fan_in)`` (``fan_in = in_channels * kernel_size**2``); otherwise it
    is drawn from N(0, scale) and used as is. The bias starts at zero and is never scaled.

    The scale is applied to the weight (:func:`scale_weight`): it costs one weight-sized
    multiply per call whatever the batch and resolution and keeps the bias fused into the
    convolution. Scaling the output or the input instead was slower over the model's
    convolutions as a whole (``python -m benchmarks.eqlr`` from a checkout,
    benchmarks/results.md).

    Args:
        in_channels: Number of input channels.
        out_channels: Number of output channels.
        kernel_size: Side of the square kernel (odd, so that padding keeps the size).
        gain: He gain; ``sqrt(2)`` for layers followed by a (leaky) ReLU, 1 for linear outputs.
        use_wscale: Scale the weight at run time (equalized learning rate).
        bias: Add a learned per-channel bias.
        resample: ``none``; ``up``: nearest 2x upsampling, then the convolution, fused into
            one transposed convolution (:func:`upsample_conv_kernel`; [N, I, H, W] ->
            [N, O, 2H, 2W]); ``down``: the convolution, then 2x2 average pooling, fused into
            one stride-2 convolution (:func:`conv_downsample_kernel`; -> [N, O, H/2, W/2]).
            Both give the unfused result (to rounding) with 16 instead of 36 multiply-adds
            per output pixel and input channel for 3x3 kernels, and never materialize the
            upsampled or full-resolution tensor. The parameters are the same in every mode.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        gain: float = math.sqrt(2),
        use_wscale: bool = True,
        bias: bool = True,
        resample: str = "none",
    ) -> None:
        super().__init__()
        if resample not in RESAMPLES:
            raise ValueError(f"resample={resample!r}; use one of {RESAMPLES}")
        std = _he_std(in_channels * kernel_size * kernel_size, gain)
        self.resample = resample
        self.use_wscale = use_wscale
        self.scale = std if use_wscale else 1.0
        self.padding = kernel_size // 2
        init_std = 1.0 if use_wscale else std
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size) * init_std
        )  # [OIkk]
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None  # [O]

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``x`` [NCHW] to [N, out_channels, H, W] (2H x 2W up, H/2 x W/2 down)."""
        if not self.use_wscale:
            return self.op(x, self.weight, self.bias)
        return scale_weight(self.op, x, self.weight, self.bias, self.scale)

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The plain convolution with this layer's padding and resampling (an :data:`Op`)."""
        if self.resample == "up":
            kernel = upsample_conv_kernel(weight)
            return F.conv_transpose2d(x, kernel, bias, stride=2, padding=self.padding)
        if self.resample == "down":
            kernel = conv_downsample_kernel(weight)
            return F.conv2d(x, kernel, bias, stride=2, padding=self.padding)
        return F.conv2d(x, weight, bias, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        resample = f", resample={self.resample}" if self.resample != "none" else ""
        return (
            f"{i}, {o}, kernel_size={k}, scale={self.scale:.4g}, "
            f"bias={self.bias is not None}{resample}"
        )


class EqualizedLinear(nn.Module):
    """Fully connected layer with the equalized learning rate (see ``EqualizedConv2d``).

    ``fan_in = in_features``; the output equals ``linear(x, weight * scale) + bias``. It is
    computed as ``bias + scale * linear(x, weight)`` (:func:`scale_output`): for these layers
    (batch below ``in_features``) the output is smaller than the weight, and the output form
    measured 10-40% faster forward + backward on the CPU (benchmarks/results.md).

    Args:
        in_features: Size of each input sample.
        out_features: Size of each output sample.
        gain: He gain; ``sqrt(2)`` for layers followed by a (leaky) ReLU, 1 for linear outputs.
        use_wscale: Scale the weight at run time (equalized learning rate).
        bias: Add a learned bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        gain: float = math.sqrt(2),
        use_wscale: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        std = _he_std(in_features, gain)
        self.use_wscale = use_wscale
        self.scale = std if use_wscale else 1.0
        init_std = 1.0 if use_wscale else std
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * init_std)  # [OI]
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None  # [O]

    def forward(self, x: Tensor) -> Tensor:
        """Map ``x`` [N, in_features] to [N, out_features]."""
        if not self.use_wscale:
            return self.op(x, self.weight, self.bias)
        return scale_output(self.op, x, self.weight, self.bias, self.scale)

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The plain dense layer (an :data:`Op`)."""
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}, scale={self.scale:.4g}, bias={self.bias is not None}"


class PixelNorm(nn.Module):
    """Normalize each feature vector to unit RMS over channels: ``x / sqrt(mean_c(x^2) + eps)``.

    Works on [NC] and [NCHW] inputs (channels are dim 1).

    Args:
        eps: Added under the square root for stability.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` [NC...] over dim 1; same shape out."""
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


def mbstd_group(group_size: int, batch: int) -> int:
    """Samples per minibatch-stddev group for a batch of ``batch``: the largest divisor of
    ``batch`` not above ``group_size`` (0 when the layer is off)."""
    if group_size <= 0:
        return 0
    g = min(group_size, batch)
    while batch % g:
        g -= 1
    return g


class MinibatchStddev(nn.Module):
    """Append the minibatch standard deviation as one extra feature map (official algorithm).

    The batch is split into ``M = N / G`` groups of ``G = min(group_size, N)`` samples. As in
    the official reshape ``[G, M, C, H, W]`` a group is strided: sample ``i`` is grouped with
    ``i + M, i + 2M, ...``. Per group: biased variance over the members, ``sqrt(var + 1e-8)``,
    mean over C, H, W -> one scalar, tiled over the group's samples and H, W. Computed in
    float32 and cast back.

    Deviation from the official code, which requires ``N % G == 0``: when ``N`` is not a
    multiple of ``G``, ``G`` drops to the largest divisor of ``N`` not above it (for example
    N=6 with group 4 uses G=3), so a ragged last batch never crashes.

    Args:
        group_size: Samples per group; at least 2 (to disable the layer, leave it out).
    """

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        if group_size < 2:
            raise ValueError(
                f"MinibatchStddev group_size={group_size} must be >= 2; "
                "to disable minibatch stddev leave the layer out (mbstd_group_size=0)"
            )
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        """Map ``x`` [NCHW] to [N, C+1, H, W]."""
        n, c, h, w = x.shape
        g = mbstd_group(self.group_size, n)
        y = x.reshape(g, -1, c, h, w).float()  # [GMCHW]
        y = y - y.mean(dim=0)  # [GMCHW]
        y = y.square().mean(dim=0)  # [MCHW]
        y = torch.sqrt(y + 1e-8)  # [MCHW]
        y = y.mean(dim=(1, 2, 3)).to(x.dtype)  # [M]
        y = y.repeat(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)  # [N1HW]
        return torch.cat([x, y], dim=1)  # [N, C+1, H, W]

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


def upsample2x(x: Tensor) -> Tensor:
    """Nearest-neighbour upsampling by 2: [NCHW] -> [N, C, 2H, 2W]."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample2x(x: Tensor) -> Tensor:
    """2x2 average pooling: [NCHW] -> [N, C, H/2, W/2]."""
    return F.avg_pool2d(x, kernel_size=2)


def fade(old: Tensor, new: Tensor, alpha: float | Tensor) -> Tensor:
    """Cross-fade from the old path to the new one: ``lerp(old, new, alpha)``.

    Exact at the ends: alpha 0 gives ``old`` and alpha 1 gives ``new`` bit for bit. The
    paths may differ in dtype under autocast (bf16 autocast on CUDA gives G's old path, a
    nearest upsampling, in fp32 and its new path, a convolution, in bf16): both are blended
    in the wider of the two.

    Args:
        old: Output of the previous (lower-resolution) path.
        new: Output of the new path, same shape as ``old``.
        alpha: Weight of the new path in [0, 1]; a float or a 0-dim tensor.

    Returns:
        The blend, shaped like ``new``, in the wider dtype of ``old`` and ``new``.
    """
    dtype = torch.promote_types(old.dtype, new.dtype)
    old, new = old.to(dtype), new.to(dtype)
    if isinstance(alpha, Tensor):
        alpha = alpha.to(device=new.device, dtype=dtype)
    return torch.lerp(old, new, alpha)


def fade_reals(x: Tensor, alpha: float | Tensor) -> Tensor:
    """Cross-fade real images during a fade-in exactly like the generator output.

    Args:
        x: Real images at the stage resolution. [NCHW]
        alpha: Fade weight of the new resolution in [0, 1]; a float or a 0-dim tensor.

    Returns:
        ``lerp(upsample2x(downsample2x(x)), x, alpha)``: the blocky half-resolution image at
        alpha 0, ``x`` itself at alpha 1. [NCHW]
    """
    return fade(upsample2x(downsample2x(x)), x, alpha)
