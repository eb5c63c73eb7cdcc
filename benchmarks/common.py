"""Shared by the benchmarks: the header line every table starts with, the model to measure, the
same-run references (a fixed matmul, PIL bicubic) that let a reader scale the figures to their machine,
and the loss as it was before its batch norms were folded (the "before" of a same-run before/after)."""

from __future__ import annotations

import copy
import platform
import sys
import time

import numpy as np
import torch
from PIL import Image

from unetsr.core.errors import CheckpointError
from unetsr.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, load_default
from unetsr.model.config import ModelConfig
from unetsr.model.network import UNetSR, build_model
from unetsr.training.losses import PerceptualLoss


def header() -> str:
    """The command, torch version, thread count and processor: how and where the figures were measured."""
    return (f"command: python {' '.join(sys.argv)}\n"
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()} "
            f"{platform.processor() or ''}".rstrip())


def benchmark_model(checkpoint: str | None) -> tuple[UNetSR, str]:
    """The given checkpoint, else the shipped model, else an untrained default-size model (same speed)."""
    if checkpoint:
        return load_checkpoint(checkpoint).model, checkpoint
    try:
        return load_default().model, str(DEFAULT_CHECKPOINT.name)
    except CheckpointError:
        return build_model(ModelConfig(backbone="random")).eval(), "untrained default-size model"


def matmul_reference(size: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of a fixed float32 matmul workload (size² by size², `repeats` times, after one warm-up).

    Timed in the same run as the figures beside it, on the same threads: a machine twice as fast here
    (or half as busy) runs the benchmarks roughly twice as fast.
    """
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * size**3 / (time.perf_counter() - start) / 1e9


def bicubic_seconds(lr_h: int, lr_w: int, scale: int = 2, repeats: int = 3) -> float:
    """Seconds (best of `repeats`) for PIL's bicubic to upscale an 8-bit RGB lr_h×lr_w image `scale` times:
    the classic upscaler's cost for the same image, measured in the same run."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (lr_h, lr_w, 3), dtype=np.uint8))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        image.resize((lr_w * scale, lr_h * scale), Image.BICUBIC)
        best = min(best, time.perf_counter() - start)
    return best


def photo_like_array(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A float32 h×w×3 image in [0, 1]: gradients, edges and a little noise, so that PNG sizes and
    decode/encode times are those of a photo rather than of pure noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    image = np.stack([0.5 + 0.3 * np.sin(9 * xx + 3 * yy), 0.5 + 0.3 * np.cos(7 * yy), 0.3 + 0.4 * xx], axis=2)
    image += 0.15 * (((xx * 23).astype(int) + (yy * 17).astype(int)) % 2)[..., None]
    return np.clip(image + rng.normal(0, 0.02, image.shape).astype(np.float32), 0, 1)


def sharpened_jpeg(lr: np.ndarray, quality: int, sharpen: bool = True) -> np.ndarray:
    """The LR as a photo that a camera or editor sharpened (unsharp mask radius 1.5, 120 %, threshold 2,
    when `sharpen`) and saved as a 4:2:0 JPEG at `quality`: float32 H×W×3 in [0, 1]."""
    from PIL import ImageFilter  # noqa: PLC0415

    from unetsr.imaging.jpeg import jpeg_roundtrip  # noqa: PLC0415

    image = Image.fromarray((lr * 255 + 0.5).clip(0, 255).astype(np.uint8))
    if sharpen:
        image = image.filter(ImageFilter.UnsharpMask(radius=1.5, percent=120, threshold=2))
    return (jpeg_roundtrip(np.asarray(image), quality) / 255).astype(np.float32)


class UnfoldedLoss(PerceptualLoss):
    """The same loss with the backbone's batch norms left in, as training ran it before they were folded."""

    def __init__(self, backbone: torch.nn.Module, *weights: float) -> None:
        super().__init__(backbone, *weights)
        conv1, bn1, relu, maxpool, layer1, layer2 = copy.deepcopy(torch.nn.ModuleList(
            [backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool, backbone.layer1, backbone.layer2])).eval()
        self.to3 = torch.nn.Sequential(conv1, bn1, relu)
        self.to6 = torch.nn.Sequential(maxpool, layer1, layer2)
        self.requires_grad_(False)
