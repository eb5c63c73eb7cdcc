"""Photos that a camera or editor sharpened, then saved as high-quality JPEGs: does a model draw halos on
them, and which model should `infer` pick for them?

For each HR photo: LR by the evaluation protocol (PIL bicubic), sharpened with an unsharp mask, saved as
a JPEG at each --quality; then upscaled by bicubic and by each of --models (shipped names or checkpoint
paths; default: the clean model for --scale and the JPEG model, as shipped). Prints mean PSNR-Y / SSIM-Y
against the unsharpened HR, the share of pixels drawn visibly outside the HR's local range
(`metrics.halo_y`: the outlines), how many photos each model scores below bicubic on, and which model
`infer` picks. Unsharpened JPEGs at the same qualities are the control.

    python benchmarks/bench_sharpened.py --hr ../shared/photos/val DIR/val [--scale 2] [--models x2 runs/X/last.pt=mine]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import header, sharpened_jpeg  # noqa: E402

from unetsr.evaluation.metrics import halo_y, psnr_y, ssim_y  # noqa: E402
from unetsr.imaging.photos import read_image  # noqa: E402
from unetsr.imaging.resize import make_lr, upscale_baseline  # noqa: E402
from unetsr.inference.choice import choose_for_quality, shipped_name_for, shipped_upscaler  # noqa: E402
from unetsr.inference.upscaler import Upscaler  # noqa: E402
from unetsr.model.checkpoint import SHIPPED  # noqa: E402
from unetsr.training.data import find_images  # noqa: E402


def scores(pred: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float, float]:
    """PSNR-Y, SSIM-Y (as evaluate scores them) and the halo share, with `scale` pixels shaved."""
    p, h = (torch.from_numpy(a).permute(2, 0, 1)[None].float() for a in (pred.clip(0, 1), hr))
    return psnr_y(p, h, scale).item(), ssim_y(p, h, scale).item(), halo_y(p, h, scale).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hr", nargs="+", required=True)
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--quality", type=int, nargs="+", default=[90, 95])
    p.add_argument("--models", nargs="+", metavar="NAME|PATH[=LABEL]",
                   help="shipped model names or checkpoints (default: the clean model for --scale, and x2_jpeg)")
    p.add_argument("--limit", type=int)
    p.add_argument("--precision", default="auto")
    args = p.parse_args()
    models: dict[str, Upscaler] = {}
    for spec in args.models or [shipped_name_for(args.scale), "x2_jpeg"]:
        path, _, label = spec.partition("=")
        models[label or path] = (shipped_upscaler(name=path, device="cpu", precision=args.precision)
                                 if path in SHIPPED else Upscaler.from_checkpoint(path, device="cpu",
                                                                                  precision=args.precision))
    paths = find_images(args.hr)[: args.limit]
    print(header())
    print(f"{len(paths)} photos, x{args.scale}, LR by PIL bicubic, unsharp mask radius 1.5 percent 120, JPEG 4:2:0; "
          f"{args.precision}; names are shipped models")
    print("| LR | method | PSNR-Y | SSIM-Y | halo pixels | photos below bicubic | infer picks |")
    print("|---|---|---:|---:|---:|---:|---|")
    for sharpen in (False, True):
        for q in args.quality:
            rows: dict[str, list[tuple[float, float, float]]] = {"bicubic": [], **{n: [] for n in models}}
            for path in paths:
                hr, lr = make_lr(read_image(path).rgb, args.scale)
                lr = sharpened_jpeg(lr, q, sharpen)
                size = (hr.shape[1], hr.shape[0])
                rows["bicubic"].append(scores(upscale_baseline(lr, size), hr, args.scale))
                for name, up in models.items():
                    rows[name].append(scores(up.upscale_array(lr, args.scale), hr, args.scale))
            base = [s[0] for s in rows["bicubic"]]
            picked = choose_for_quality(args.scale, q).name
            for name, values in rows.items():
                below = sum(v[0] < b for v, b in zip(values, base)) if name != "bicubic" else "-"
                label = f"{'sharpened, ' if sharpen else ''}JPEG q{q}"
                mean = np.mean(values, axis=0)
                print(f"| {label} | {name} | {mean[0]:.2f} | {mean[1]:.4f} | {mean[2]:.2%} | {below} | "
                      f"{'yes' if name == picked else ''} |", flush=True)


if __name__ == "__main__":
    main()
