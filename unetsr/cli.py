"""What every command-line front shares: argparse number types with ranges, and one-line errors.

Each `python -m unetsr.X` parses with these types, so a bad number is refused by argparse with a usage
line and exit status 2 before anything heavy is imported or any file is touched.
"""

from __future__ import annotations

import argparse
import sys

from unetsr.core.errors import one_line
from unetsr.core.values import float_in, int_in, positive_int  # noqa: F401 - the commands import them from here
from unetsr.inference.tiles import DEFAULT_TILE, DEFAULT_TILE_OVERLAP


def fail(prog: str, message: object, status: int = 1) -> int:
    """Print `prog: error: message` as one line on stderr; returns `status` for `main` to return."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return status


def prog_name(module: str) -> str:
    """The name for usage lines: `unetsr-X` when run as that console script, else `python -m unetsr.<module>`."""
    script = sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else ""
    script = script[:-4] if script.lower().endswith(".exe") else script
    return script if script.startswith("unetsr-") else f"python -m unetsr.{module}"



def add_tiling_arguments(parser: argparse.ArgumentParser) -> None:
    """--tile, --tile-overlap and --device, the same for every front that upscales (infer, serve)."""
    parser.add_argument("--tile", type=int_in(0), default=DEFAULT_TILE, metavar="N",
                        help=f"process in N×N tiles to bound memory; 0 = whole image at once (default {DEFAULT_TILE})")
    parser.add_argument("--tile-overlap", type=int_in(0), default=DEFAULT_TILE_OVERLAP, metavar="M",
                        help=f"context pixels around each tile (default {DEFAULT_TILE_OVERLAP})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                        help="default auto: cuda, then mps, then cpu")
