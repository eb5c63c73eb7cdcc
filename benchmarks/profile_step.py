"""Where a training step's time goes on this machine: data (crop + LR, in the loader), the frozen encoder,
the decoder, the loss network on HR (no grad) and on SR, the backward pass, AdamW and the EMA. Each part
is timed on its own, after warm-up, with torch.profiler's top operators for the whole step beside them,
and the loss with its batch norms folded (as training runs it) against the same loss unfolded.

    python benchmarks/profile_step.py [--photos DIR ...] [--precision bf16] [--steps 20] [--batch 16]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import UnfoldedLoss, header, matmul_reference  # noqa: E402

from unetsr.core.precision import autocast, memory_format, resolve_precision  # noqa: E402
from unetsr.model.backbone import load_resnet18  # noqa: E402
from unetsr.model.config import ModelConfig  # noqa: E402
from unetsr.model.network import UNetSR  # noqa: E402
from unetsr.training.data import CropDataset, find_images  # noqa: E402
from unetsr.training.loop import update_ema  # noqa: E402
from unetsr.training.losses import PerceptualLoss  # noqa: E402
from unetsr.training.recipes import backbone_defaults  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Mean milliseconds of fn() over `repeats` calls after two warm-up calls."""
    for _ in range(2):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", nargs="+", metavar="DIR", help="photo folders (default: 8 synthetic 800×600 photos)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--scale", type=int, default=2)
    args = p.parse_args()
    device = torch.device("cpu")
    precision = resolve_precision(args.precision, device)
    fmt = memory_format(device)
    print(header())
    print(f"batch {args.batch}, HR crop {args.crop}, x{args.scale}, {precision}; mean of {args.steps} after warm-up")
    print(f"reference: float32 matmul {matmul_reference():.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        folders = args.photos
        if not folders:
            folders = [tmp]
            rng = np.random.default_rng(0)
            for i in range(8):
                Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(Path(tmp) / f"{i}.png")
        data = CropDataset(find_images(folders), args.crop, args.scale, seed=0, max_crop=args.crop,
                           downscalers=("bicubic",))
        items = iter(range(10**9))
        for i in range(len(data.paths)):  # fill the decoded-photo cache, as a long run has
            data[i]

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            lr, hr = zip(*(data[next(items)] for _ in range(args.batch)))
            return torch.stack(lr), torch.stack(hr)

        parts = {"data: crop + LR (one process)": timed(batch, args.steps)}
        torch.manual_seed(0)
        model_cfg = ModelConfig(scale=args.scale, backbone="random")
        backbone = load_resnet18("random", 0)
        model = UNetSR(model_cfg, backbone).to(memory_format=fmt).train()
        weights = backbone_defaults("random")
        loss_fn = PerceptualLoss(backbone, weights["w3"], weights["w6"], weights["w_l1"]).to(memory_format=fmt)
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        ema = copy.deepcopy(model).requires_grad_(False)
        lr, hr = (t.contiguous(memory_format=fmt) for t in batch())

        def encoder() -> None:
            with torch.no_grad(), autocast(device, precision):
                x = model.normalize(lr)
                for stage in model.encoder:
                    x = stage(x)

        def forward() -> torch.Tensor:
            with autocast(device, precision):
                return model(lr)

        def hr_features() -> None:
            with torch.no_grad(), autocast(device, precision):
                loss_fn.features(hr)

        sr = forward().detach().requires_grad_(True)

        def sr_loss() -> torch.Tensor:
            with autocast(device, precision):
                return loss_fn(sr, hr)[0]

        def sr_loss_backward() -> None:
            sr_loss().backward()

        # The same loss with the backbone's batch norms left in (as before they were folded), for comparison.
        unfolded = UnfoldedLoss(backbone, weights["w3"], weights["w6"], weights["w_l1"]).to(memory_format=fmt)

        def sr_loss_backward_unfolded() -> None:
            with autocast(device, precision):
                loss = unfolded(sr, hr)[0]
            loss.backward()

        def full_step() -> None:
            with autocast(device, precision):
                loss, _ = loss_fn(model(lr), hr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            update_ema(ema, model, 0.999)

        def optimiser() -> None:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

        full_step()  # gradients exist for optimiser()
        ms = {"encoder forward (frozen, LR)": timed(encoder, args.steps),
              "model forward (encoder + decoder)": timed(forward, args.steps),
              "loss network on HR (no grad)": timed(hr_features, args.steps),
              "loss on SR + HR, forward": timed(sr_loss, args.steps),
              "loss on SR + HR, forward + backward to SR": timed(sr_loss_backward, args.steps),
              # timed between two timings of the folded loss: a machine whose speed drifts shows it in those two
              "the same, batch norms not folded": timed(sr_loss_backward_unfolded, args.steps),
              "the same, folded (again, after)": timed(sr_loss_backward, args.steps),
              "clip + AdamW": timed(optimiser, args.steps),
              "EMA update": timed(lambda: update_ema(ema, model, 0.999), args.steps),
              "whole step (no data)": timed(full_step, args.steps)}
        parts.update(ms)
        print("| part | ms per step | share of step + data |\n|---|---:|---:|")
        total = ms["whole step (no data)"] + parts["data: crop + LR (one process)"]
        for name, value in parts.items():
            print(f"| {name} | {value:.1f} | {value / total:.0%} |")
        print(f"\ndecoder forward ≈ {ms['model forward (encoder + decoder)'] - ms['encoder forward (frozen, LR)']:.1f} ms; "
              f"decoder backward ≈ whole step − the parts above")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                full_step()
        print("\ntorch.profiler, 3 whole steps, top operators by self CPU time:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
