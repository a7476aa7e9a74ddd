"""The commands, together: each a thin Hydra (or argparse) main over library code.

| command | module | what it does |
|---|---|---|
| ``progan-train`` (``python train.py``) | :mod:`progan_lightning.cli.train` | train |
| ``progan-prepare`` | :mod:`progan_lightning.cli.prepare` | build the data cache |
| ``progan-generate`` | :mod:`progan_lightning.cli.generate` | images and interpolations |
| ``progan-export`` | :mod:`progan_lightning.cli.export` | checkpoint -> safetensors |
| ``progan-import`` | :mod:`progan_lightning.cli.import_official` | official .pkl -> safetensors |
| ``progan-bench`` | :mod:`progan_lightning.cli.bench` | the benchmark |
| ``progan-evaluate`` | :mod:`progan_lightning.cli.evaluate` | metrics; the reals' floor |

Every command reads ``.env`` (:mod:`progan_lightning.cli.env`): importing this package loads
it, and checks the folders it names, before any command composes its config. Nothing outside
this package imports it (library code never imports an entry point).
"""

from progan_lightning.cli.config import check_path_variables
from progan_lightning.cli.env import load_env
from progan_lightning.cli.errors import exit_with
from progan_lightning.faults import UserError

load_env()
try:
    check_path_variables()
except UserError as error:  # before any command composes its config
    exit_with(str(error))
