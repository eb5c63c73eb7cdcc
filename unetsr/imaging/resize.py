"""The one way this project makes low-resolution (LR) images for evaluation, and the classic baselines.

LR is PIL's antialiased bicubic downscale rounded to 8 bits, as in the SR literature (MATLAB's
`imresize` is the same kernel); bilinear, bicubic and Lanczos upscaling of that LR are the references
every score is read against (evaluate, training validation, export checks, benchmarks).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BASELINES = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
# The downscalers LR can be made with: bicubic is the protocol; the others measure how a model copes
# with LR it was not told about (`evaluate --lr-kernel`). PIL antialiases all of them when reducing.
LR_KERNELS = ("bicubic", "bilinear", "box", "lanczos")
_FILTERS = {**BASELINES, "box": Image.BOX}


def crop_to_multiple(hr: np.ndarray, scale: int) -> np.ndarray:
    """HR cropped (bottom and right) so both sides are multiples of `scale`."""
    h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
    return hr[:h, :w]


def make_lr(hr: np.ndarray, scale: int, quality: int = 0, kernel: str = "bicubic") -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to a multiple of scale, its LR): float32 H×W×C arrays in [0, 1], the LR on 8-bit steps.

    Each channel is resized in 32-bit float by PIL's `kernel` (bicubic, the protocol, or another of
    LR_KERNELS; antialiased when reducing), so 16-bit inputs keep their precision until the final
    rounding to 8 bits that LR photos have. `quality` > 0
    then saves the LR as a JPEG at that quality with Pillow's defaults (4:2:0 chroma), as photos are shared.
    """
    if kernel not in LR_KERNELS:
        raise ValueError(f"unknown LR kernel {kernel!r}; one of {', '.join(LR_KERNELS)}")
    hr = crop_to_multiple(np.asarray(hr, dtype=np.float32), scale)
    h, w = hr.shape[:2]
    lr = np.round(np.clip(resize(hr, (w // scale, h // scale), kernel), 0, 1) * 255)
    if quality:
        from unetsr.imaging.jpeg import jpeg_roundtrip  # noqa: PLC0415

        if lr.ndim != 3 or lr.shape[2] != 3:
            raise ValueError("JPEG-compressed LR needs an RGB image")
        lr = jpeg_roundtrip(lr.astype(np.uint8), quality).astype(np.float32)
    return hr, (lr / 255).astype(np.float32)


def upscale_baseline(lr: np.ndarray, size: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """A classic upscale of an LR array to `size` = (width, height), clipped to [0, 1]."""
    return np.clip(resize(lr, size, method), 0, 1)


def resize(image: np.ndarray, size: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize a float H×W or H×W×C array to `size` = (width, height) channel by channel with PIL
    (`method`: a BASELINES name, or box)."""
    if method not in _FILTERS:
        raise ValueError(f"unknown resize method {method!r}; one of {', '.join(_FILTERS)}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return np.asarray(Image.fromarray(image, mode="F").resize(size, _FILTERS[method]), dtype=np.float32)
    return np.stack([resize(image[..., c], size, method) for c in range(image.shape[2])], axis=2)
