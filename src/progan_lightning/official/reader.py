"""Read the official ProGAN network pickles without TensorFlow, and without running them.

An official pickle (``karras2018iclr-celebahq-1024x1024.pkl``, ``network-snapshot-*.pkl``) is
the tuple ``(G, D, Gs)`` of the official ``tfutil.Network``. Each network's pickled state is a
version-2 dict: ``name``, ``static_kwargs`` (the arguments of its build function),
``build_func_name`` (``G_paper`` / ``D_paper``), ``build_module_src`` (the source of the
official ``networks.py``, which the official loader executes) and ``variables``, a list of
``(local name, numpy array)``.

:func:`read_official` unpickles with a restricted unpickler: ``tfutil.Network`` becomes a plain
:class:`OfficialNetwork` record and only the numpy globals that rebuild arrays, scalars and
dtypes are allowed (``numpy.core.*`` of the 2018 files and ``numpy._core.*`` of files saved
under numpy 2). Any other global is refused before it is looked up, so nothing in the file is
ever called; ``build_module_src`` is kept as text and never executed.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from progan_lightning.fs import expand_path, file_kind

BUILD_FUNCS = {"G": "G_paper", "D": "D_paper"}
"""The official build function of each kind of network this project converts."""

_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    **{
        (f"{package}.multiarray", name): ("multiarray", name)
        for package in ("numpy.core", "numpy._core")
        for name in ("_reconstruct", "scalar")
    },
    **{
        (f"{package}.numeric", "_frombuffer"): ("numeric", "_frombuffer")
        for package in ("numpy.core", "numpy._core")
    },
}
"""Allowed numpy globals -> (numpy module, attribute) they are taken from on this numpy."""

_NETWORK_CLASSES = {("tfutil", "Network"), ("network", "Network")}
"""The official network class (``network.Network``: its name in the Theano-era pickles)."""

_FOREIGN_NETWORKS = {
    "dnnlib": "a StyleGAN / StyleGAN2 (dnnlib) pickle, not a ProGAN one",
    "torch": "a PyTorch file, not an official ProGAN pickle (for a training checkpoint use "
    "its .ckpt; for an export its .safetensors)",
    "torch_utils": "a StyleGAN2-ADA / StyleGAN3 (PyTorch) pickle, not a ProGAN one",
}
"""Top-level modules of well-known other pickles -> what the file then is."""


_DAMAGED = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    LookupError,
    OverflowError,
    MemoryError,
    AttributeError,
)
"""What unpickling a damaged or truncated file raises (opcodes, lengths and memo references
read from broken bytes)."""


class OfficialPickleError(ValueError):
    """An official network pickle that cannot be read (the message names the file and why)."""


@dataclass
class OfficialNetwork:
    """One official network as pickled: its state, nothing executed.

    Attributes:
        name: The network's name (``G``, ``D``, ``Gs``).
        build_func_name: The official build function (``G_paper``, ``D_paper``).
        static_kwargs: The build function's keyword arguments.
        variables: Local variable name -> value, e.g. ``"4x4/Dense/weight"`` [in, out] or
            ``"8x8/Conv0/weight"`` [kh, kw, in, out] (TensorFlow layouts) and ``"lod"`` (0-d).
        build_module_src: The pickled ``networks.py`` source (never executed).
        source: The file it was read from (named in every refusal of it).
    """

    name: str
    build_func_name: str
    static_kwargs: dict[str, Any]
    variables: dict[str, np.ndarray] = field(repr=False)
    build_module_src: str = field(default="", repr=False)
    source: str = ""

    @property
    def lod(self) -> float:
        """The network's ``lod`` variable: how far its training had grown (0 = full
        resolution; ``log2(resolution) - 2`` = 4x4; fractions are fades)."""
        return float(self.variables.get("lod", 0.0))


class _PickledNetwork:
    """Stands in for ``tfutil.Network`` while unpickling: keeps the state dict as it is."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _numpy_global(module: str, name: str) -> Any:
    """The numpy object an allowed global names, from wherever this numpy keeps it."""
    where, attr = _NUMPY_GLOBALS[(module, name)]
    if where == "numpy":
        return getattr(np, attr)
    for package in ("numpy._core", "numpy.core"):  # numpy 2 first: numpy.core warns there
        try:
            return getattr(importlib.import_module(f"{package}.{where}"), attr)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this numpy ({np.__version__}) has no {module}.{name}")


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``tfutil.Network`` (to :class:`_PickledNetwork`) and a few numpy
    globals; anything else raises :class:`OfficialPickleError` before it is looked up."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NETWORK_CLASSES:
            return _PickledNetwork
        if (module, name) in _NUMPY_GLOBALS:
            return _numpy_global(module, name)
        top = module.split(".")[0]
        what = _FOREIGN_NETWORKS.get(top, "not an official ProGAN network pickle")
        raise OfficialPickleError(
            f"{self.path} refers to {module}.{name}: it is {what}. An official ProGAN pickle "
            "holds only tfutil.Network objects and numpy arrays; this file was refused "
            "without running anything in it"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise OfficialPickleError(
            f"{self.path} uses persistent ids (as PyTorch files do): it is not an official "
            "ProGAN network pickle"
        )


def _network(obj: Any, index: int, path: Path) -> OfficialNetwork:
    """Check one unpickled network's state and turn it into an :class:`OfficialNetwork`."""
    where = f"{path}: item {index} of (G, D, Gs)"
    if not isinstance(obj, _PickledNetwork) or not isinstance(getattr(obj, "state", None), dict):
        raise OfficialPickleError(
            f"{where} is a {type(obj).__name__}, not a tfutil.Network; this is not an "
            "official ProGAN network pickle"
        )
    state = obj.state
    if state.get("version") != 2:
        raise OfficialPickleError(
            f"{where} has a network state of version {state.get('version')!r} (keys "
            f"{sorted(state)[:8]}); only the official version-2 format is read. A Theano-era "
            "pickle must first be loaded and saved once with the official code (legacy.py)"
        )
    variables = state.get("variables")
    kwargs = state.get("static_kwargs")
    func = state.get("build_func_name")
    if not isinstance(variables, list | tuple) or not isinstance(kwargs, dict):
        raise OfficialPickleError(f"{where} has no variables list or static_kwargs dict")
    values: dict[str, np.ndarray] = {}
    for item in variables:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise OfficialPickleError(
                f"{where} has a variable entry {item!r:.80}, not (name, array)"
            )
        name, value = item
        value = np.asarray(value)
        if value.dtype.kind != "f":
            raise OfficialPickleError(f"{where}: variable {name} is {value.dtype}, not float")
        if not np.isfinite(value).all():
            raise OfficialPickleError(
                f"{path}: network {state.get('name')} (item {index} of (G, D, Gs)): variable "
                f"{name} holds NaN or inf; the file is damaged (download it again) or was saved "
                "after its training diverged"
            )
        values[name] = value
    return OfficialNetwork(
        name=str(state.get("name")),
        build_func_name=str(func),
        static_kwargs=dict(kwargs),
        variables=values,
        build_module_src=str(state.get("build_module_src") or ""),
        source=str(path),
    )


def read_official(path: str | Path) -> tuple[OfficialNetwork, OfficialNetwork, OfficialNetwork]:
    """Read an official ProGAN pickle: ``(G, D, Gs)`` as records, nothing executed.

    Args:
        path: The ``.pkl`` file.

    Returns:
        G, D and Gs (the generator's moving average, the one to generate with).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        OfficialPickleError: The file is damaged or truncated, refers to anything but
            ``tfutil.Network`` and numpy, or is not the official ``(G, D, Gs)`` of
            ``G_paper`` / ``D_paper`` networks; the message names what was found.
    """
    path = expand_path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: give the path of an official ProGAN pickle, e.g. "
            "karras2018iclr-celebahq-1024x1024.pkl (links in the README)"
        )
    kind = file_kind(path)
    if kind != "a pickle":
        torch_zip = " (as torch.save writes)" if kind == "a zip archive" else ""
        raise OfficialPickleError(
            f"{path} is {kind}{torch_zip}, not an official ProGAN pickle; give a training "
            "checkpoint as .ckpt, an export as .safetensors, an official network as the .pkl "
            "downloaded from the links in the README"
        )
    with path.open("rb") as file:
        try:
            obj = _RestrictedUnpickler(file, path).load()
        except OfficialPickleError:
            raise
        except _DAMAGED as err:
            size = path.stat().st_size
            raise OfficialPickleError(
                f"{path} ({size} bytes) is not a readable pickle, or is truncated "
                f"({type(err).__name__}: {err}); download it again"
            ) from None
    if not (isinstance(obj, tuple) and len(obj) == 3):
        found = f"a tuple of {len(obj)}" if isinstance(obj, tuple) else type(obj).__name__
        raise OfficialPickleError(
            f"{path} holds {found}, not the official (G, D, Gs) of tfutil.Network"
        )
    networks = tuple(_network(obj[i], i, path) for i in range(3))
    for net, kind in zip(networks, "GDG", strict=True):
        if net.build_func_name != BUILD_FUNCS[kind]:
            raise OfficialPickleError(
                f"{path}: network {net.name} is built by {net.build_func_name}, expected "
                f"{BUILD_FUNCS[kind]} (the official ProGAN networks); other build functions "
                "are not supported"
            )
    return networks  # type: ignore[return-value]
