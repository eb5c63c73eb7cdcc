"""Training throughput on this machine: images per second of the real training loop (data loading,
forward, loss, backward, AdamW) on synthetic photos, after warm-up, in fp32 and in bf16, with a fixed
matmul workload timed in the same run so figures can be scaled between machines. The loop runs with the
loss network as shipped (batch norms folded) and as before (unfolded), in alternating rounds, so the
speed-up is read from one run even on a machine whose speed drifts.

    python benchmarks/bench_train.py [--steps 40] [--rounds 4] [--loss-network folded unfolded] [--batch 16] ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from statistics import median
from unittest import mock

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import UnfoldedLoss, header, matmul_reference  # noqa: E402

from unetsr.core.precision import cpu_has_bf16  # noqa: E402
from unetsr.model.config import ModelConfig  # noqa: E402
from unetsr.training.loop import train  # noqa: E402
from unetsr.training.recipes import TrainConfig  # noqa: E402

WARMUP = 10
# The loss networks the loop can be timed with: as shipped, and as training ran before the fold.
LOSS_NETWORKS = {"folded": None, "unfolded": UnfoldedLoss}


def images_per_second(photos: tuple[str, ...], out: Path, precision: str, model: ModelConfig,
                      args: argparse.Namespace, cache_mb: int, loss_network: str) -> float:
    """Throughput over the steps after the first WARMUP, from the loop's own cumulative log."""
    cfg = TrainConfig(data=photos, out=str(out), steps=args.steps, batch=args.batch, crop=args.crop,
                      workers=args.workers, log_every=1, ckpt_every=10**9, precision=precision, cache_mb=cache_mb)
    if LOSS_NETWORKS[loss_network] is None:
        train(cfg, model)
    else:
        with mock.patch("unetsr.training.loop.PerceptualLoss", LOSS_NETWORKS[loss_network]):
            train(cfg, model)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    seconds = len(log) * args.batch / log[-1]["img_s"] - WARMUP * args.batch / log[WARMUP - 1]["img_s"]
    return (len(log) - WARMUP) * args.batch / seconds


def main() -> None:
    m = ModelConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=4, help="rounds of every configuration, in alternating order")
    p.add_argument("--loss-network", nargs="+", choices=tuple(LOSS_NETWORKS), default=list(LOSS_NETWORKS),
                   help="folded: as training runs it; unfolded: its batch norms left in (before the fold)")
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
        print("| precision | cache MB | loss network | round | train img/s | steps/s |\n|---|---:|---|---:|---:|---:|")
        rates: dict[tuple[str, int, str], list[float]] = {}
        for precision in args.precision:
            for cache_mb in args.cache_mb:
                # An untimed run first: the first run of a precision pays for oneDNN's kernel set-up.
                images_per_second(photos, Path(tmp) / f"warm-{precision}-{cache_mb}", precision, model, args,
                                  cache_mb, args.loss_network[0])
                for i in range(args.rounds):  # the order alternates (A B, B A, ...) so drift favours neither
                    for loss_network in args.loss_network[::(-1) ** i]:
                        rate = images_per_second(photos, Path(tmp) / f"run-{precision}-{cache_mb}-{loss_network}-{i}",
                                                 precision, model, args, cache_mb, loss_network)
                        rates.setdefault((precision, cache_mb, loss_network), []).append(rate)
                        print(f"| {precision} | {cache_mb} | {loss_network} | {i + 1} | {rate:.1f} | "
                              f"{rate / args.batch:.2f} |", flush=True)
        print(f"\n| precision | cache MB | loss network | median img/s | vs {args.loss_network[0]} |\n|---|---:|---|---:|---:|")
        for (precision, cache_mb, loss_network), values in rates.items():
            first = median(rates[(precision, cache_mb, args.loss_network[0])])
            print(f"| {precision} | {cache_mb} | {loss_network} | {median(values):.1f} | {median(values) / first:.2f}× |")
    print(f"reference again: float32 matmul {matmul_reference():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
