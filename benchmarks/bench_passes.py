"""One model pass against two for scales beyond the model's own: PSNR-Y, SSIM-Y and time of each, with a
final antialiased bicubic resize to the exact size, on centre crops of a folder of photos. What the
Upscaler's rule for extra passes (EXTRA_PASS_ABOVE) was chosen from.

    python benchmarks/bench_passes.py ../shared/photos/val --scales 2.01 3 3.5 4 [--crop 480] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import benchmark_model, header  # noqa: E402

from unetsr.evaluation.metrics import psnr_y, ssim_y  # noqa: E402
from unetsr.imaging.photos import read_image  # noqa: E402
from unetsr.imaging.resize import resize, upscale_baseline  # noqa: E402
from unetsr.inference.upscaler import Upscaler  # noqa: E402
from unetsr.training.data import find_images  # noqa: E402


def as_batch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))[None]


def centre(a: np.ndarray, crop: int) -> np.ndarray:
    h, w = a.shape[:2]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return a[top:top + crop, left:left + crop]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photos", nargs="+")
    p.add_argument("--scales", nargs="+", type=float, default=[2.01, 3.0, 3.5, 4.0])
    p.add_argument("--crop", type=int, default=480)
    p.add_argument("--checkpoint")
    args = p.parse_args()
    model, name = benchmark_model(args.checkpoint)
    up = Upscaler(model, device="cpu", tile=512)
    photos = [centre(read_image(path).rgb, args.crop) for path in find_images(args.photos)]
    print(header())
    print(f"model: {name}, {up.precision}, {len(photos)} photos (centre {args.crop} px crops), PSNR-Y (dB) / SSIM-Y\n")
    print("| scale | bicubic | 1 pass + bicubic | 2 passes + bicubic | time, 2 passes / 1 |")
    print("|---:|---:|---:|---:|---:|")
    with torch.inference_mode():
        for scale in args.scales:
            scores: dict[object, list[tuple[float, float]]] = {"bicubic": [], 1: [], 2: []}
            seconds = {1: 0.0, 2: 0.0}
            for hr in photos:
                h, w = hr.shape[:2]
                lr = np.round(np.clip(resize(hr, (round(w / scale), round(h / scale)), "bicubic"), 0, 1) * 255) / 255
                target, shave = as_batch(hr), math.ceil(scale)
                outputs = {"bicubic": as_batch(upscale_baseline(lr, (w, h), "bicubic"))}
                for passes in (1, 2):
                    start = time.perf_counter()
                    y = as_batch(lr)
                    for _ in range(passes):
                        y = up._run_tiled(y, False)
                    outputs[passes] = F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False,
                                                    antialias=True).clamp(0, 1)
                    seconds[passes] += time.perf_counter() - start
                for key, y in outputs.items():
                    scores[key].append((psnr_y(y, target, shave).item(), ssim_y(y, target, shave).item()))
            cells = [f"{np.mean([s[0] for s in v]):.2f} / {np.mean([s[1] for s in v]):.4f}" for v in scores.values()]
            print(f"| {scale:g} | {' | '.join(cells)} | {seconds[2] / seconds[1]:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
