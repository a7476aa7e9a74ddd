"""Train a progressive GAN: ``python train.py [experiment=...] [key=value ...]``.

Loads ``.env`` (W&B keys, cache paths) if present, then runs the Hydra main.
"""

from dotenv import load_dotenv

load_dotenv()

from progan_lightning.train import main  # noqa: E402

if __name__ == "__main__":
    main()
