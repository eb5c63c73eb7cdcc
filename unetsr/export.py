"""`python -m unetsr.export`: turns a training checkpoint into a compact release file.

Drops the optimiser state, optionally stores the weights as float16 (half the size), adds metadata, and
checks that the release model's outputs stay within a tolerance of the original's on real photos, so a
smaller file never silently means a worse model. Prints the file's SHA-256, which a shipped model records.
With a .onnx output (or --format onnx) it writes an ONNX model instead (unetsr.inference.onnx_export), checked
against torch the same way. Check photos too small to say anything are skipped, one `warning:` line each.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from unetsr.cli import fail, float_in, prog_name
from unetsr.core.errors import UnetsrError, first_line, one_line
from unetsr.inference.release import (  # light: torch only when called
    TOLERANCE,
    export_checkpoint,
    parse_meta,
)

FORMATS = ("pt", "onnx")


def release_format(out: str | Path, chosen: str | None) -> str:
    """The kind of release file: 'onnx' or 'pt' (not an image format): `chosen` (--format) when given, else
    'onnx' for a .onnx suffix (any case), else 'pt'."""
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

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{parser.prog}: warning: {one_line(first_line(message))}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show  # skipped check photos, and any library warning: one line each
        return _export(args, parser)


def _export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The export once the arguments are parsed."""
    try:
        meta = parse_meta(args.meta)
        from unetsr.training.data import find_images

        options = dict(meta=meta, check=find_images(args.check) if args.check else (),
                       tolerance=args.tolerance / 255, overwrite=args.overwrite)
        if release_format(args.out, args.format) == "onnx":
            from unetsr.inference.onnx_export import export_onnx

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
