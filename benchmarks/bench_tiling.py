"""Tiled against untiled inference on a folder of photos (LR as evaluation makes it): for each tile
overlap, the largest and mean output difference, the share of 8-bit values that change, the PSNR-Y
change, and the pixels computed per pixel kept. Quality and work only; speed is bench_infer.py's.

    python benchmarks/bench_tiling.py ../shared/photos/val [--checkpoint PATH] [--tile 96] [--overlaps 0 8 16 24 32]

Small tiles (the default 96 LR pixels) put far more seams in each photo than infer's 384 do, so the
differences here are an upper bound on what the default tiling changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_precision import as_batch  # noqa: E402
from common import benchmark_model, header  # noqa: E402

from unetsr.core.precision import PRECISIONS  # noqa: E402
from unetsr.evaluation.metrics import psnr_y  # noqa: E402
from unetsr.imaging.photos import read_image  # noqa: E402
from unetsr.imaging.resize import make_lr  # noqa: E402
from unetsr.inference.upscaler import Upscaler  # noqa: E402
from unetsr.training.data import find_images  # noqa: E402


def computed_per_kept(length: int, tile: int, overlap: int) -> float:
    """LR pixels the tiles compute along one side of `length`, per pixel kept."""
    starts = range(0, length, tile)
    return sum(min(length, s + tile + overlap) - max(0, s - overlap) for s in starts) / length


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photos", nargs="+")
    p.add_argument("--checkpoint")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--tile", type=int, default=96, help="LR pixels per tile side (default 96: many seams)")
    p.add_argument("--overlaps", type=int, nargs="+", default=[0, 8, 16, 24, 32])
    args = p.parse_args()
    model, name = benchmark_model(args.checkpoint)
    scale = model.config.scale
    whole = Upscaler(model, device="cpu", precision=args.precision)
    tiled = {m: Upscaler(model, device="cpu", precision=args.precision, tile=args.tile, tile_overlap=m)
             for m in args.overlaps}
    print(header())
    print(f"model: {name}, x{scale}, {whole.precision}, tile {args.tile}\n")
    print("| photo | overlap | max diff (/255) | mean diff (/255) | 8-bit values changed | PSNR-Y change (dB) |")
    print("|---|---:|---:|---:|---:|---:|")
    rows: dict[int, list[tuple[float, float, float, float]]] = {m: [] for m in args.overlaps}
    for path in find_images(args.photos):
        hr, lr = make_lr(read_image(path).rgb, scale)
        ref = whole.upscale_array(lr)
        ref_psnr = psnr_y(as_batch(ref), as_batch(hr), scale).item()
        for m, up in tiled.items():
            out = up.upscale_array(lr)
            diff = np.abs(out - ref)
            changed = float((np.round(np.clip(out, 0, 1) * 255) != np.round(np.clip(ref, 0, 1) * 255)).mean())
            change = psnr_y(as_batch(out), as_batch(hr), scale).item() - ref_psnr
            rows[m].append((diff.max() * 255, diff.mean() * 255, changed, change))
            print(f"| {path.stem} | {m} | {diff.max() * 255:.3f} | {diff.mean() * 255:.4f} | {changed:.3%} | {change:+.4f} |")
    print("\n| overlap | max diff (/255) | mean diff (/255) | 8-bit values changed | PSNR-Y change, mean (worst) "
          "| pixels computed per kept, 4 MP out, tile 384 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for m, r in ((m, np.array(v)) for m, v in rows.items()):
        work = computed_per_kept(1024, 384, m) ** 2
        print(f"| {m} | {r[:, 0].max():.3f} | {r[:, 1].mean():.4f} | {r[:, 2].mean():.3%} "
              f"| {r[:, 3].mean():+.4f} ({r[:, 3].min():+.4f}) | {work:.3f} |")


if __name__ == "__main__":
    main()
