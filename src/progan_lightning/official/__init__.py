"""The official pretrained ProGAN networks (TensorFlow pickles), read and converted exactly,
without TensorFlow and without running anything in the file.

- :func:`load_official` ``(path) -> (G, D, G_ema)``: the project's networks from a pickle.
- :func:`read_official`: the pickle's three networks as plain records (:mod:`.reader`).
- :func:`example_latents`: the latents of the official ``import_example.py``.
"""

from progan_lightning.official.convert import load_official, load_official_generator
from progan_lightning.official.latents import example_latents
from progan_lightning.official.reader import OfficialNetwork, OfficialPickleError, read_official

__all__ = [
    "OfficialNetwork",
    "OfficialPickleError",
    "example_latents",
    "load_official",
    "load_official_generator",
    "read_official",
]
