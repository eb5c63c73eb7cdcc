"""`python -m unetsr.export`: turns a training checkpoint into a compact release file.

Drops the optimiser state, optionally stores the weights as float16 (half the size), adds metadata, and
checks that the release model's outputs stay within a tolerance of the original's on real photos, so a
smaller file never silently means a worse model. Prints the file's SHA-256, which a shipped model records.
With a .onnx output (or --format onnx) it writes an ONNX model instead (unetsr.onnx_export), checked
against torch the same way.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .cli import fail, float_in, prog_name
from .errors import UnetsrError, first_line

if TYPE_CHECKING:  # torch is imported only once the arguments are good, so --help stays instant
    import numpy as np

    from .upscaler import Upscaler

TOLERANCE = 1 / 255
FORMATS = ("pt", "onnx")


@dataclass(frozen=True)
class Export:
    """What `export_checkpoint` wrote and how far its outputs are from the source model's."""

    path: Path
    sha256: str
    bytes: int
    max_abs_diff: float


def max_output_difference(a: Upscaler, b: Upscaler, images: Sequence[np.ndarray]) -> float:
    """Largest absolute difference between two upscalers' outputs (in [0, 1]) over `images` (H×W×3 float)."""
    return max(float(abs(a.upscale_array(image) - b.upscale_array(image)).max()) for image in images)


def check_images(paths: Sequence[Path], scale: int, seed: int = 0) -> list[np.ndarray]:
    """The LR of each photo at `paths` (as evaluation makes it), or a seeded random image when none are given."""
    import numpy as np

    from .images import read_image
    from .lowres import make_lr

    if paths:
        return [make_lr(read_image(p).rgb, scale)[1] for p in paths]
    return [np.random.default_rng(seed).integers(0, 256, (96, 128, 3)).astype(np.float32) / 255]


def export_checkpoint(src: str | Path, dst: str | Path, half: bool = True, meta: dict[str, Any] | None = None,
                      check: Sequence[Path] = (), tolerance: float = TOLERANCE, overwrite: bool = False) -> Export:
    """Write `src`'s model to `dst` without training state; UnetsrError if outputs move by more than `tolerance`.

    Compared in float32 on the CPU, so only the storage format is measured. `dst` is written atomically and
    only when the check passes; an existing `dst` is replaced only with `overwrite`, never `src` itself.
    """
    from .checkpoint import load_checkpoint, save_checkpoint
    from .fileio import pending, sha256_of, temporary_path
    from .images import same_file
    from .upscaler import Upscaler

    dst = Path(dst)
    if same_file(src, dst):
        raise UnetsrError(f"{dst} is the checkpoint being exported; choose another output file")
    if dst.exists() and not overwrite:
        raise UnetsrError(f"{dst} already exists; pass --overwrite to replace it")
    source = load_checkpoint(src)
    images = check_images(check, source.config.scale)
    with pending(temporary_path(dst)) as tmp:
        try:
            save_checkpoint(tmp, source.model, {**source.meta, **(meta or {})}, half=half)
            exported = load_checkpoint(tmp)
            upscalers = [Upscaler(c.model, device="cpu", precision="fp32", tile=512) for c in (source, exported)]
            diff = max_output_difference(*upscalers, images)
            if diff > tolerance:
                raise UnetsrError(f"exported outputs differ by {diff * 255:.2f}/255 (> {tolerance * 255:.2f}/255); "
                                  "export with --full to keep float32 weights")
            os.replace(tmp, dst)
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


def output_format(out: str | Path, chosen: str | None) -> str:
    """'onnx' or 'pt': `chosen` (--format) when given, else 'onnx' for a .onnx suffix (any case), else 'pt'."""
    return chosen or ("onnx" if Path(out).suffix.lower() == ".onnx" else "pt")


def build_parser() -> argparse.ArgumentParser:
    """The export command line."""
    p = argparse.ArgumentParser(prog=prog_name("export"), description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="training checkpoint, e.g. runs/x2/best.pt")
    p.add_argument("out", help="release file to write (a .onnx suffix writes ONNX)")
    p.add_argument("--format", choices=FORMATS, metavar="{pt,onnx}",
                   help="pt: a unetsr checkpoint; onnx: an ONNX model (opset 17, float32, for onnxruntime, "
                        "chaiNNer, vs-mlrt); default: onnx for a .onnx OUT, else pt")
    p.add_argument("--full", action="store_true",
                   help="keep float32 weights (default: float16 storage; ONNX is always float32)")
    p.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE", help="metadata to add or replace")
    p.add_argument("--check", nargs="*", default=[], metavar="DIR",
                   help="folder(s) of photos on whose LR outputs must stay within the tolerance "
                        "(default: one random image)")
    p.add_argument("--tolerance", type=float_in(0, 255, inclusive=False), default=TOLERANCE * 255, metavar="LEVELS",
                   help="largest output change allowed, in 8-bit levels (default: %(default)g)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints the SHA-256, size and output difference; 1 with one line on any failure."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        meta = parse_meta(args.meta)
        from .data import find_images

        options = dict(meta=meta, check=find_images(args.check) if args.check else (),
                       tolerance=args.tolerance / 255, overwrite=args.overwrite)
        if output_format(args.out, args.format) == "onnx":
            from .onnx_export import export_onnx

            result = export_onnx(args.checkpoint, args.out, **options)
        else:
            result = export_checkpoint(args.checkpoint, args.out, half=not args.full, **options)
    except (UnetsrError, OSError, ValueError) as exc:
        return fail(parser.prog, first_line(exc))
    print(f"{result.path}: {result.bytes / 1e6:.2f} MB, max output difference {result.max_abs_diff * 255:.3f}/255, "
          f"sha256 {result.sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
