"""Convert official ProGAN networks (read by :mod:`.reader`) into this project's G and D, exactly.

The project's :class:`~progan_lightning.networks.Generator` / ``Discriminator`` are built from
the official ``static_kwargs`` (with the official defaults of ``G_paper`` / ``D_paper`` for
what a file leaves out) and the variables' names and shapes, then every tensor is copied by
name (never by position: files list their variables in different orders):

- G ``4x4/Dense/weight`` [in, C*16] -> ``blocks.b4.dense.weight`` [C*16, in]; its bias [C] is
  added per channel after the reshape to [N, C, 4, 4], as ``blocks.b4.bias``.
- ``RxR/Conv0``, ``RxR/Conv1``, ``4x4/Conv``, ``ToRGB_lodL``, ``FromRGB_lodL`` and D's fused
  ``RxR/Conv1_down`` [kh, kw, in, out] -> ``conv.weight`` [out, in, kh, kw].
- G's fused ``RxR/Conv0_up`` [kh, kw, out, in] (a transposed convolution of its 4-tap sum)
  -> ``conv0.weight`` [out, in, kh, kw], flipped in both spatial axes.
- D's ``4x4/Dense0`` and ``4x4/Dense1`` [in, out] -> ``dense0`` / ``dense1.weight`` [out, in].

Both codes scale weights at run time by ``gain / sqrt(fan_in)``, so values are copied as they
are. The fused layers are recognised by their names (``Conv0_up`` / ``Conv1_down``); the
project's fused kernels (``layers.upsample_conv_kernel``, ``conv_downsample_kernel``) build the
same 4-tap kernels from the 3x3 weight.

An official ``lod`` maps to the project's stage and fade: for ``n`` stages, stage
``n - 1 - floor(lod)`` at alpha ``1 - frac(lod)`` (lod 0 = the full resolution).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from progan_lightning.networks import Discriminator, Generator, num_features
from progan_lightning.official.reader import OfficialNetwork, OfficialPickleError, read_official
from progan_lightning.schedule import stage_resolution

log = logging.getLogger(__name__)

G_DEFAULTS: dict[str, Any] = {
    "num_channels": 1,
    "resolution": 32,
    "label_size": 0,
    "fmap_base": 8192,
    "fmap_decay": 1.0,
    "fmap_max": 512,
    "latent_size": None,
    "normalize_latents": True,
    "use_wscale": True,
    "use_pixelnorm": True,
    "pixelnorm_epsilon": 1e-8,
    "use_leakyrelu": True,
    "dtype": "float32",
    "fused_scale": True,
    "structure": None,
    "is_template_graph": False,
}
"""The official ``G_paper`` arguments and their defaults."""

D_DEFAULTS: dict[str, Any] = {
    "num_channels": 1,
    "resolution": 32,
    "label_size": 0,
    "fmap_base": 8192,
    "fmap_decay": 1.0,
    "fmap_max": 512,
    "use_wscale": True,
    "mbstd_group_size": 4,
    "dtype": "float32",
    "fused_scale": True,
    "structure": None,
    "is_template_graph": False,
}
"""The official ``D_paper`` arguments and their defaults."""

Layout = Callable[[np.ndarray], np.ndarray]

LAYOUTS: dict[str, tuple[Layout, tuple[int, ...]]] = {
    "vector": (lambda v: v, (0,)),
    "dense": (lambda w: w.T, (1, 0)),  # [in, out] -> [out, in]
    "conv": (lambda w: w.transpose(3, 2, 0, 1), (2, 3, 1, 0)),  # [kh, kw, in, out] -> [OIhw]
    # [kh, kw, out, in] -> [OIhw], flipped: conv_transpose2d of the 4-tap sum of the official
    # kernel is nearest upsampling, then a convolution with that kernel flipped.
    "conv_up": (lambda w: w.transpose(2, 3, 0, 1)[:, :, ::-1, ::-1], (2, 3, 0, 1)),
}
"""Layout name -> (official array -> project array, the permutation of a project shape that
gives the official shape)."""


def stage_alpha(lod: float, num_stages: int) -> tuple[int, float]:
    """The project's stage and fade ``alpha`` of an official ``lod`` for ``num_stages`` stages.

    ``lod`` 0 is the full resolution (stage ``num_stages - 1``), ``num_stages - 1`` is 4x4;
    between two integers the higher stage fades in: ``alpha = 1 - frac(lod)``. Clipped to
    the network's range, as the official graph clips.
    """
    lod = min(max(float(lod), 0.0), float(num_stages - 1))
    whole = math.floor(lod)
    return num_stages - 1 - whole, 1.0 - (lod - whole)


def _options(net: OfficialNetwork, defaults: dict[str, Any]) -> dict[str, Any]:
    """``net``'s build arguments over the official defaults; refuses what the project's
    networks cannot compute and notes what the official code ignores too."""
    kwargs = {**defaults, **net.static_kwargs}
    ignored = sorted(set(net.static_kwargs) - set(defaults))
    if ignored:
        log.info(
            f"{net.name}: ignoring {ignored} (the official {net.build_func_name} ignores them)"
        )
    if not kwargs.get("use_leakyrelu", True):
        raise OfficialPickleError(
            f"{net.source}: network {net.name} uses use_leakyrelu=False (plain ReLU): the "
            "project's networks have leaky ReLUs only, so it cannot be converted exactly"
        )
    if kwargs["dtype"] != "float32":
        log.warning(
            f"network {net.name} was built with dtype={kwargs['dtype']}; its float32 weights "
            "are computed in float32 here (the official graph rounds activations to "
            f"{kwargs['dtype']})"
        )
    if kwargs["structure"] not in (None, "linear", "recursive"):
        raise OfficialPickleError(
            f"{net.source}: network {net.name} has structure={kwargs['structure']!r}; the "
            "official code knows 'linear' and 'recursive' only"
        )
    return kwargs


def _fused(net: OfficialNetwork, fused: str, plain: str, default: bool) -> bool:
    """Whether ``net`` has the fused layer ``fused`` (e.g. ``Conv0_up``) rather than
    ``plain`` (``Conv0``): read from the variable names; ``default`` (its ``fused_scale``) for
    a 4x4 network, which has neither."""
    layers = {name.split("/")[1] for name in net.variables if name.count("/") == 2}
    if fused in layers:
        return True
    return False if plain in layers else bool(default)


def generator_kwargs(net: OfficialNetwork) -> dict[str, Any]:
    """The project's ``Generator`` arguments for an official ``G_paper`` network."""
    kw = _options(net, G_DEFAULTS)
    fmap = (int(kw["fmap_base"]), float(kw["fmap_decay"]), int(kw["fmap_max"]))
    latent = kw["latent_size"]
    if latent is None:  # The official default: nf(0).
        latent = num_features(0, *fmap)
    return {
        "img_resolution": int(kw["resolution"]),
        "img_channels": int(kw["num_channels"]),
        "z_dim": int(latent),
        "fmap_base": fmap[0],
        "fmap_decay": fmap[1],
        "fmap_max": fmap[2],
        "use_wscale": bool(kw["use_wscale"]),
        "use_pixel_norm": bool(kw["use_pixelnorm"]),
        "normalize_latent": bool(kw["normalize_latents"]),
        "pixel_norm_eps": float(kw["pixelnorm_epsilon"]),
        "fused_scale": _fused(net, "Conv0_up", "Conv0", kw["fused_scale"]),
        "num_classes": int(kw["label_size"]),
    }


def discriminator_kwargs(net: OfficialNetwork) -> dict[str, Any]:
    """The project's ``Discriminator`` arguments for an official ``D_paper`` network."""
    kw = _options(net, D_DEFAULTS)
    group = int(kw["mbstd_group_size"])
    return {
        "img_resolution": int(kw["resolution"]),
        "img_channels": int(kw["num_channels"]),
        "fmap_base": int(kw["fmap_base"]),
        "fmap_decay": float(kw["fmap_decay"]),
        "fmap_max": int(kw["fmap_max"]),
        "use_wscale": bool(kw["use_wscale"]),
        "mbstd_group_size": group if group > 1 else 0,  # Official: the layer only when > 1.
        "fused_scale": _fused(net, "Conv1_down", "Conv1", kw["fused_scale"]),
        "num_classes": int(kw["label_size"]),
    }


def _conv(official: str, project: str) -> dict[str, tuple[str, str]]:
    """The weight and bias of a plain convolution."""
    return {
        f"{official}/weight": (f"{project}.weight", "conv"),
        f"{official}/bias": (f"{project}.bias", "vector"),
    }


def generator_variables(G: Generator) -> dict[str, tuple[str, str]]:
    """Official variable name -> (``G``'s parameter name, layout name) for every parameter."""
    top = G.num_stages - 1
    names = {
        "4x4/Dense/weight": ("blocks.b4.dense.weight", "dense"),
        "4x4/Dense/bias": ("blocks.b4.bias", "vector"),
        **_conv("4x4/Conv", "blocks.b4.conv"),
    }
    for s in range(G.num_stages):
        res = stage_resolution(s)
        names |= _conv(f"ToRGB_lod{top - s}", f"to_rgb.b{res}")
        if s == 0:
            continue
        if G.blocks[f"b{res}"].fused_scale:
            names |= {
                f"{res}x{res}/Conv0_up/weight": (f"blocks.b{res}.conv0.weight", "conv_up"),
                f"{res}x{res}/Conv0_up/bias": (f"blocks.b{res}.conv0.bias", "vector"),
            }
        else:
            names |= _conv(f"{res}x{res}/Conv0", f"blocks.b{res}.conv0")
        names |= _conv(f"{res}x{res}/Conv1", f"blocks.b{res}.conv1")
    return names


def discriminator_variables(D: Discriminator) -> dict[str, tuple[str, str]]:
    """Official variable name -> (``D``'s parameter name, layout name) for every parameter."""
    top = D.num_stages - 1
    names = {
        **_conv("4x4/Conv", "blocks.b4.conv"),
        "4x4/Dense0/weight": ("blocks.b4.dense0.weight", "dense"),
        "4x4/Dense0/bias": ("blocks.b4.dense0.bias", "vector"),
        "4x4/Dense1/weight": ("blocks.b4.dense1.weight", "dense"),
        "4x4/Dense1/bias": ("blocks.b4.dense1.bias", "vector"),
    }
    for s in range(D.num_stages):
        res = stage_resolution(s)
        names |= _conv(f"FromRGB_lod{top - s}", f"from_rgb.b{res}.conv")
        if s == 0:
            continue
        names |= _conv(f"{res}x{res}/Conv0", f"blocks.b{res}.conv0")
        conv1 = "Conv1_down" if D.blocks[f"b{res}"].fused_scale else "Conv1"
        names |= _conv(f"{res}x{res}/{conv1}", f"blocks.b{res}.conv1")
    return names


def _check_shapes(
    net: OfficialNetwork, module: nn.Module, names: dict[str, tuple[str, str]]
) -> None:
    """Refuse ``net`` unless its variables are exactly those of ``module`` (built on the meta
    device) by name and shape; one error lists every missing, unexpected or mis-shaped one."""
    params = dict(module.named_parameters())
    expected = {
        official: tuple(params[name].shape[i] for i in LAYOUTS[layout][1])
        for official, (name, layout) in names.items()
    }
    found = {name: value.shape for name, value in net.variables.items() if name != "lod"}
    problems = [
        f"missing {name} {list(shape)}" for name, shape in expected.items() if name not in found
    ]
    problems += [
        f"unexpected {name} {list(shape)}" for name, shape in found.items() if name not in expected
    ]
    problems += [
        f"{name} is {list(found[name])}, expected {list(shape)}"
        for name, shape in expected.items()
        if name in found and tuple(found[name]) != shape
    ]
    if problems:
        raise OfficialPickleError(
            f"{net.source}: network {net.name} ({net.build_func_name}, {net.static_kwargs}) "
            f"does not match the network its static_kwargs describe: "
            f"{'; '.join(problems[:8])}"
            + (f"; ... ({len(problems)} in all)" if len(problems) > 8 else "")
        )


def _build(
    cls: type[nn.Module],
    kwargs: dict[str, Any],
    net: OfficialNetwork,
    variables: Callable[[Any], dict[str, tuple[str, str]]],
) -> Any:
    """``cls(**kwargs)`` holding ``net``'s variables (named by ``variables(module)``), copied by
    name. The shapes are checked on a network built on the meta device first, so sizes a file
    makes up allocate nothing; a refused value is named as the official option it came from."""
    try:
        with torch.device("meta"):
            skeleton = cls(**kwargs)
    except ValueError as err:
        raise OfficialPickleError(
            f"{net.source}: network {net.name} ({net.static_kwargs}) cannot be built here: {err}"
        ) from None
    names = variables(skeleton)
    _check_shapes(net, skeleton, names)
    module = cls(**kwargs)
    state = {
        name: torch.from_numpy(
            np.ascontiguousarray(LAYOUTS[layout][0](net.variables[official]), dtype=np.float32)
        )
        for official, (name, layout) in names.items()
    }
    module.load_state_dict(state)
    return module


def _trained_lod(net: OfficialNetwork, num_stages: int) -> float:
    """``net``'s ``lod``, refused (naming the file) unless it is in ``0 .. num_stages - 1``."""
    lod = net.lod
    if not 0.0 <= lod <= num_stages - 1:  # NaN too
        raise OfficialPickleError(
            f"{net.source}: network {net.name} has lod={lod}, outside 0..{num_stages - 1} of "
            "its resolution (0 = full resolution); the file is damaged, download it again"
        )
    return lod


def convert_generator(net: OfficialNetwork) -> Generator:
    """The project's Generator with the weights of an official ``G_paper`` network, carrying
    ``trained_stage`` / ``trained_alpha`` (from its ``lod``) and ``class_names``."""
    G = _build(Generator, generator_kwargs(net), net, generator_variables)
    G.trained_stage, G.trained_alpha = stage_alpha(_trained_lod(net, G.num_stages), G.num_stages)
    G.class_names = [str(c) for c in range(G.num_classes)]
    return G


def convert_discriminator(net: OfficialNetwork) -> Discriminator:
    """The project's Discriminator with the weights of an official ``D_paper`` network."""
    return _build(Discriminator, discriminator_kwargs(net), net, discriminator_variables)


def load_official(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Generator, Discriminator, Generator]:
    """Load an official ProGAN pickle as the project's ``(G, D, G_ema)``, in eval mode.

    ``G_ema`` is the official ``Gs`` (the one to generate with) and has no gradients; each
    generator carries ``trained_stage`` / ``trained_alpha`` from its ``lod`` variable and
    ``class_names`` (``"0" .. "C-1"`` for a conditional one). Nothing in the file is run.

    Args:
        path: The ``.pkl`` (e.g. ``karras2018iclr-celebahq-1024x1024.pkl``).
        map_location: Device for the weights.

    Raises:
        FileNotFoundError, OfficialPickleError: see :func:`.reader.read_official`; also a
            network whose variables do not match its ``static_kwargs``, or that uses an
            option the project's networks cannot compute.
    """
    official_G, official_D, official_Gs = read_official(path)
    G = convert_generator(official_G).to(map_location).eval()
    D = convert_discriminator(official_D).to(map_location).eval()
    G_ema = convert_generator(official_Gs).to(map_location).eval().requires_grad_(False)
    return G, D, G_ema


def load_official_generator(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> Generator:
    """Only ``G_ema`` (the official ``Gs``) of an official pickle, in eval mode and without
    gradients; G and D are read but not converted. See :func:`load_official`."""
    G_ema = convert_generator(read_official(path)[2])
    return G_ema.to(map_location).eval().requires_grad_(False)
