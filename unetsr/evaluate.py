"""`python -m unetsr.evaluate`: makes LR from each HR photo, upscales it with the model and with
bilinear, bicubic and Lanczos, and prints PSNR-Y, SSIM-Y, LPIPS (when available) and speed."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .data import find_images, load_rgb, to_tensor
from .errors import UnetsrError, first_line
from .metrics import psnr_y, ssim_y
from .upscaler import Upscaler

CLASSIC = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


@dataclass(frozen=True)
class Row:
    """One method's mean scores over the photos."""

    method: str
    psnr: float
    ssim: float
    lpips: float | None
    seconds_per_mp: float


def make_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to a multiple of scale, its 8-bit LR by antialiased bicubic): the usual SR benchmark pair."""
    h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
    hr = hr[:h, :w]
    return hr, np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC))


def lpips_metric() -> tuple[Callable[[torch.Tensor, torch.Tensor], float] | None, str]:
    """LPIPS (AlexNet) as a function, or None with the reason it is unavailable (e.g. offline)."""
    try:
        import lpips  # noqa: PLC0415 - optional, heavy

        with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=`; not ours to fix
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception as exc:
        return None, f"{type(exc).__name__}: {first_line(exc)}"

    def score(pred: torch.Tensor, target: torch.Tensor) -> float:
        with torch.no_grad():
            return net(pred * 2 - 1, target * 2 - 1).mean().item()

    return score, ""


def evaluate(upscaler: Upscaler, paths: list[Path], scale: int,
             lpips_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None) -> list[Row]:
    """Mean scores per method over the photos: bilinear, bicubic, Lanczos and the model."""
    scores: dict[str, list[tuple[float, float, float | None, float, float]]] = {}
    for path in paths:
        hr, lr = make_lr(load_rgb(path), scale)
        target = to_tensor(hr)[None]
        size = (hr.shape[1], hr.shape[0])
        outputs: dict[str, tuple[torch.Tensor, float]] = {}
        for name, method in CLASSIC.items():
            start = time.perf_counter()
            up = Image.fromarray(lr).resize(size, method)
            outputs[name] = (to_tensor(np.asarray(up))[None], time.perf_counter() - start)
        start = time.perf_counter()
        pred = upscaler.upscale_tensor(to_tensor(lr)[None], outscale=scale)
        outputs["unetsr"] = (pred, time.perf_counter() - start)
        megapixels = hr.shape[0] * hr.shape[1] / 1e6
        for name, (pred, seconds) in outputs.items():
            lp = lpips_fn(pred, target) if lpips_fn else None
            scores.setdefault(name, []).append((psnr_y(pred, target, scale).item(),
                                                ssim_y(pred, target, scale).item(), lp, seconds, megapixels))
    rows = []
    for name, values in scores.items():
        p, s, lp, sec, mp = zip(*values)
        rows.append(Row(name, float(np.mean(p)), float(np.mean(s)),
                        None if lp[0] is None else float(np.mean(lp)), sum(sec) / sum(mp)))
    return rows


def format_table(rows: list[Row], lpips_note: str = "") -> str:
    """A Markdown table of the rows; the LPIPS column reads n/a when it could not be computed."""
    lines = ["| method | PSNR-Y (dB) | SSIM-Y | LPIPS | s / output MP |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lp = f"{r.lpips:.4f}" if r.lpips is not None else "n/a"
        lines.append(f"| {r.method} | {r.psnr:.2f} | {r.ssim:.4f} | {lp} | {r.seconds_per_mp:.3f} |")
    if lpips_note:
        lines.append(f"\nLPIPS n/a: {lpips_note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints the table; 1 with a one-line message on a bad checkpoint or folder."""
    p = argparse.ArgumentParser(prog="python -m unetsr.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="unetsr checkpoint (default: the shipped model)")
    p.add_argument("--hr", nargs="+", required=True, help="folder(s) of high-resolution photos")
    p.add_argument("--scale", type=int, help="upscaling factor (default: the model's)")
    p.add_argument("--tile", type=int, default=512, help="tile size for the model in LR pixels (0: none)")
    p.add_argument("--limit", type=int, help="evaluate only the first N photos")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    args = p.parse_args(argv)
    try:
        upscaler = Upscaler.from_checkpoint(args.checkpoint, device="cpu", tile=args.tile or None)
        paths = find_images(args.hr)[: args.limit]
        if not paths:
            raise FileNotFoundError(f"no images in {' '.join(args.hr)}")
        scale = args.scale or upscaler.scale
        lpips_fn, note = (None, "skipped (--no-lpips)") if args.no_lpips else lpips_metric()
        rows = evaluate(upscaler, paths, scale, lpips_fn)
    except (UnetsrError, OSError, ValueError) as exc:
        print(f"unetsr.evaluate: error: {first_line(exc)}", file=sys.stderr)
        return 1
    print(f"{len(paths)} photos, x{scale}, LR by antialiased bicubic, border of {scale} px shaved, "
          f"{torch.get_num_threads()} threads")
    print(format_table(rows, note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
