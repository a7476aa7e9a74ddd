"""progan-lightning: Progressive Growing of GANs as a Lightning + Hydra application."""

__version__ = "0.1.0"
