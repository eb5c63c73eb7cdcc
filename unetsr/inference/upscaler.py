"""`Upscaler`: the public inference API. Tiles with context, runs the model, stitches, repeats the
model for scales well beyond its own, and finishes with an exact-size resize.

On CPUs the model runs in channels_last (oneDNN's faster layout, in float32 too), and on CPUs with
native bfloat16 (AVX512-BF16 or AMX) in bf16 by default. What sees the image itself stays float32: the bilinear base, the stem convolution (its input
rounded to bf16's 8 significant bits alone would move outputs by up to 0.5/255) and the final sum, so
outputs stay within 1/255 of float32; from the stem's output on, the decoder runs in bf16 throughout.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from unetsr.core.errors import NonFiniteError
from unetsr.core.precision import (
    autocast,
    memory_format,
    resolve_precision,
)
from unetsr.imaging.photos import pixels_of
from unetsr.inference.tiles import DEFAULT_TILE_OVERLAP, Box, plan_tiles
from unetsr.model.checkpoint import load_checkpoint, load_shipped
from unetsr.model.network import UNetSR, pad_to_stride

ENSEMBLE_VIEWS = 8
"""With `ensemble`, the model sees the patch in all 8 flips and transposes (the dihedral group of the square)
and the 8 outputs, mapped back, are averaged: the geometric self-ensemble of EDSR+ (Lim et al., 2017)."""

EXTRA_PASS_ABOVE = 1.5
"""Another model pass is run only while more than this factor would be left for the final bicubic resize:
x2.01 with an x2 model is one pass and a 1.005 resize, x3 one pass and 1.5, x3.2 two passes and 0.8."""


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
    stride, and only their centres are kept, so a tiled result matches the untiled one (to about 1/255). The Upscaler
    runs its own copy of `model`: the caller's model is never moved, cast or switched to eval.
    `ensemble` averages the model over the 8 flips and transposes of each patch: 8 times the time, for
    a steadier, slightly better result (docs/model-card.md has the figures).
    """

    name: str = "model"  # what to call the model in messages: "shipped x4 model", "best.pt", ...

    def __init__(self, model: UNetSR, device: str = "auto", precision: str = "auto", half: bool = False,
                 tile: int | None = None, tile_overlap: int = DEFAULT_TILE_OVERLAP, ensemble: bool = False) -> None:
        self.ensemble = ensemble
        if not isinstance(model, nn.Module):  # a runtime that runs the whole model itself (onnx_runtime.OnnxModel)
            self.device, self.precision, self.dtype = torch.device("cpu"), "fp32", torch.float32
            self.memory_format, self.model = torch.contiguous_format, model
        else:
            self.device = pick_device(device)
            self.precision = resolve_precision(precision, self.device, half)
            self.dtype = torch.float16 if self.precision == "fp16" else torch.float32  # of the weights
            self.memory_format = memory_format(self.device)  # channels_last on CPUs, in fp32 too (docs/performance.md)
            self.model = copy.deepcopy(model).eval().to(self.device, self.dtype, memory_format=self.memory_format)
            if self.precision == "bf16" and not isinstance(self.model.head, Float32):
                self.model.head = Float32(self.model.head, out_dtype=torch.bfloat16)
        self.stride = stride = model.config.stride
        self.tile = None if not tile else max(stride, _round_up(tile, stride))
        self.tile_overlap = _round_up(max(0, tile_overlap), stride)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, **kwargs) -> "Upscaler":
        """An Upscaler for the checkpoint at `path`, or for the shipped x2 model when None (`from_shipped`)."""
        if path is None:
            return cls.from_shipped("x2", **kwargs)
        upscaler = cls(load_checkpoint(path).model, **kwargs)
        upscaler.name = Path(path).name
        return upscaler

    @classmethod
    def from_shipped(cls, name: str, **kwargs) -> "Upscaler":
        """An Upscaler for the model shipped in the package as `name` ('x2', 'x4', 'x2_jpeg'), loaded the one
        way shipped models are: `load_shipped`, which checks the file against its recorded SHA-256."""
        upscaler = cls(load_shipped(name).model, **kwargs)
        upscaler.name = f"shipped {name} model"
        return upscaler

    @property
    def ensemble_note(self) -> str:
        """What messages add after the model's name: ' (x8 self-ensemble)' with `ensemble`, else ''."""
        return " (x8 self-ensemble)" if self.ensemble else ""

    @property
    def scale(self) -> int:
        """The model's own scale factor."""
        return self.model.config.scale

    def passes_for(self, outscale: float | None = None) -> int:
        """How many model passes `outscale` takes: one, plus one more while over EXTRA_PASS_ABOVE is left."""
        remaining, passes = self._outscale(outscale) / self.scale, 1
        while remaining > EXTRA_PASS_ABOVE:
            remaining, passes = remaining / self.scale, passes + 1
        return passes

    def intermediate_size(self, h: int, w: int, outscale: float | None = None) -> tuple[int, int]:
        """The largest (height, width) computed for an h×w input: the last pass's output or the final size."""
        factor = self.scale ** self.passes_for(outscale)
        out_h, out_w = self.output_size(h, w, outscale)
        return max(h * factor, out_h), max(w * factor, out_w)

    def output_size(self, h: int, w: int, outscale: float | None = None) -> tuple[int, int]:
        """(round(h·outscale), round(w·outscale)), at least 1; ValueError when too large to represent."""
        outscale = self._outscale(outscale)
        if not math.isfinite(max(h, w) * outscale):
            raise ValueError(f"scale {outscale:g} is too large for a {w}×{h} image")
        return max(1, round(h * outscale)), max(1, round(w * outscale))

    def __call__(self, image: Image.Image, outscale: float | None = None) -> Image.Image:
        """Upscale a PIL image by `outscale` (default: the model's scale), its modes read as `read_image` reads
        a file's: grey stays grey (L; 16-bit grey such as I;16 stays 16-bit, as I;16), alpha and a palette's
        transparency are kept (LA, RGBA), everything else comes back RGB."""
        pixels, bit_depth = pixels_of(image)
        channels = pixels.shape[2]
        if channels in (2, 4) and "A" not in image.getbands() and pixels[..., -1].min() >= 1.0:
            pixels, channels = pixels[..., :-1], channels - 1  # a palette without transparency: no alpha to keep
        colour = pixels[..., 0] if channels <= 2 else pixels[..., :3]
        bands = [self.upscale_array(np.ascontiguousarray(colour), outscale)]
        if channels in (2, 4):
            bands.append(self.upscale_array(np.ascontiguousarray(pixels[..., -1]), outscale))
        out = np.dstack(bands) if len(bands) > 1 else bands[0]
        maximum, dtype = (65535, np.uint16) if bit_depth == 16 and channels == 1 else (255, np.uint8)
        return Image.fromarray((np.clip(out, 0, 1) * maximum + 0.5).astype(dtype))

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
        return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())  # a view when y is channels last

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor, outscale: float | None = None, progress: bool = False) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, round(H*outscale), round(W*outscale)) in [0, 1], on the CPU.

        The model runs `passes_for(outscale)` times; a final antialiased bicubic resize gives the exact
        size (as Real-ESRGAN's outscale does). NonFiniteError for NaN or infinite input or output.
        """
        size = self.output_size(*x.shape[-2:], outscale)
        if not torch.isfinite(x).all():
            raise NonFiniteError("the image holds NaN or infinite pixel values; nothing to upscale")
        y = x
        for _ in range(self.passes_for(outscale)):
            y = self._run_tiled(y, progress)
        if tuple(y.shape[-2:]) != size:
            y = F.interpolate(y, size=size, mode="bicubic", align_corners=False, antialias=True)
        return y.clamp_(0, 1)

    def _outscale(self, outscale: float | None) -> float:
        """`outscale` checked (a finite number > 0), or the model's scale for None."""
        if outscale is None:
            return float(self.scale)
        value = float(outscale)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"scale must be a finite number greater than 0, got {outscale!r}")
        return value

    def tile_boxes(self, height: int, width: int) -> list[Box]:
        """The tiles one model pass over an H×W image computes (`tiles.plan_tiles`: thin photos in bands)."""
        return plan_tiles(height, width, self.tile, self.stride)

    def tile_count(self, height: int, width: int, outscale: float | None = None) -> int:
        """How many tiles upscaling an H×W image (one array: alpha, upscaled apart, counts again) by `outscale`
        computes over all its passes: the number of progress steps."""
        total = 0
        for _ in range(self.passes_for(outscale)):
            total += len(self.tile_boxes(height, width))
            height, width = height * self.scale, width * self.scale
        return total

    def _run_tiled(self, x: torch.Tensor, progress: bool) -> torch.Tensor:
        """One model pass over x, tile by tile; returns float32 on the CPU."""
        s, (h, w) = self.scale, x.shape[-2:]
        pad = self.tile_overlap
        # Stored H×W×3 (channels last), so upscale_array hands it to numpy without a full-size copy.
        out = torch.empty(x.shape[0], h * s, w * s, 3).permute(0, 3, 1, 2)
        boxes = self.tile_boxes(h, w)
        for y0, x0, y1, x1 in tqdm(boxes, desc="tiles", unit="tile", leave=False,
                                   disable=not progress or len(boxes) == 1):
            iy0, ix0, iy1, ix1 = max(0, y0 - pad), max(0, x0 - pad), min(h, y1 + pad), min(w, x1 + pad)
            result = self._run_model(x[..., iy0:iy1, ix0:ix1].to(self.device, torch.float32)).cpu()
            out[..., y0 * s:y1 * s, x0 * s:x1 * s] = result[..., (y0 - iy0) * s:(y1 - iy0) * s,
                                                             (x0 - ix0) * s:(x1 - ix0) * s]
        return out

    def _run_model(self, patch: torch.Tensor) -> torch.Tensor:
        """The model on one float32 patch, or with `ensemble` the mean over its 8 views mapped back."""
        if self.ensemble:  # padded first as the model pads, so that every view sees the same stride grid
            (h, w), s = patch.shape[-2:], self.scale
            padded = pad_to_stride(patch, self.model.config.stride)
            result = self._run_once(padded)
            for view in range(1, ENSEMBLE_VIEWS):
                result += unview(self._run_once(dihedral_view(padded, view)), view)
            result = result[..., :h * s, :w * s] / ENSEMBLE_VIEWS
        else:
            result = self._run_once(patch)
        if not torch.isfinite(result).all():
            raise NonFiniteError("the model's output holds NaN or infinite values; its weights are damaged or "
                                 "it diverged in training (use another checkpoint)")
        return result

    def _run_once(self, patch: torch.Tensor) -> torch.Tensor:
        """The model on one float32 patch: the decoder in the chosen precision, base and sum in float32."""
        if not isinstance(self.model, nn.Module):
            return self.model(patch)
        inputs = patch.to(self.dtype).contiguous(memory_format=self.memory_format)
        with autocast(self.device, "bf16" if self.precision == "bf16" else "fp32"):
            residual = self.model.residual(inputs)
        return self.model.base(patch) + residual.float()


def dihedral_view(x: torch.Tensor, view: int) -> torch.Tensor:
    """One of the 8 flips and transposes of (..., H, W) `x`: bit 2 of `view` transposes, bit 1 flips
    vertically, bit 0 horizontally (applied in that order); view 0 is x itself."""
    if view & 4:
        x = x.transpose(-2, -1)
    if view & 2:
        x = x.flip(-2)
    if view & 1:
        x = x.flip(-1)
    return x


def unview(y: torch.Tensor, view: int) -> torch.Tensor:
    """The inverse of `dihedral_view(., view)`: the same steps undone in the reverse order."""
    if view & 1:
        y = y.flip(-1)
    if view & 2:
        y = y.flip(-2)
    if view & 4:
        y = y.transpose(-2, -1)
    return y


class Float32(nn.Module):
    """Runs `module` in float32 even inside autocast (for the cheap layers that see the image itself),
    handing its result on as `out_dtype`: bf16 keeps the decoder's residual stream in bf16, with no
    float32 adds and casts at full LR size (about a fifth of the bf16 model's time)."""

    def __init__(self, module: nn.Module, out_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.module = module
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float()).to(self.out_dtype)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
