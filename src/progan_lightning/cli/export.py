"""``progan-export``: export G_ema of a training checkpoint (weights only).

progan-export CHECKPOINT.ckpt [OUT.safetensors] [--allow-pickle]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from progan_lightning.checkpoint import export_checkpoint
from progan_lightning.cli.errors import user_errors
from progan_lightning.export import check_checkpoint_file
from progan_lightning.fs import expand_path


@user_errors
def main(argv: list[str] | None = None) -> None:
    """Command line: export G_ema of a checkpoint."""
    parser = argparse.ArgumentParser(
        prog="progan-export",
        description="progan-export: write G_ema of a training checkpoint as a weights-only\n"
        "export (.safetensors + .json) that progan-generate, progan-evaluate and\n"
        "progan_lightning.load_generator read. A finished run has one already\n"
        "(generator.safetensors in its folder); this is for any other checkpoint.",
        epilog="Examples:\n"
        "  progan-export outputs/quickstart/runs/RUN/checkpoints/last.ckpt\n"
        "  progan-export RUN/checkpoints/last.ckpt g_last.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint (.ckpt)")
    parser.add_argument(
        "out", type=Path, nargs="?", default=None, help="default: <checkpoint>.safetensors"
    )
    parser.add_argument("--allow-pickle", action="store_true", help="only for trusted files")
    args = parser.parse_args(argv)
    checkpoint = expand_path(args.checkpoint, "checkpoint")  # the file checked is the one read
    check_checkpoint_file(checkpoint)
    weights, arch = export_checkpoint(checkpoint, args.out, args.allow_pickle)
    print(f"wrote {weights} and {arch}")


if __name__ == "__main__":
    main()
