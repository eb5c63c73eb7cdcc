"""Damage done to training LR so a model learns photos as people have them: JPEG at a random quality
with 4:2:0 or 4:4:4 chroma (sometimes saved twice), mild sensor noise, slight blur, and the unsharp mask
cameras and editors apply before saving (whose halos a model must not draw again, larger).

A preset is a frozen `Degradation`; `apply` draws every choice from the caller's generator, so the
dataset's (seed, item) seeding keeps runs reproducible and resumable. Its JPEGs come from
`unetsr.imaging.jpeg.jpeg_roundtrip`, the one encoder (evaluation uses it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from unetsr.imaging.jpeg import jpeg_roundtrip


@dataclass(frozen=True)
class Degradation:
    """Probabilities and ranges of each kind of damage. Order: blur, noise, sharpening, JPEG, second JPEG,
    as a camera's lens softens, its sensor adds noise, its processing sharpens and the file is saved (and
    sometimes saved again)."""

    p_clean: float = 0.0  # leave the LR alone
    p_blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    p_noise: float = 0.0
    noise_sigma: tuple[float, float] = (0.5 / 255, 5 / 255)  # Gaussian, per channel
    p_poisson: float = 0.0  # of the noisy ones, the share with shot noise (grows with brightness)
    p_sharpen: float = 0.0  # an unsharp mask: x + amount·(x − gaussian(x, sigma))
    sharpen_sigma: tuple[float, float] = (0.5, 1.5)  # in LR pixels
    sharpen_amount: tuple[float, float] = (0.3, 1.5)
    p_jpeg: float = 0.0
    quality: tuple[int, int] = (30, 95)  # uniform, inclusive
    p_420: float = 0.75  # 4:2:0 chroma, else 4:4:4
    p_twice: float = 0.0  # re-saved: a second JPEG at another quality from the same range


_PHOTO = Degradation(p_clean=0.1, p_blur=0.2, blur_sigma=(0.2, 0.8), p_noise=0.3, p_poisson=0.5,
                     p_jpeg=1.0, quality=(30, 95), p_twice=0.25)

PRESETS: dict[str, Degradation | None] = {
    "none": None,
    # The old --degrade: each of blur, noise and JPEG (60-95) with probability 1/2.
    "mild": Degradation(p_blur=0.5, blur_sigma=(0.3, 1.2), p_noise=0.5, noise_sigma=(0.002, 0.02),
                        p_jpeg=0.5, quality=(60, 95), p_420=1.0),
    # JPEG only: what the JPEG model sees (issue 15); 10% clean so clean detail is not forgotten.
    "jpeg": Degradation(p_clean=0.1, p_jpeg=1.0, quality=(30, 95), p_twice=0.25),
    # JPEG with the camera in front of it: slight blur and noise before saving.
    "photo": _PHOTO,
    # `photo` at the qualities the JPEG model is chosen for (below models.JPEG_BELOW = 90), 40 and up:
    # files at 90 and up go to the clean model, so training on them spends capacity nobody uses.
    "photo_mid": replace(_PHOTO, quality=(40, 89)),
    # `photo` as cameras and editors save it: half sharpened before saving, at every quality from 40 (the
    # model for sharpened photos, whose halos the other models draw larger).
    "camera": replace(_PHOTO, quality=(40, 98), p_sharpen=0.5),
}


def gaussian_blur(rgb: np.ndarray, sigma: float, radius: int = 2) -> np.ndarray:
    """A separable Gaussian blur (taps -radius..radius, edges replicated) of an H×W×3 float array."""
    k = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    k /= k.sum()
    pad = np.pad(rgb, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    rows = sum(k[i] * pad[:, i:i + rgb.shape[1]] for i in range(len(k)))
    return sum(k[i] * rows[i:i + rgb.shape[0]] for i in range(len(k)))


def unsharp_mask(rgb: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    """rgb + amount·(rgb − blurred): the sharpening cameras and editors apply, halos included (not clipped)."""
    return rgb + amount * (rgb - gaussian_blur(rgb, sigma, radius=max(2, math.ceil(3 * sigma))))


def apply(lr: np.ndarray, spec: Degradation | None, rng: np.random.Generator) -> np.ndarray:
    """`lr` (H×W×3 uint8) damaged as `spec` draws from `rng`; returned unchanged for None or p_clean."""
    if spec is None or rng.random() < spec.p_clean:
        return lr
    out = lr.astype(np.float32) / 255
    if rng.random() < spec.p_blur:
        out = gaussian_blur(out, rng.uniform(*spec.blur_sigma))
    if rng.random() < spec.p_noise:
        sigma = rng.uniform(*spec.noise_sigma)
        if rng.random() < spec.p_poisson:  # shot noise: variance proportional to the signal
            out = out + rng.normal(0, 1, out.shape) * sigma * np.sqrt(np.clip(out, 0, 1) / 0.25)
        else:
            out = out + rng.normal(0, sigma, out.shape)
    if spec.p_sharpen and rng.random() < spec.p_sharpen:  # no draw at 0: older presets keep their streams
        out = unsharp_mask(out, rng.uniform(*spec.sharpen_sigma), rng.uniform(*spec.sharpen_amount))
    out = np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
    if rng.random() < spec.p_jpeg:
        # The 8x8 grid of a real photo falls anywhere in a tile: shift it by padding top and left.
        dy, dx = (int(v) for v in rng.integers(0, 8, 2))
        out = np.pad(out, ((dy, 0), (dx, 0), (0, 0)), mode="reflect")
        for _ in range(2 if rng.random() < spec.p_twice else 1):
            quality = int(rng.integers(spec.quality[0], spec.quality[1] + 1))
            out = jpeg_roundtrip(out, quality, "4:2:0" if rng.random() < spec.p_420 else "4:4:4")
        out = np.ascontiguousarray(out[dy:, dx:])
    return out
