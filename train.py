"""Train a progressive GAN: ``python train.py [experiment=...] [key=value ...]``.

The same command as ``progan-train`` (:mod:`progan_lightning.cli.train`), run from a
checkout; loads ``.env`` (W&B keys, cache paths) if present.
"""

from dotenv import load_dotenv

load_dotenv()

from progan_lightning.cli.train import main  # noqa: E402

if __name__ == "__main__":
    main()
