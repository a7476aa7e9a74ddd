"""``progan-import``: convert an official ProGAN pickle's generator into this project's export.

progan-import karras2018iclr-celebahq-1024x1024.pkl [OUT.safetensors]

Writes ``Gs`` (the official generator's moving average) as ``OUT.safetensors`` + ``OUT.json``
(default: beside the pickle, with its name), which ``progan-generate``, ``progan-evaluate``
and ``progan_lightning.load_generator`` then read without the pickle.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from progan_lightning.cli.errors import user_errors
from progan_lightning.export import export_generator
from progan_lightning.official import load_official_generator


@user_errors
def main(argv: list[str] | None = None) -> None:
    """Command line: export ``Gs`` of an official pickle."""
    parser = argparse.ArgumentParser(
        prog="progan-import",
        description="progan-import: convert the generator (Gs) of an official ProGAN pickle\n"
        "into a progan-lightning export (.safetensors + .json) that progan-generate,\n"
        "progan-evaluate and progan_lightning.load_generator read. Nothing in the pickle\n"
        "is run.",
        epilog="Examples:\n"
        "  progan-import karras2018iclr-celebahq-1024x1024.pkl\n"
        "  progan-import karras2018iclr-celebahq-1024x1024.pkl celebahq.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pickle", type=Path, help="official network pickle (.pkl)")
    parser.add_argument(
        "out", type=Path, nargs="?", default=None, help="default: <pickle>.safetensors"
    )
    args = parser.parse_args(argv)
    G = load_official_generator(args.pickle)
    out = args.pickle.with_suffix(".safetensors") if args.out is None else args.out
    weights, arch = export_generator(G, out, G.trained_stage, G.trained_alpha)
    print(f"wrote {weights} and {arch}")


if __name__ == "__main__":
    main()
