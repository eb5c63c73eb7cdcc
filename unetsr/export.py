"""`python -m unetsr.export`: turns a training checkpoint into a compact release file.

Drops the optimiser state, optionally stores the weights as float16 (half the size), adds metadata, and
checks that the release model's outputs stay within a tolerance of the original's on real photos, so a
smaller file never silently means a worse model. Prints the file's SHA-256, which a shipped model records.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint, sha256_of
from .data import find_images, load_rgb, to_tensor
from .errors import UnetsrError, first_line
from .upscaler import Upscaler

TOLERANCE = 1 / 255


@dataclass(frozen=True)
class Export:
    """What `export_checkpoint` wrote and how far its outputs are from the source model's."""

    path: Path
    sha256: str
    bytes: int
    max_abs_diff: float


def max_output_difference(a: Upscaler, b: Upscaler, images: Sequence[np.ndarray]) -> float:
    """Largest absolute difference between two upscalers' outputs (in [0, 1]) over `images` (H×W×3 uint8)."""
    worst = 0.0
    for image in images:
        x = to_tensor(image).unsqueeze(0)
        worst = max(worst, (a.upscale_tensor(x) - b.upscale_tensor(x)).abs().max().item())
    return worst


def check_images(paths: Sequence[Path], seed: int = 0) -> list[np.ndarray]:
    """The photos at `paths`, or a seeded random image when none are given (a harsh stand-in)."""
    if paths:
        return [load_rgb(p) for p in paths]
    return [np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)]


def export_checkpoint(src: str | Path, dst: str | Path, half: bool = True, meta: dict[str, Any] | None = None,
                      check: Sequence[Path] = (), tolerance: float = TOLERANCE) -> Export:
    """Write `src`'s model to `dst` without training state; UnetsrError if outputs move by more than `tolerance`."""
    source = load_checkpoint(src)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.export")
    save_checkpoint(tmp, source.model, {**source.meta, **(meta or {})}, half=half)
    try:
        exported = load_checkpoint(tmp)
        upscalers = [Upscaler(c.model, device="cpu", tile=512) for c in (source, exported)]
        diff = max_output_difference(*upscalers, check_images(check))
        if diff > tolerance:
            raise UnetsrError(f"exported outputs differ by {diff * 255:.2f}/255 (> {tolerance * 255:.2f}/255); "
                              "export without --half")
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return Export(dst, sha256_of(dst), dst.stat().st_size, diff)


def parse_meta(items: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is read as JSON when it parses (numbers, lists), else kept as text."""
    meta: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--meta {item!r}: expected KEY=VALUE")
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return meta


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints the SHA-256, size and output difference; 1 with one line on any failure."""
    p = argparse.ArgumentParser(prog="python -m unetsr.export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="training checkpoint, e.g. runs/x2/best.pt")
    p.add_argument("out", help="release file to write")
    p.add_argument("--full", action="store_true", help="keep float32 weights (default: float16 storage)")
    p.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE", help="metadata to add or replace")
    p.add_argument("--check", nargs="*", default=[], metavar="DIR",
                   help="folder(s) of photos on which outputs must stay within 1/255 (default: one random image)")
    args = p.parse_args(argv)
    try:
        result = export_checkpoint(args.checkpoint, args.out, half=not args.full, meta=parse_meta(args.meta),
                                   check=find_images(args.check) if args.check else ())
    except (UnetsrError, OSError, ValueError) as exc:
        print(f"unetsr.export: error: {first_line(exc)}", file=sys.stderr)
        return 1
    print(f"{result.path}: {result.bytes / 1e6:.2f} MB, max output difference {result.max_abs_diff * 255:.3f}/255, "
          f"sha256 {result.sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
