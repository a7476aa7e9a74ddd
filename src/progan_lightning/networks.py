"""ProGAN generator and discriminator, built at full depth and run at any stage.

Stage ``s`` works at resolution ``4 * 2**s`` (stage 0 is 4x4). Blocks and to/from-RGB layers
live in ``nn.ModuleDict``s keyed by resolution (``"b4"``, ``"b8"``, ...), so parameter names
never change with the stage and one checkpoint format serves every resolution. The layout
follows the official TF code (tkarras/progressive_growing_of_gans, ``networks.py``).

Both nets are optionally class-conditional (``num_classes > 0``), as the official ``G_paper`` /
``D_paper`` with ``label_size > 0``: G concatenates the one-hot label to the latent before the
latent pixel norm (``combo_in = tf.concat([latents_in, labels_in], axis=1)``, then
``pixel_norm`` and ``Dense`` in the 4x4 block), and D's last dense layer gives ``1 + C``
outputs (``dense(x, fmaps=1 + label_size, gain=1)``; column 0 is the score, ``1:`` the class
logits). With ``num_classes = 0`` both nets are exactly the unconditional ones.

D has a second, non-official way to condition (``conditioning="projection"``): the projection
discriminator of Miyato & Koyama, "cGANs with Projection Discriminator" (ICLR 2018,
arXiv:1802.05637). Its score adds ``<embed(y), h>`` to the unconditional score, with ``h`` the
output of D's first dense layer and ``embed`` a learned vector per class, so a real-looking
image of the wrong class scores as a fake; there are no class logits and no class term.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from progan_lightning.layers import (
    LRELU_SLOPE,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStddev,
    PixelNorm,
    downsample2x,
    fade,
    upsample2x,
)
from progan_lightning.schedule import check_resolution, resolution_stage, stage_resolution

CONDITIONINGS = ("acgan", "projection")
"""How a conditional D uses the labels (``model.D.conditioning``)."""

OMITTED_KWARGS = {"num_classes": 0, "conditioning": "acgan"}
"""Constructor arguments a network's ``init_kwargs`` leaves out at these values (so the
records of unconditional and official networks stay as they were); any other is recorded."""


def init_kwarg(init_kwargs: dict[str, Any], key: str) -> Any:
    """The value of constructor argument ``key`` in a network's ``init_kwargs`` record."""
    return init_kwargs.get(key, OMITTED_KWARGS.get(key))


def num_features(stage: int, fmap_base: int, fmap_decay: float, fmap_max: int) -> int:
    """Feature maps at ``stage`` (the official ``nf()``).

    The block at resolution ``r`` uses ``num_features(log2(r) - 1, ...)``: with fmap_base 8192
    and fmap_max 512 that is 512 up to 32x32, then 256, 128, 64, 32 and 16 at 1024x1024.

    Args:
        stage: Official stage index (``log2(resolution) - 1`` for a block's own width).
        fmap_base: Overall multiplier for the number of feature maps.
        fmap_decay: Log2 feature-map reduction when doubling the resolution.
        fmap_max: Upper bound on the number of feature maps.

    Returns:
        ``min(int(fmap_base / 2 ** (stage * fmap_decay)), fmap_max)``.
    """
    return min(int(fmap_base / 2 ** (stage * fmap_decay)), fmap_max)


def stage_widths(count: int, fmap_base: int, fmap_decay: float, fmap_max: int) -> list[int]:
    """``num_features(i)`` for ``i < count``; fails when a width would be below 1.

    Raises:
        ValueError: Names ``model.G.fmap_base``/``fmap_max`` (D's follow G's in the config),
            the resolution that gets no feature maps and the smallest value that works.
    """
    widths = [num_features(i, fmap_base, fmap_decay, fmap_max) for i in range(count)]
    if fmap_max < 1:
        raise ValueError(f"model.G.fmap_max={fmap_max} must be >= 1")
    if min(widths) < 1:
        i = widths.index(min(widths))
        need = math.ceil(2 ** (i * fmap_decay))
        res = 2 ** (i + 1)
        raise ValueError(
            f"model.G.fmap_base={fmap_base} gives 0 feature maps at {res}x{res} "
            f"(min(fmap_base / 2**(stage * fmap_decay), fmap_max)); raise model.G.fmap_base "
            f"to at least {need}, lower model.G.fmap_decay, or lower data.resolution"
        )
    return widths


def seeded_latents(shape: tuple[int, ...], seed: int) -> Tensor:
    """Standard-normal latents of ``shape`` from their own generator: the same for a seed on
    every call, run and device (they are drawn on the CPU)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _count_stages(img_resolution: int, img_channels: int) -> int:
    """Validate the image geometry and return the number of stages (4x4 .. img_resolution)."""
    check_resolution(img_resolution, "img_resolution")
    if img_channels < 1:
        raise ValueError(f"img_channels={img_channels} must be >= 1 (3 for RGB, 1 for grey)")
    return resolution_stage(img_resolution) + 1


def _block_key(stage: int) -> str:
    """ModuleDict key of ``stage``: ``"b4"``, ``"b8"``, ..."""
    return f"b{stage_resolution(stage)}"


def _is_faded_in(alpha: float | Tensor) -> bool:
    """True when a python ``alpha`` means the new path alone (a tensor always blends)."""
    return not isinstance(alpha, Tensor) and alpha >= 1.0


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


def _check_num_classes(num_classes: int, net: str) -> int:
    """Validate ``num_classes`` (0 = unconditional) and return it as an int."""
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 0:
        raise ValueError(
            f"model.{net}.num_classes={num_classes!r}; use the number of classes of the data "
            "(an int >= 1), or 0 for an unconditional network"
        )
    return int(num_classes)


def one_hot_labels(labels: Tensor, num_classes: int, z: Tensor) -> Tensor:
    """Class labels as the ``[N, C]`` input of a conditional generator.

    Args:
        labels: Class indices, an integer tensor [N]; or one-hot / soft labels, a float tensor
            [N, C], taken as they are.
        num_classes: ``C``.
        z: The latents they go with [N, z_dim]: the result takes their dtype and device.

    Returns:
        One-hot (or the given soft) labels. [N, C]

    Raises:
        ValueError: Wrong shape or dtype, or (for labels on the CPU) an index outside
            ``[0, C)``. On an accelerator the range is not checked on the host (that would
            stall every step): an out-of-range index trips ``one_hot``'s device-side assert.
    """
    batch = len(z)
    expected = (
        f"class indices (int64 [{batch}]) or one-hot labels (float [{batch}, {num_classes}])"
    )
    if labels.is_floating_point():
        if tuple(labels.shape) != (batch, num_classes):
            raise ValueError(f"labels have shape {list(labels.shape)}; expected {expected}")
        return labels.to(z)
    if labels.dtype == torch.bool or labels.is_complex() or tuple(labels.shape) != (batch,):
        raise ValueError(
            f"labels have shape {list(labels.shape)} and dtype {labels.dtype}; expected {expected}"
        )
    if labels.device.type == "cpu":
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.numel():
            raise ValueError(
                f"labels {bad.unique()[:10].tolist()} are outside the classes "
                f"0..{num_classes - 1} of this generator; pass class indices in that range"
            )
    return F.one_hot(labels.long(), num_classes).to(z)


class GeneratorInputBlock(nn.Module):
    """G 4x4 block: latent -> dense -> [N, C, 4, 4] + bias, lrelu, norm; conv3x3, lrelu, norm.

    Args:
        in_features: Latent size, plus the label size for a conditional G (the input is the
            latent with the one-hot label appended).
        channels: Feature maps of the block.
        use_wscale: Equalized learning rate.
        use_pixel_norm: Pixel norm after each activation.
        normalize_latent: Pixel norm of the input before the dense layer.
        eps: Pixel norm epsilon.
    """

    def __init__(
        self,
        in_features: int,
        channels: int,
        use_wscale: bool,
        use_pixel_norm: bool,
        normalize_latent: bool,
        eps: float,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.latent_norm = PixelNorm(eps) if normalize_latent else nn.Identity()
        # Gain sqrt(2)/4 as in the official code; the bias is per channel, added after reshape.
        self.dense = EqualizedLinear(
            in_features, channels * 16, gain=math.sqrt(2) / 4, use_wscale=use_wscale, bias=False
        )
        self.bias = nn.Parameter(torch.zeros(channels))  # [C]
        self.conv = EqualizedConv2d(channels, channels, 3, use_wscale=use_wscale)
        self.norm = PixelNorm(eps) if use_pixel_norm else nn.Identity()

    def forward(self, z: Tensor) -> Tensor:
        """Map latents [N, in_features] to features [N, C, 4, 4]."""
        x = self.dense(self.latent_norm(z))  # [N, C*16]
        x = x.reshape(-1, self.channels, 4, 4) + self.bias.reshape(1, -1, 1, 1)  # [NC44]
        x = self.norm(_lrelu(x))
        return self.norm(_lrelu(self.conv(x)))  # [NC44]


class GeneratorBlock(nn.Module):
    """G block above 4x4: upsample x2, (conv3x3, lrelu, norm) twice.

    Args:
        in_channels: Feature maps of the previous block.
        out_channels: Feature maps of this block.
        use_wscale: Equalized learning rate.
        use_pixel_norm: Pixel norm after each activation.
        eps: Pixel norm epsilon.
        fused_scale: Fuse the upsampling into the first conv (a transposed conv; the same
            function, faster).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        use_wscale: bool,
        use_pixel_norm: bool,
        eps: float,
        fused_scale: bool = True,
    ) -> None:
        super().__init__()
        self.fused_scale = fused_scale
        self.conv0 = EqualizedConv2d(
            in_channels,
            out_channels,
            3,
            use_wscale=use_wscale,
            resample="up" if fused_scale else "none",
        )
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3, use_wscale=use_wscale)
        self.norm = PixelNorm(eps) if use_pixel_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Map [N, in, H, W] to [N, out, 2H, 2W]."""
        if not self.fused_scale:
            x = upsample2x(x)
        x = self.norm(_lrelu(self.conv0(x)))
        return self.norm(_lrelu(self.conv1(x)))


class Generator(nn.Module):
    """ProGAN generator: latent [N, z_dim] -> image [N, img_channels, R, R] at any stage.

    Built at full depth once. At stage ``s > 0`` with ``alpha < 1`` the new block's toRGB
    output is cross-faded with the nearest-upsampled toRGB output of the previous stage.
    The output is linear (no tanh); real images live in [-1, 1]. With ``num_classes > 0`` it
    also takes labels: their one-hot is appended to the latent before the latent pixel norm.
    """

    def __init__(
        self,
        img_resolution: int,  # Final output resolution, a power of two >= 4.
        img_channels: int = 3,  # Output colour channels.
        z_dim: int = 512,  # Latent size.
        fmap_base: int = 8192,  # Overall multiplier for the number of feature maps.
        fmap_decay: float = 1.0,  # Log2 feature-map reduction when doubling the resolution.
        fmap_max: int = 512,  # Upper bound on the number of feature maps.
        use_wscale: bool = True,  # Equalized learning rate.
        use_pixel_norm: bool = True,  # Pixel norm after every activation.
        normalize_latent: bool = True,  # Pixel norm of the latent before the first layer.
        pixel_norm_eps: float = 1e-8,  # Pixel norm epsilon.
        fused_scale: bool = True,  # Upsample inside the first conv of each block (exact).
        num_classes: int = 0,  # Classes of a conditional G; 0 = unconditional.
    ) -> None:
        super().__init__()
        self.num_stages = _count_stages(img_resolution, img_channels)
        num_classes = _check_num_classes(num_classes, "G")
        self.init_kwargs: dict[str, Any] = {
            "img_resolution": int(img_resolution),
            "img_channels": int(img_channels),
            "z_dim": int(z_dim),
            "fmap_base": int(fmap_base),
            "fmap_decay": float(fmap_decay),
            "fmap_max": int(fmap_max),
            "use_wscale": bool(use_wscale),
            "use_pixel_norm": bool(use_pixel_norm),
            "normalize_latent": bool(normalize_latent),
            "pixel_norm_eps": float(pixel_norm_eps),
            "fused_scale": bool(fused_scale),
        }
        if num_classes:  # Only when conditional: unconditional exports stay as they were.
            self.init_kwargs["num_classes"] = num_classes
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.channels = stage_widths(self.num_stages + 1, fmap_base, fmap_decay, fmap_max)[1:]

        # One block and one toRGB per resolution, 4x4 first.
        self.blocks = nn.ModuleDict()
        self.to_rgb = nn.ModuleDict()
        for s, ch in enumerate(self.channels):
            key = _block_key(s)
            if s == 0:
                self.blocks[key] = GeneratorInputBlock(
                    z_dim + num_classes,
                    ch,
                    use_wscale,
                    use_pixel_norm,
                    normalize_latent,
                    pixel_norm_eps,
                )
            else:
                self.blocks[key] = GeneratorBlock(
                    self.channels[s - 1],
                    ch,
                    use_wscale,
                    use_pixel_norm,
                    pixel_norm_eps,
                    fused_scale,
                )
            self.to_rgb[key] = EqualizedConv2d(
                ch, img_channels, 1, gain=1.0, use_wscale=use_wscale
            )

    def forward(
        self,
        z: Tensor,
        stage: int,
        alpha: float | Tensor = 1.0,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Generate images at ``stage``.

        Args:
            z: Latents. [N, z_dim]
            stage: Current stage, ``0 <= stage < num_stages`` (resolution ``4 * 2**stage``).
            alpha: Fade-in weight of the newest block in [0, 1]; ignored at stage 0. A python
                float >= 1 skips the old path; a 0-dim tensor always computes both paths.
            labels: Required when ``num_classes > 0``, refused otherwise: class indices
                (integer [N], in ``[0, num_classes)``) or one-hot / soft labels (float
                [N, num_classes], used as they are).

        Returns:
            Images. [N, img_channels, 4 * 2**stage, 4 * 2**stage]
        """
        if not 0 <= stage < self.num_stages:
            raise ValueError(
                f"stage={stage} is out of range for img_resolution={self.img_resolution}; "
                f"use 0..{self.num_stages - 1}"
            )
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z has shape {list(z.shape)}; expected [N, {self.z_dim}]")

        # Append the one-hot label to the latent (official combo_in); the 4x4 block norms both.
        x = z
        if self.num_classes:
            if labels is None:
                raise ValueError(
                    f"this generator is class-conditional ({self.num_classes} classes): pass "
                    f"labels, class indices [N] in 0..{self.num_classes - 1}"
                )
            x = torch.cat([z, one_hot_labels(labels, self.num_classes, z)], 1)
        elif labels is not None:
            raise ValueError(
                "labels were given to an unconditional generator (num_classes=0); drop them, "
                "or train a conditional model on labelled data"
            )

        # Features up to the previous stage.
        for s in range(stage):
            x = self.blocks[_block_key(s)](x)
            assert x.shape[1:] == (self.channels[s], 4 * 2**s, 4 * 2**s)  # [NCHW]

        # Newest block, faded in over the upsampled previous output.
        key = _block_key(stage)
        new = self.to_rgb[key](self.blocks[key](x))  # [N, img_channels, R, R]
        if stage == 0 or _is_faded_in(alpha):
            return new
        old = upsample2x(self.to_rgb[_block_key(stage - 1)](x))  # [N, img_channels, R, R]
        return fade(old, new, alpha)


class FromRGB(nn.Module):
    """D input layer: 1x1 equalized conv from image channels to features, then lrelu.

    Args:
        img_channels: Image channels.
        channels: Feature maps out.
        use_wscale: Equalized learning rate.
    """

    def __init__(self, img_channels: int, channels: int, use_wscale: bool) -> None:
        super().__init__()
        self.conv = EqualizedConv2d(img_channels, channels, 1, use_wscale=use_wscale)

    def forward(self, img: Tensor) -> Tensor:
        """Map [N, img_channels, H, W] to [N, channels, H, W]."""
        return _lrelu(self.conv(img))


class DiscriminatorBlock(nn.Module):
    """D block above 4x4: conv3x3, lrelu, then conv3x3 and 2x2 average pool, lrelu.

    With ``fused_scale`` (the official default) the second conv and the pooling are one
    stride-2 conv, followed by the activation: ``lrelu(pool(conv(x)))``. Without it, the
    official ``fused_scale=False`` order: ``pool(lrelu(conv(x)))``.

    Args:
        in_channels: Feature maps of this block (its first conv keeps them).
        out_channels: Feature maps of the next lower block.
        use_wscale: Equalized learning rate.
        fused_scale: Fuse the second conv with the downsampling.
    """

    def __init__(
        self, in_channels: int, out_channels: int, use_wscale: bool, fused_scale: bool = True
    ) -> None:
        super().__init__()
        self.fused_scale = fused_scale
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, use_wscale=use_wscale)
        self.conv1 = EqualizedConv2d(
            in_channels,
            out_channels,
            3,
            use_wscale=use_wscale,
            resample="down" if fused_scale else "none",
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map [N, in, H, W] to [N, out, H/2, W/2]."""
        x = _lrelu(self.conv0(x))
        if self.fused_scale:
            return _lrelu(self.conv1(x))
        return downsample2x(_lrelu(self.conv1(x)))


class DiscriminatorOutputBlock(nn.Module):
    """D 4x4 block: minibatch stddev, conv3x3, lrelu, dense, lrelu, dense -> 1 score (+ C
    class logits, or + the class projection).

    Args:
        channels: Feature maps in (and of the conv).
        hidden: Width of the first dense layer.
        use_wscale: Equalized learning rate.
        mbstd_group_size: Minibatch stddev group size; below 2 leaves the layer out.
        num_classes: Classes of a conditional D (0 for none).
        conditioning: ``acgan``: class logits after the score; ``projection`` (with classes):
            the score plus ``<embed(y), h>`` (``embed``: a dense layer on the one-hot label, no
            bias).
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        use_wscale: bool,
        mbstd_group_size: int,
        num_classes: int = 0,
        conditioning: str = "acgan",
    ) -> None:
        super().__init__()
        use_mbstd = mbstd_group_size >= 2
        self.mbstd = MinibatchStddev(mbstd_group_size) if use_mbstd else nn.Identity()
        self.conv = EqualizedConv2d(channels + int(use_mbstd), channels, 3, use_wscale=use_wscale)
        self.dense0 = EqualizedLinear(channels * 16, hidden, use_wscale=use_wscale)
        self.num_classes = num_classes
        self.project = conditioning == "projection"
        logits = 0 if self.project else num_classes
        self.dense1 = EqualizedLinear(hidden, 1 + logits, gain=1.0, use_wscale=use_wscale)
        if self.project:
            self.embed = EqualizedLinear(
                num_classes, hidden, gain=1.0, use_wscale=use_wscale, bias=False
            )

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Map features [N, C, 4, 4] to scores and class logits [N, 1 + C], or (projection:
        ``labels`` required, class indices [N] or one-hot [N, C]) to scores [N, 1]."""
        x = self.mbstd(x)  # [N, C(+1), 4, 4]
        x = _lrelu(self.conv(x))  # [NC44]
        h = _lrelu(self.dense0(x.flatten(1)))  # [N, hidden]
        out = self.dense1(h)  # [N, 1 + logits]
        if not self.project:
            return out
        y = self.embed(one_hot_labels(labels, self.num_classes, h))  # [N, hidden]
        return out + (y * h).sum(1, keepdim=True)  # [N, 1]


class Discriminator(nn.Module):
    """ProGAN discriminator (critic): image [N, img_channels, R, R] -> score [N, 1].

    Mirrors the generator: at stage ``s > 0`` with ``alpha < 1`` the new block's output is
    cross-faded with fromRGB of the 2x2 average-pooled image at the previous stage. With
    ``num_classes > 0`` and ``conditioning="acgan"`` (official) the output is
    [N, 1 + num_classes]: the score in column 0, then the class logits. With
    ``conditioning="projection"`` it is the class-aware score [N, 1], and ``forward`` takes the
    labels.
    """

    def __init__(
        self,
        img_resolution: int,  # Final input resolution, a power of two >= 4.
        img_channels: int = 3,  # Input colour channels.
        fmap_base: int = 8192,  # Overall multiplier for the number of feature maps.
        fmap_decay: float = 1.0,  # Log2 feature-map reduction when doubling the resolution.
        fmap_max: int = 512,  # Upper bound on the number of feature maps.
        use_wscale: bool = True,  # Equalized learning rate.
        mbstd_group_size: int = 4,  # Minibatch stddev group size (>= 2); 0 disables the layer.
        fused_scale: bool = True,  # Second conv + pooling as one stride-2 conv (official).
        num_classes: int = 0,  # Classes of a conditional D; 0 = unconditional.
        conditioning: str = "acgan",  # acgan (official: class logits) or projection.
    ) -> None:
        super().__init__()
        if isinstance(mbstd_group_size, bool) or mbstd_group_size == 1 or mbstd_group_size < 0:
            raise ValueError(
                f"model.D.mbstd_group_size={mbstd_group_size!r}: a group of {mbstd_group_size} "
                "has no spread to measure; use 2 or more (official 4; 16 in the v1 preset), "
                "or 0 to disable minibatch standard deviation"
            )
        self.num_stages = _count_stages(img_resolution, img_channels)
        num_classes = _check_num_classes(num_classes, "D")
        if conditioning not in CONDITIONINGS:
            raise ValueError(
                f"model.D.conditioning={conditioning!r}; use acgan (the official class logits "
                "and class term) or projection (the label projected on D's features)"
            )
        self.init_kwargs: dict[str, Any] = {
            "img_resolution": int(img_resolution),
            "img_channels": int(img_channels),
            "fmap_base": int(fmap_base),
            "fmap_decay": float(fmap_decay),
            "fmap_max": int(fmap_max),
            "use_wscale": bool(use_wscale),
            "mbstd_group_size": int(mbstd_group_size),
            "fused_scale": bool(fused_scale),
        }
        # Unconditional and official (AC-GAN) checkpoints record no conditioning: as before it.
        self.conditioning = conditioning if num_classes else "acgan"
        if num_classes:
            self.init_kwargs["num_classes"] = num_classes
        if self.conditioning != OMITTED_KWARGS["conditioning"]:
            self.init_kwargs["conditioning"] = self.conditioning
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_classes = num_classes
        # channels[s + 1] feeds the block at stage s; channels[0] is the 4x4 dense width.
        self.channels = stage_widths(self.num_stages + 1, fmap_base, fmap_decay, fmap_max)

        # One fromRGB and one block per resolution, 4x4 first.
        self.from_rgb = nn.ModuleDict()
        self.blocks = nn.ModuleDict()
        for s in range(self.num_stages):
            key = _block_key(s)
            ch = self.channels[s + 1]
            self.from_rgb[key] = FromRGB(img_channels, ch, use_wscale)
            if s == 0:
                self.blocks[key] = DiscriminatorOutputBlock(
                    ch,
                    self.channels[0],
                    use_wscale,
                    mbstd_group_size,
                    num_classes,
                    self.conditioning,
                )
            else:
                self.blocks[key] = DiscriminatorBlock(
                    ch, self.channels[s], use_wscale, fused_scale
                )

    def forward(
        self,
        img: Tensor,
        stage: int,
        alpha: float | Tensor = 1.0,
        labels: Tensor | None = None,
    ) -> Tensor:
        """Score images at ``stage``.

        Args:
            img: Images at the stage resolution. [N, img_channels, 4 * 2**stage, 4 * 2**stage]
            stage: Current stage, ``0 <= stage < num_stages``.
            alpha: Fade-in weight of the newest block in [0, 1]; ignored at stage 0. A python
                float >= 1 skips the old path; a 0-dim tensor always computes both paths.
            labels: The images' classes, for a projection D only (required there, refused
                elsewhere): class indices [N] or one-hot / soft labels [N, num_classes].

        Returns:
            Scores, then class logits for an AC-GAN D. [N, 1 + num_classes], or [N, 1]
            (unconditional or projection)
        """
        if (labels is not None) != (self.conditioning == "projection"):
            raise ValueError(
                "a projection discriminator scores images with their labels (class indices [N]); "
                "pass labels"
                if labels is None
                else "labels were given to a discriminator that does not project them "
                f"(conditioning={self.conditioning}, num_classes={self.num_classes}); drop them"
            )
        if not 0 <= stage < self.num_stages:
            raise ValueError(
                f"stage={stage} is out of range for img_resolution={self.img_resolution}; "
                f"use 0..{self.num_stages - 1}"
            )
        res = stage_resolution(stage)
        if img.ndim != 4 or tuple(img.shape[1:]) != (self.img_channels, res, res):
            raise ValueError(
                f"Discriminator at stage {stage} expects images [N, {self.img_channels}, "
                f"{res}, {res}], got {list(img.shape)}; resize the images to {res}x{res}"
            )

        # Newest block, faded in over fromRGB of the pooled image.
        key = _block_key(stage)
        x = self._block(stage, self.from_rgb[key](img), labels)
        if stage > 0 and not _is_faded_in(alpha):
            old = self.from_rgb[_block_key(stage - 1)](downsample2x(img))
            x = fade(old, x, alpha)

        # Remaining blocks down to 4x4 and the score.
        for s in reversed(range(stage)):
            assert x.shape[1:] == (self.channels[s + 1], 4 * 2**s, 4 * 2**s)  # [NCHW]
            x = self._block(s, x, labels)
        return x  # [N, 1 + num_classes] or [N, 1]

    def _block(self, stage: int, x: Tensor, labels: Tensor | None) -> Tensor:
        """The block of ``stage`` on features ``x``; the 4x4 output block also takes the
        labels (a projection D's)."""
        block = self.blocks[_block_key(stage)]
        return block(x, labels) if stage == 0 else block(x)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latents [N, z_dim] (on the sphere of their norms)."""
    na, nb = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((na * nb).sum(1, keepdim=True).clamp(-1.0 + 1e-7, 1.0 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1.0 - t) * omega) * a + torch.sin(t * omega) * b) / so
