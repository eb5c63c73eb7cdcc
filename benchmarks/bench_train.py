"""Training throughput on this machine: images per second of the real training loop (data loading,
forward, loss, backward, AdamW) on synthetic photos, after warm-up, in fp32 and in bf16, with a fixed
matmul workload timed in the same run so figures can be scaled between machines.

    python benchmarks/bench_train.py [--steps 40] [--batch 16] [--crop 96] [--widths ...] [--blocks ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import header, matmul_reference  # noqa: E402

from unetsr.core.precision import cpu_has_bf16  # noqa: E402
from unetsr.model.config import ModelConfig  # noqa: E402
from unetsr.training.loop import train  # noqa: E402
from unetsr.training.recipes import TrainConfig  # noqa: E402

WARMUP = 10


def images_per_second(photos: tuple[str, ...], out: Path, precision: str, model: ModelConfig,
                      args: argparse.Namespace, cache_mb: int) -> float:
    """Throughput over the steps after the first WARMUP, from the loop's own cumulative log."""
    cfg = TrainConfig(data=photos, out=str(out), steps=args.steps, batch=args.batch, crop=args.crop,
                      workers=args.workers, log_every=1, ckpt_every=10**9, precision=precision, cache_mb=cache_mb)
    train(cfg, model)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    seconds = len(log) * args.batch / log[-1]["img_s"] - WARMUP * args.batch / log[WARMUP - 1]["img_s"]
    return (len(log) - WARMUP) * args.batch / seconds


def main() -> None:
    m = ModelConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--widths", type=int, nargs=5, default=list(m.widths))
    p.add_argument("--blocks", type=int, nargs=5, default=list(m.blocks))
    p.add_argument("--block-convs", type=int, default=m.block_convs)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"] if cpu_has_bf16() else ["fp32"])
    p.add_argument("--photos", nargs="+", metavar="DIR",
                   help="train on these photo folders (default: 8 synthetic 800×600 photos, which every cache holds)")
    p.add_argument("--cache-mb", type=int, nargs="+", default=[TrainConfig(data=(), out="").cache_mb],
                   help="decoded-photo cache sizes to compare (e.g. 1024 4096: the old and the new default)")
    args = p.parse_args()
    model = ModelConfig(widths=tuple(args.widths), blocks=tuple(args.blocks), block_convs=args.block_convs,
                        backbone="random")
    print(header())
    print(f"model widths {list(model.widths)} blocks {list(model.blocks)} block_convs {model.block_convs}; "
          f"batch {args.batch}, crop {args.crop}, {args.workers} loader worker(s); {args.steps} steps, "
          f"the first {WARMUP} not timed; includes data loading, not process start-up or model building")
    print(f"reference: float32 matmul {matmul_reference():.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        photos: tuple[str, ...] = tuple(args.photos or ())
        if not photos:
            folder = Path(tmp) / "photos"
            folder.mkdir()
            rng = np.random.default_rng(0)
            for i in range(8):
                Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(folder / f"{i}.png")
            photos = (str(folder),)
        print(f"photos: {' '.join(photos)}")
        print("| precision | cache MB | train img/s | steps/s |\n|---|---:|---:|---:|")
        for precision in args.precision:
            for cache_mb in args.cache_mb:
                rate = images_per_second(photos, Path(tmp) / f"run-{precision}-{cache_mb}", precision, model, args,
                                         cache_mb)
                print(f"| {precision} | {cache_mb} | {rate:.1f} | {rate / args.batch:.2f} |", flush=True)
    print(f"reference again: float32 matmul {matmul_reference():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
