"""Image quality metrics as SR papers report them: PSNR and SSIM on the Y channel, border shaved."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) BT.601 luma in [16/255, 235/255] (MATLAB's rgb2ycbcr)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _shave(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border:-border, border:-border] if border > 0 else x


def psnr_y(pred: torch.Tensor, target: torch.Tensor, shave: int = 0) -> torch.Tensor:
    """Per-image PSNR in dB on Y, after rounding to 8 bits as a saved image would be."""
    p = _shave(rgb_to_y(_quantize(pred)), shave)
    t = _shave(rgb_to_y(_quantize(target)), shave)
    mse = (p - t).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10.0 * torch.log10(1.0 / mse)


def halo_y(pred: torch.Tensor, target: torch.Tensor, shave: int = 0, window: int = 5,
           visible: float = 8.0) -> torch.Tensor:
    """Per-image share of pixels whose Y lies more than `visible` levels (of 255) outside the target's own
    range in the `window`×`window` around them: the bright outlines and dark rims sharpening draws along
    edges, which no pixel of the scene has there."""
    p = _shave(rgb_to_y(_quantize(pred)), shave) * 255
    t = rgb_to_y(_quantize(target)) * 255
    high = _shave(F.max_pool2d(t, window, stride=1, padding=window // 2), shave)
    low = _shave(-F.max_pool2d(-t, window, stride=1, padding=window // 2), shave)
    outside = (p - high).clamp_min(0) + (low - p).clamp_min(0)
    return (outside > visible).float().mean(dim=(1, 2, 3))


def ssim_y(pred: torch.Tensor, target: torch.Tensor, shave: int = 0) -> torch.Tensor:
    """Per-image SSIM on Y with the standard 11×11 Gaussian window (σ = 1.5), values in 0..255.

    Computed in float64 (float32 on Apple's MPS, which has no float64) on the inputs' device.
    """
    work = torch.float32 if pred.device.type == "mps" else torch.float64
    p = _shave(rgb_to_y(_quantize(pred)), shave).to(work) * 255
    t = _shave(rgb_to_y(_quantize(target)), shave).to(work) * 255
    window = gaussian_window(11, 1.5, p.device, p.dtype)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_p, mu_t = F.conv2d(p, window), F.conv2d(t, window)
    var_p = F.conv2d(p * p, window) - mu_p**2
    var_t = F.conv2d(t * t, window) - mu_t**2
    cov = F.conv2d(p * t, window) - mu_p * mu_t
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim_map.mean(dim=(1, 2, 3)).float()


def gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A normalised size×size Gaussian filter shaped (1, 1, size, size) for conv2d, made where it is used."""
    g = torch.exp(-((torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255
