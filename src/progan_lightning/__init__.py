"""progan-lightning: Progressive Growing of GANs as a Lightning + Hydra application."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``progan_lightning.load_generator`` and ``load_official`` without importing torch at
    package import."""
    if name == "load_generator":
        from progan_lightning.export import load_generator

        return load_generator
    if name == "load_official":
        from progan_lightning.official import load_official

        return load_official
    raise AttributeError(f"module 'progan_lightning' has no attribute {name!r}")
