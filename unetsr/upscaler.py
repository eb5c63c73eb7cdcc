"""`Upscaler`: the public inference API. Tiles with context, runs the model, stitches, repeats the
model for scales beyond its own, and finishes with an exact-size resize."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from .checkpoint import load_checkpoint, load_default
from .model import UNetSR


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; other names are taken as given."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: Apple's MPS is not available here")
    return torch.device(name)


class Upscaler:
    """Upscales images with a UNetSR model, in tiles when `tile` is set (bounded memory).

    Tiles are computed with `tile_overlap` pixels of context on each side, aligned to the encoder's
    stride, and only their centres are kept, so a tiled result matches the untiled one.
    """

    def __init__(self, model: UNetSR, device: str = "auto", half: bool = False,
                 tile: int | None = None, tile_overlap: int = 32) -> None:
        self.device = pick_device(device)
        if half and self.device.type == "cpu":
            warnings.warn("half precision is not faster on a CPU; computing in float32", stacklevel=2)
            half = False
        self.dtype = torch.float16 if half else torch.float32
        self.model = model.eval().to(self.device, self.dtype)
        stride = model.config.stride
        self.tile = None if not tile else max(stride, _round_up(tile, stride))
        self.tile_overlap = _round_up(max(0, tile_overlap), stride)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, **kwargs) -> "Upscaler":
        """An Upscaler for the checkpoint at `path`, or for the shipped default model when None."""
        ckpt = load_default() if path is None else load_checkpoint(path)
        return cls(ckpt.model, **kwargs)

    @property
    def scale(self) -> int:
        """The model's own scale factor."""
        return self.model.config.scale

    def __call__(self, image: Image.Image, outscale: float | None = None) -> Image.Image:
        """Upscale a PIL image (L, RGB or RGBA; others converted to RGB) by `outscale` (default: model scale)."""
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        arr = np.asarray(image, dtype=np.float32) / 255.0
        out = self.upscale_array(arr, outscale)
        return Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8), image.mode)

    def upscale_array(self, arr: np.ndarray, outscale: float | None = None, progress: bool = False) -> np.ndarray:
        """H×W, H×W×3 or H×W×4 float array in [0, 1] -> upscaled array of the same layout.

        Grey is run as RGB and averaged back; alpha is upscaled by the model separately and re-attached.
        """
        if arr.ndim == 2:
            return self.upscale_array(np.repeat(arr[..., None], 3, axis=2), outscale, progress).mean(axis=2)
        if arr.shape[2] == 4:
            rgb = self.upscale_array(arr[..., :3], outscale, progress)
            alpha = self.upscale_array(arr[..., 3], outscale, progress)
            return np.concatenate([rgb, alpha[..., None]], axis=2)
        x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))[None]
        y = self.upscale_tensor(x, outscale, progress)
        return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor, outscale: float | None = None, progress: bool = False) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, round(H*outscale), round(W*outscale)) in [0, 1], on the CPU.

        The model runs as many times as needed to reach `outscale`; a final antialiased bicubic resize
        gives the exact size (as Real-ESRGAN's outscale does).
        """
        outscale = float(outscale or self.scale)
        if outscale <= 0:
            raise ValueError(f"scale must be positive, got {outscale}")
        h, w = x.shape[-2:]
        size = (max(1, round(h * outscale)), max(1, round(w * outscale)))
        passes = max(1, math.ceil(math.log(outscale) / math.log(self.scale) - 1e-9))
        y = x
        for _ in range(passes):
            y = self._run_tiled(y, progress)
        if tuple(y.shape[-2:]) != size:
            y = F.interpolate(y, size=size, mode="bicubic", align_corners=False, antialias=True)
        return y.clamp_(0, 1)

    def _run_tiled(self, x: torch.Tensor, progress: bool) -> torch.Tensor:
        """One model pass over x, tile by tile; returns float32 on the CPU."""
        s, (h, w) = self.scale, x.shape[-2:]
        tile, pad = self.tile or max(h, w), self.tile_overlap
        out = torch.empty(x.shape[0], 3, h * s, w * s)
        boxes = [(y0, x0) for y0 in range(0, h, tile) for x0 in range(0, w, tile)]
        for y0, x0 in tqdm(boxes, desc="tiles", unit="tile", leave=False, disable=not progress or len(boxes) == 1):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            iy0, ix0, iy1, ix1 = max(0, y0 - pad), max(0, x0 - pad), min(h, y1 + pad), min(w, x1 + pad)
            patch = x[..., iy0:iy1, ix0:ix1].to(self.device, self.dtype)
            result = self.model(patch).float().cpu()
            out[..., y0 * s:y1 * s, x0 * s:x1 * s] = result[..., (y0 - iy0) * s:(y1 - iy0) * s,
                                                             (x0 - ix0) * s:(x1 - ix0) * s]
        return out


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
