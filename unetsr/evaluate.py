"""`python -m unetsr.evaluate`: makes LR from each HR photo, upscales it with the model and with
bilinear, bicubic and Lanczos, and prints PSNR-Y, SSIM-Y, LPIPS (when available) and speed.

Only the table goes to stdout (`--format md|csv|json`); the progress bar, the run's description and
any notes go to stderr, so `python -m unetsr.evaluate ... > scores.md` keeps the table alone.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cli import DEFAULT_TILE, fail, int_in, one_line, positive_int, prog_name
from .errors import ImageError, UnetsrError, first_line
from .lowres import LR_KERNELS

if TYPE_CHECKING:  # torch is imported only once the command line has been parsed (fast --help)
    import numpy as np
    import torch

    from .upscaler import Upscaler

PROG = "unetsr.evaluate"
FORMATS = ("md", "csv", "json")
MODEL_ROW = "unetsr"
"""The name of the model's row; the other rows are lowres.BASELINES in their order."""

Metric = Callable[["torch.Tensor", "torch.Tensor"], float]
"""A per-image distance between a prediction and its target, (1, 3, H, W) tensors in [0, 1]."""


@dataclass(frozen=True)
class Row:
    """One method's mean scores over the photos."""

    method: str
    psnr: float
    ssim: float
    lpips: float | None
    seconds_per_mp: float


def min_side(scale: int) -> int:
    """The smallest HR side that can be scored at `scale`: SSIM's 11-pixel window after the border shave."""
    return max(11 + 2 * scale, 8 * scale)


def lpips_metric() -> tuple[Metric | None, str]:
    """LPIPS (AlexNet) as a function, or None with the one-line reason it is unavailable (e.g. offline).

    Anything lpips or torchvision print while loading (a "Downloading ..." line) goes to stderr, so that
    stdout holds the table alone.
    """
    import torch  # noqa: PLC0415 - heavy, and only after parsing

    try:
        import lpips  # noqa: PLC0415 - optional, heavy

        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore", UserWarning)  # lpips uses torchvision's deprecated `pretrained=`
            net = lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception as exc:  # noqa: BLE001 - any failure only means "no LPIPS column"
        return None, f"{type(exc).__name__}: {one_line(first_line(exc))}"

    def score(pred: torch.Tensor, target: torch.Tensor) -> float:
        with torch.no_grad():
            return net(pred * 2 - 1, target * 2 - 1).mean().item()

    return score, ""


def score_photo(upscaler: Upscaler | dict[str, Upscaler], hr_rgb: np.ndarray, scale: int,
                lpips_fn: Metric | None = None, quality: int = 0,
                kernel: str = "bicubic") -> dict[str, tuple[float, float, float | None, float, float]]:
    """Each method's (PSNR-Y, SSIM-Y, LPIPS, seconds, output MP) on one HR photo (float H×W×3 in [0, 1]),
    its LR made with `kernel` (lowres.LR_KERNELS) and saved as a JPEG at `quality` first if that is > 0.

    `upscaler` is one model (the row MODEL_ROW) or several by row name (e.g. the x4 model and the x2 twice).
    """
    import torch  # noqa: PLC0415

    from .lowres import BASELINES, make_lr, upscale_baseline  # noqa: PLC0415
    from .metrics import psnr_y, ssim_y  # noqa: PLC0415

    def batch(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]

    hr, lr = make_lr(hr_rgb, scale, quality, kernel)
    size = (hr.shape[1], hr.shape[0])
    outputs: dict[str, tuple[torch.Tensor, float]] = {}
    for name in BASELINES:
        start = time.perf_counter()
        up = upscale_baseline(lr, size, name)
        outputs[name] = (batch(up), time.perf_counter() - start)
    models = upscaler if isinstance(upscaler, dict) else {MODEL_ROW: upscaler}
    for row, model in models.items():
        start = time.perf_counter()
        pred = model.upscale_tensor(batch(lr), outscale=scale)
        outputs[row] = (pred, time.perf_counter() - start)
        if tuple(pred.shape[-2:]) != (hr.shape[0], hr.shape[1]):
            raise ValueError(f"the model made {tuple(pred.shape[-2:])} from LR {lr.shape[:2]}, expected {hr.shape[:2]}")
    target, megapixels = batch(hr), hr.shape[0] * hr.shape[1] / 1e6
    return {name: (psnr_y(out, target, scale).item(), ssim_y(out, target, scale).item(),
                   lpips_fn(out, target) if lpips_fn else None, seconds, megapixels)
            for name, (out, seconds) in outputs.items()}


def evaluate(upscaler: Upscaler | dict[str, Upscaler], paths: Sequence[Path], scale: int, lpips_fn: Metric | None = None, *,
             progress: bool = False, on_error: Callable[[Path, UnetsrError], None] | None = None,
             quality: int = 0, kernel: str = "bicubic") -> list[Row]:
    """Mean scores per method over the photos: bilinear, bicubic, Lanczos and the model (in that order).

    Photos are read with images.read_image (16-bit kept) and their LR made by lowres.make_lr with
    `kernel` (saved as JPEG at `quality` if > 0, the compressed inputs people have). A photo
    that cannot be read or is too small raises ImageError, or is passed to `on_error` and left out.
    """
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from .images import read_image  # noqa: PLC0415

    for model in (upscaler.values() if isinstance(upscaler, dict) else [upscaler]):
        model.upscale_tensor(torch.zeros(1, 3, 32, 32), outscale=scale)  # warm-up: first calls are slow
    scores: dict[str, list[tuple[float, float, float | None, float, float]]] = {}
    for path in tqdm(paths, desc="evaluating", unit="photo", file=sys.stderr, disable=not progress):
        try:
            rgb = read_image(path).rgb
            if min(rgb.shape[:2]) < min_side(scale):
                raise ImageError(f"{path}: {rgb.shape[1]}×{rgb.shape[0]} is too small to score at x{scale} "
                                 f"(at least {min_side(scale)} px a side)")
        except ImageError as exc:
            if on_error is None:
                raise
            on_error(path, exc)
            continue
        for name, values in score_photo(upscaler, rgb, scale, lpips_fn, quality, kernel).items():
            scores.setdefault(name, []).append(values)
    rows = []
    for name, values in scores.items():
        psnr, ssim, lp, seconds, megapixels = zip(*values)
        rows.append(Row(name, float(np.mean(psnr)), float(np.mean(ssim)),
                        None if lp[0] is None else float(np.mean(lp)), sum(seconds) / sum(megapixels)))
    return rows


def format_table(rows: Sequence[Row], fmt: str = "md", info: dict[str, Any] | None = None) -> str:
    """The rows as an aligned Markdown table, CSV, or JSON (with `info` about the run beside the rows).

    LPIPS reads n/a in Markdown, is empty in CSV and null in JSON when it could not be computed.
    """
    if fmt == "json":
        return json.dumps({**(info or {}), "rows": [asdict(r) for r in rows]}, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["method", "psnr_y_db", "ssim_y", "lpips", "seconds_per_output_mp"])
        for r in rows:
            writer.writerow([r.method, f"{r.psnr:.4f}", f"{r.ssim:.5f}",
                             "" if r.lpips is None else f"{r.lpips:.5f}", f"{r.seconds_per_mp:.5f}"])
        return out.getvalue().rstrip("\n")
    if fmt != "md":
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    header = ["method", "PSNR-Y (dB)", "SSIM-Y", "LPIPS", "s / output MP"]
    cells = [[r.method, f"{r.psnr:.2f}", f"{r.ssim:.4f}", "n/a" if r.lpips is None else f"{r.lpips:.4f}",
              f"{r.seconds_per_mp:.3f}"] for r in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                 for i, (v, w) in enumerate(zip(values, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *map(line, cells)])


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
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
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

    from .data import find_images  # noqa: PLC0415
    from .models import choose_for_quality, installed, model_scale, shipped_upscaler  # noqa: PLC0415
    from .upscaler import Upscaler  # noqa: PLC0415

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
        lpips_fn, note = (None, "skipped (--no-lpips)") if args.no_lpips else lpips_metric()
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
          f"model in {upscaler.precision}{upscaler.mode} on {threads} CPU threads; "
          f"{', '.join(f'{row}: {m.passes_for(scale)} pass(es)' for row, m in _rows(models).items())}",
          file=sys.stderr, flush=True)
    info = {"photos": count, "skipped": [str(p) for p in skipped], "scale": scale, "shave": scale,
            "lr": lr_text, "lr_kernel": args.lr_kernel, "jpeg_quality": quality or None, "threads": threads,
            "precision": upscaler.precision, "ensemble": args.ensemble, "checkpoint": args.checkpoint or "shipped",
            "lpips_note": note or None}
    print(format_table(rows, args.format, info), flush=True)
    if note:  # after the table, as a footnote to its LPIPS column
        print(f"LPIPS n/a: {note}", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
