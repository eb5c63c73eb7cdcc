"""Inference on the CPU: seconds per output megapixel at several sizes, in fp32, bf16 and through
onnxruntime (the `infer --runtime onnx` path), with what a whole `python -m unetsr.infer` run adds,
memory, and same-run references to scale the figures by.

    python benchmarks/bench_infer.py [--checkpoint PATH] [--tile 384] [--tile-overlap 16] [--precision fp32 bf16 onnx auto] [--quick]

Each size and precision runs in a fresh process. What each column includes:

- upscale s, s / output MP: `Upscaler.upscale_array` on an image already in memory, the model
  already loaded and warmed up (best of a few runs): the model's own speed.
- PIL bicubic s, x bicubic: PIL's bicubic upscale of the same image (8-bit RGB), same process; the
  ratio carries over between machines far better than seconds do.
- load s: reading the checkpoint and building the Upscaler (for onnx: also exporting it to ONNX in
  memory and opening the onnxruntime session, float32, onnxruntime's default threads).
- decode + encode s: `read_image` of the input PNG and `write_image` of the output PNG.
- end to end s: process start-up (a fresh interpreter importing torch and unetsr, measured once and
  shown above the table) + load + decode + upscale + encode: about what one
  `python -m unetsr.infer photo.png` costs.
- peak RSS: the whole child process, decode and encode included; before: RSS once the model is loaded.

Above and below the table, a fixed float32 matmul workload is timed (GFLOP/s): if your machine scores
half as much, or is busy with something else, expect roughly twice the seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (  # noqa: E402
    benchmark_model,
    bicubic_seconds,
    header,
    matmul_reference,
    photo_like_array,
)

from unetsr.core.precision import cpu_has_bf16  # noqa: E402
from unetsr.imaging.photos import read_image, write_image  # noqa: E402
from unetsr.inference.tiles import DEFAULT_TILE, DEFAULT_TILE_OVERLAP  # noqa: E402
from unetsr.inference.upscaler import Upscaler  # noqa: E402

CASES = [("0.25 MP out", 256, 256, 3), ("1 MP out", 512, 512, 2), ("4 MP out", 1024, 1024, 1),
         ("12 MP out (4240×2832)", 1416, 2120, 1)]
"""(label, LR height, LR width, timed repeats): x2 outputs of 0.25 to 12 megapixels."""


def rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(checkpoint: str | None, lr_h: int, lr_w: int, tile: int, overlap: int, repeats: int, precision: str) -> dict:
    """Time loading, one upscale of an lr_h×lr_w photo-like image (best of `repeats`), decode and encode."""
    start = time.perf_counter()
    model, name = benchmark_model(checkpoint)
    if precision == "onnx":  # the exported graph in onnxruntime, tiled by the same Upscaler as infer does
        from unetsr.inference.onnx_export import onnx_bytes
        from unetsr.inference.onnx_runtime import OnnxModel

        up = Upscaler(OnnxModel(onnx_bytes(model, {}), name=name), tile=tile or None, tile_overlap=overlap)
    else:
        up = Upscaler(model, device="cpu", precision=precision, tile=tile or None, tile_overlap=overlap)
    load = time.perf_counter() - start
    arr = photo_like_array(lr_h, lr_w)
    up.upscale_array(arr[:64, :64])  # warm-up
    before = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.png"
        Image.fromarray((arr * 255 + 0.5).astype(np.uint8)).save(source)
        start = time.perf_counter()
        picture = read_image(source)
        decode = time.perf_counter() - start
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            out = up.upscale_array(picture.rgb)
            best = min(best, time.perf_counter() - start)
        start = time.perf_counter()
        write_image(Path(tmp) / "out.png", replace(picture, rgb=out))
        encode = time.perf_counter() - start
    mp = out.shape[0] * out.shape[1] / 1e6
    return {"model": name, "precision": "onnxruntime fp32" if precision == "onnx" else up.precision,
            "out_mp": mp, "seconds": best, "s_per_mp": best / mp,
            "bicubic": bicubic_seconds(lr_h, lr_w, up.scale), "load": load, "decode_encode": decode + encode,
            "rss_before_mb": before, "peak_mb": rss_mb()}


def has_onnxruntime() -> bool:
    """True when onnxruntime and onnx can be imported (pip install -e '.[onnx]')."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def startup_seconds() -> float:
    """Wall time of a fresh interpreter that imports torch and unetsr's inference modules (best of 2)."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, unetsr.inference.upscaler, unetsr.imaging.photos, unetsr.infer"],
                       check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="checkpoint to measure (default: the shipped model)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"tile size in LR pixels, 0 for none (default: {DEFAULT_TILE}, infer's)")
    p.add_argument("--tile-overlap", type=int, default=DEFAULT_TILE_OVERLAP,
                   help=f"context pixels around each tile (default: {DEFAULT_TILE_OVERLAP}, infer's)")
    p.add_argument("--precision", nargs="+", choices=("fp32", "bf16", "onnx", "auto"),
                   default=(["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]) + (["onnx"] if has_onnxruntime() else []),
                   help="one row per size for each: torch fp32 or bf16, or onnx (onnxruntime, fp32) (default: fp32, "
                        "bf16 where the CPU has native bf16, and onnx where onnxruntime is installed)")
    p.add_argument("--quick", action="store_true", help="only the two smallest sizes")
    p.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-precision", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.checkpoint, *args.child[:2], args.tile, args.tile_overlap, args.child[2],
                                 args.child_precision)))
        return
    print(header())
    startup = startup_seconds()
    print(f"reference: float32 matmul {matmul_reference():.1f} GFLOP/s; process start-up (python, import torch "
          f"and unetsr) {startup:.2f} s", flush=True)
    rows = []
    for label, h, w, repeats in CASES[:2] if args.quick else CASES:
        for precision in args.precision:
            cmd = [sys.executable, __file__, "--tile", str(args.tile), "--tile-overlap", str(args.tile_overlap),
                   "--child", str(h), str(w), str(repeats),
                   "--child-precision", precision]
            if args.checkpoint:
                cmd += ["--checkpoint", args.checkpoint]
            rows.append((label, json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)))
    print(f"model: {rows[0][1]['model']}, tile {args.tile or 'off'}, overlap {args.tile_overlap}, x2\n")
    print("| output | precision | upscale s | s / output MP | PIL bicubic s | x bicubic | load s "
          "| decode + encode s | end to end s | peak RSS (MB) | RSS before (MB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        total = startup + r["load"] + r["decode_encode"] + r["seconds"]
        print(f"| {label} | {r['precision']} | {r['seconds']:.2f} | {r['s_per_mp']:.3f} | {r['bicubic']:.3f} "
              f"| {r['seconds'] / r['bicubic']:.0f} | {r['load']:.2f} | {r['decode_encode']:.2f} | {total:.2f} "
              f"| {r['peak_mb']:.0f} | {r['rss_before_mb']:.0f} |")
    print(f"\nreference again, after the table: float32 matmul {matmul_reference():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
