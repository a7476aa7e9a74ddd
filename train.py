"""Train a progressive GAN: ``python train.py [experiment=...] [key=value ...]``.

The same command as ``progan-train`` (:mod:`progan_lightning.cli.train`), run from a
checkout; like every command it loads ``.env`` (W&B keys, cache paths) if present
(:mod:`progan_lightning.cli.env`).
"""

from progan_lightning.cli.train import main

if __name__ == "__main__":
    main()
