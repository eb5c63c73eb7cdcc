"""Inference on the CPU: seconds per output megapixel at several sizes, and peak memory (RSS) while
upscaling to a 12-megapixel output with tiling. Each measurement runs in a fresh process.

    python benchmarks/bench_infer.py [--checkpoint PATH] [--tile 512]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import benchmark_model, header  # noqa: E402
from unetsr.upscaler import Upscaler  # noqa: E402


def measure(checkpoint: str | None, lr_h: int, lr_w: int, tile: int, repeats: int) -> dict:
    """Time one upscale of an lr_h×lr_w photo-like image (best of `repeats`) and the memory it took."""
    model, name = benchmark_model(checkpoint)
    up = Upscaler(model, device="cpu", tile=tile or None)
    rng = np.random.default_rng(0)
    arr = np.clip(rng.normal(0.5, 0.2, (lr_h, lr_w, 3)), 0, 1).astype(np.float32)
    up.upscale_array(arr[:64, :64])  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = up.upscale_array(arr)
        best = min(best, time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mp = out.shape[0] * out.shape[1] / 1e6
    return {"model": name, "out_mp": mp, "seconds": best, "s_per_mp": best / mp, "rss_before_mb": before,
            "peak_mb": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.checkpoint, *args.child[:2], args.tile, args.child[2])))
        return
    print(header())
    cases = [("0.25 MP out", 256, 256, 3), ("1 MP out", 512, 512, 2), ("4 MP out", 1024, 1024, 1),
             ("12 MP out (4240×2832)", 1416, 2120, 1)]
    rows = []
    for label, h, w, repeats in cases:
        cmd = [sys.executable, __file__, "--tile", str(args.tile), "--child", str(h), str(w), str(repeats)]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        result = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        rows.append((label, result))
    print(f"model: {rows[0][1]['model']}, tile {args.tile or 'off'}, x2, float32\n")
    print("| output | seconds | s / output MP | peak RSS (MB) | RSS before upscaling (MB) |")
    print("|---|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['seconds']:.2f} | {r['s_per_mp']:.3f} | {r['peak_mb']:.0f} | {r['rss_before_mb']:.0f} |")


if __name__ == "__main__":
    main()
