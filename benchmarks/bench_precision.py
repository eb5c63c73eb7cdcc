"""bfloat16 against float32 inference with the shipped model on a folder of photos (x2, LR as evaluation
makes it, tile 512): the largest and mean output difference, the share of 8-bit values that change, and the
PSNR-Y / SSIM-Y change. Quality only; speed is bench_infer.py's.

    python benchmarks/bench_precision.py ../shared/photos/val [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import benchmark_model, header  # noqa: E402

from unetsr.evaluation.metrics import psnr_y, ssim_y  # noqa: E402
from unetsr.imaging.photos import read_image  # noqa: E402
from unetsr.imaging.resize import make_lr  # noqa: E402
from unetsr.inference.upscaler import Upscaler  # noqa: E402
from unetsr.training.data import find_images  # noqa: E402


def as_batch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))[None]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photos", nargs="+")
    p.add_argument("--checkpoint")
    args = p.parse_args()
    model, name = benchmark_model(args.checkpoint)
    ups = {k: Upscaler(model, device="cpu", precision=k, tile=512) for k in ("fp32", "bf16")}
    print(header())
    print(f"model: {name}, x{model.config.scale}\n")
    print("| photo | out MP | max diff (/255) | mean diff (/255) | 8-bit values changed | PSNR-Y fp32 | bf16 | SSIM-Y fp32 | bf16 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for path in find_images(args.photos):
        hr, lr = make_lr(read_image(path).rgb, model.config.scale)
        out = {k: up.upscale_array(lr) for k, up in ups.items()}
        diff = np.abs(out["bf16"] - out["fp32"])
        q = {k: np.round(np.clip(o, 0, 1) * 255) for k, o in out.items()}
        psnr = {k: psnr_y(as_batch(o), as_batch(hr), model.config.scale).item() for k, o in out.items()}
        ssim = {k: ssim_y(as_batch(o), as_batch(hr), model.config.scale).item() for k, o in out.items()}
        changed = float((q["bf16"] != q["fp32"]).mean())
        rows.append((diff.max() * 255, diff.mean() * 255, changed, psnr["bf16"] - psnr["fp32"], ssim["bf16"] - ssim["fp32"]))
        print(f"| {path.stem} | {hr.shape[0] * hr.shape[1] / 1e6:.2f} | {diff.max() * 255:.3f} | {diff.mean() * 255:.4f} "
              f"| {changed:.2%} | {psnr['fp32']:.3f} | {psnr['bf16']:.3f} | {ssim['fp32']:.5f} | {ssim['bf16']:.5f} |")
    r = np.array(rows)
    print(f"\nall: max {r[:, 0].max():.3f}/255, mean {r[:, 1].mean():.4f}/255, {r[:, 2].mean():.2%} of 8-bit values "
          f"changed, PSNR-Y {r[:, 3].mean():+.4f} dB (worst {r[:, 3].min():+.4f}), SSIM-Y {r[:, 4].mean():+.6f}")


if __name__ == "__main__":
    main()
