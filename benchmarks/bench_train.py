"""Training throughput on this machine: images per second at the default crop and batch, measured
over steps of the real training loop on synthetic photos (after warm-up).

    python benchmarks/bench_train.py [--steps 30] [--batch 16] [--crop 96]
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

from common import header  # noqa: E402
from unetsr.config import ModelConfig  # noqa: E402
from unetsr.train import TrainConfig, train  # noqa: E402


def main() -> None:
    d = TrainConfig(data=(), out="")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--crop", type=int, default=d.crop)
    p.add_argument("--workers", type=int, default=d.workers)
    args = p.parse_args()
    print(header())
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(photos / f"{i}.png")
        cfg = TrainConfig(data=(str(photos),), out=str(Path(tmp) / "run"), steps=args.steps, batch=args.batch,
                          crop=args.crop, workers=args.workers, log_every=1, ckpt_every=10**9)
        train(cfg, ModelConfig(backbone="random"))
        log = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    # img_s is cumulative since the start; the last value, minus the first 10 warm-up steps, is the rate.
    rate_all = log[-1]["img_s"]
    warm = log[9]["img_s"]
    steps_after = len(log) - 10
    seconds = len(log) * args.batch / rate_all - 10 * args.batch / warm
    print(f"\nbatch {args.batch}, crop {args.crop}, {args.workers} loader worker(s), default model "
          f"(ModelConfig()), CPU float32")
    print(f"training throughput: {steps_after * args.batch / seconds:.1f} images/s "
          f"({steps_after / seconds:.2f} steps/s) over {steps_after} steps after 10 warm-up steps")


if __name__ == "__main__":
    main()
