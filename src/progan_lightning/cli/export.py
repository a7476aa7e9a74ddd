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
    parser = argparse.ArgumentParser(description="Export G_ema of a training checkpoint.")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path, nargs="?", default=None)
    parser.add_argument("--allow-pickle", action="store_true", help="only for trusted files")
    args = parser.parse_args(argv)
    check_checkpoint_file(expand_path(args.checkpoint, "checkpoint"))
    weights, arch = export_checkpoint(args.checkpoint, args.out, args.allow_pickle)
    print(f"wrote {weights} and {arch}")


if __name__ == "__main__":
    main()
