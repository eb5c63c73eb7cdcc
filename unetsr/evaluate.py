"""`python -m unetsr.evaluate`: makes LR from each HR photo, upscales it with the model and with
bilinear, bicubic and Lanczos, and prints PSNR-Y, SSIM-Y, LPIPS (when available) and speed.

Only the table goes to stdout (`--format md|csv|json`); the progress bar, the run's description and
any notes go to stderr, so `python -m unetsr.evaluate ... > scores.md` keeps the table alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from unetsr.cli import DEFAULT_TILE, fail, int_in, one_line, positive_int, prog_name
from unetsr.core.errors import UnetsrError, first_line
from unetsr.core.precision import PRECISIONS
from unetsr.evaluation.benchmark import (
    FORMATS,
    MODEL_ROW,
    evaluate,
    format_table,
    lpips_metric,
)
from unetsr.imaging.resize import LR_KERNELS

if TYPE_CHECKING:  # torch is imported only once the command line has been parsed (fast --help)

    from unetsr.inference.upscaler import Upscaler

PROG = "unetsr.evaluate"
def build_parser() -> argparse.ArgumentParser:
    """The command line; parsing it imports nothing heavy."""
    p = argparse.ArgumentParser(
        prog=prog_name("evaluate"),
        description="Score a unetsr model against bilinear, bicubic and Lanczos on folders of photos: "
                    "PSNR-Y, SSIM-Y, LPIPS and seconds per output megapixel.",
        epilog="Only the table goes to stdout; the progress bar and notes go to stderr.")
    p.add_argument("--hr", nargs="+", required=True, metavar="FOLDER", help="folder(s) of high-resolution photos")
    p.add_argument("--checkpoint", metavar="PATH", help="unetsr checkpoint (default: the shipped model)")
    p.add_argument("--scale", type=int_in(2, 16), metavar="S", help="upscaling factor (default: the model's)")
    p.add_argument("--tile", type=int_in(0), default=DEFAULT_TILE, metavar="N",
                   help="tile size for the model in LR pixels, 0 for none (default: %(default)s)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="evaluate only the first N photos (sorted)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the model's number format; auto: bf16 on CPUs with native bf16, else fp32 "
                        "(default: %(default)s)")
    p.add_argument("--ensemble", action="store_true",
                   help="the model averaged over the 8 flips and transposes of each photo (8x the time)")
    p.add_argument("--degrade", choices=("none", "jpeg"), default="none",
                   help="jpeg: save each LR as a JPEG (4:2:0, Pillow) at --quality before upscaling (default: %(default)s)")
    p.add_argument("--quality", type=int_in(1, 100), default=75, metavar="Q",
                   help="JPEG quality for --degrade jpeg (default: %(default)s)")
    p.add_argument("--lr-kernel", choices=LR_KERNELS, default="bicubic",
                   help="how the LR is made: bicubic is the protocol; the others test LR made by other "
                        "downscalers (antialiased, PIL) (default: %(default)s)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--format", choices=FORMATS, default="md", help="table format on stdout (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _rows(models: Upscaler | dict[str, Upscaler]) -> dict[str, Upscaler]:
    return models if isinstance(models, dict) else {MODEL_ROW: models}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: the table on stdout; 1 with one line on stderr on a bad checkpoint, folder or photo."""
    args = build_parser().parse_args(argv)
    import torch  # noqa: PLC0415 - after parsing, so that --help is fast

    from unetsr.inference.choice import (  # noqa: PLC0415
        choose_for_quality,
        installed,
        model_scale,
        shipped_upscaler,
    )
    from unetsr.inference.upscaler import Upscaler  # noqa: PLC0415
    from unetsr.training.data import find_images  # noqa: PLC0415

    skipped: list[Path] = []
    quality = args.quality if args.degrade == "jpeg" else 0
    lr_text = f"antialiased {args.lr_kernel} (PIL), rounded to 8 bits" + (f", saved as JPEG q{quality} 4:2:0" if quality else "")

    def skip(path: Path, exc: UnetsrError) -> None:
        skipped.append(path)
        print(f"{PROG}: skipped: {one_line(first_line(exc))}", file=sys.stderr)

    try:
        options = dict(device="cpu", precision=args.precision, tile=args.tile or None, ensemble=args.ensemble)
        if args.checkpoint:
            upscaler = Upscaler.from_checkpoint(args.checkpoint, **options)
            models: Upscaler | dict[str, Upscaler] = upscaler
        else:  # the shipped models: each one that can serve this scale, the one `infer` would pick first
            chosen = choose_for_quality(args.scale or 2, quality or None).name
            names = [chosen] + [n for n in installed() if n != chosen and (args.scale or 2) >= model_scale(n)]
            models = {f"{MODEL_ROW} {n}": shipped_upscaler(name=n, **options) for n in names}
            upscaler = next(iter(models.values()))
            models = models if len(models) > 1 else upscaler
        paths = find_images(args.hr)[: args.limit]
        if not paths:
            raise FileNotFoundError(f"no images in {' '.join(args.hr)}")
        scale = args.scale or upscaler.scale
        lpips_fn, note = ((None, "LPIPS n/a: skipped (--no-lpips)") if args.no_lpips
                          else lpips_metric(say=lambda text: print(f"{PROG}: {text}", file=sys.stderr, flush=True)))
        rows = evaluate(models, paths, scale, lpips_fn, progress=not args.quiet, on_error=skip, quality=quality,
                        kernel=args.lr_kernel)
    except (UnetsrError, OSError) as exc:
        return fail(PROG, first_line(exc))
    except KeyboardInterrupt:
        return fail(PROG, "interrupted", 130)
    if not rows:
        return fail(PROG, f"none of the {len(paths)} photos could be read")
    count = len(paths) - len(skipped)
    threads = torch.get_num_threads()
    photos = f"{count} photo{'s' * (count != 1)}" + (f" ({len(skipped)} skipped)" if skipped else "")
    print(f"{photos}, x{scale}, LR by {lr_text}, border of {scale} px shaved, "
          f"model in {upscaler.precision}{upscaler.ensemble_note} on {threads} CPU threads; "
          f"{', '.join(f'{row}: {m.passes_for(scale)} pass(es)' for row, m in _rows(models).items())}",
          file=sys.stderr, flush=True)
    info = {"photos": count, "skipped": [str(p) for p in skipped], "scale": scale, "shave": scale,
            "lr": lr_text, "lr_kernel": args.lr_kernel, "jpeg_quality": quality or None, "threads": threads,
            "precision": upscaler.precision, "ensemble": args.ensemble, "checkpoint": args.checkpoint or "shipped",
            "lpips_note": note or None}
    print(format_table(rows, args.format, info), flush=True)
    if note:  # after the table, once, as a footnote to its LPIPS column
        print(f"{PROG}: {note}", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
