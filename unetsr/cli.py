"""What every command-line front shares: argparse number types with ranges, and one-line errors.

Each `python -m unetsr.X` parses with these types, so a bad number is refused by argparse with a usage
line and exit status 2 before anything heavy is imported or any file is touched.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable


def int_in(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [minimum, maximum]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {one_line(text)!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            span = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value
    parse.__name__ = "whole number"
    return parse


def float_in(minimum: float, maximum: float | None = None, *, inclusive: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number in [minimum, maximum] (or above `minimum` when not `inclusive`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {one_line(text)!r}") from None
        low_ok = value >= minimum if inclusive else value > minimum
        if not math.isfinite(value) or not low_ok or (maximum is not None and value > maximum):
            low = f"{'at least' if inclusive else 'greater than'} {minimum:g}"
            span = low if maximum is None else f"{low} and at most {maximum:g}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {one_line(text)[:40]}")
        return value
    parse.__name__ = "number"
    return parse


positive_int = int_in(1)
"""An argparse type: a whole number of at least 1."""


def one_line(text: object) -> str:
    """Text made safe for a one-line message: newlines and other control characters shown escaped."""
    s = str(text)
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in s)


def fail(prog: str, message: object, status: int = 1) -> int:
    """Print `prog: error: message` as one line on stderr; returns `status` for `main` to return."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return status


def prog_name(module: str) -> str:
    """The name for usage lines: `unetsr-X` when run as that console script, else `python -m unetsr.<module>`."""
    script = sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else ""
    script = script[:-4] if script.lower().endswith(".exe") else script
    return script if script.startswith("unetsr-") else f"python -m unetsr.{module}"



DEFAULT_TILE = 384
"""LR pixels per tile side: a 12 MP output peaks at 1.24 GB RSS in bf16 (1.40 GB with 512) on a 2-core
CPU, with no clear loss of speed (benchmarks/bench_infer.py; README, inference speed and memory)."""

DEFAULT_TILE_OVERLAP = 16
"""LR pixels of context around each tile: 13 % more pixels computed than kept at 4 MP (32: 27 %), tiled
outputs within 1.5/255 of untiled ones, PSNR-Y -0.0003 dB (benchmarks/bench_tiling.py; README)."""


def add_tiling_arguments(parser: argparse.ArgumentParser) -> None:
    """--tile, --tile-overlap and --device, the same for every front that upscales (infer, serve)."""
    parser.add_argument("--tile", type=int_in(0), default=DEFAULT_TILE, metavar="N",
                        help=f"process in N×N tiles to bound memory; 0 = whole image at once (default {DEFAULT_TILE})")
    parser.add_argument("--tile-overlap", type=int_in(0), default=DEFAULT_TILE_OVERLAP, metavar="M",
                        help=f"context pixels around each tile (default {DEFAULT_TILE_OVERLAP})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                        help="default auto: cuda, then mps, then cpu")
