"""Plain helpers the tests share (images made on the spot); fixtures live in conftest.py."""

from __future__ import annotations

import numpy as np
import torch

from unetsr.model.network import UNetSR


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An H×W×3 float32 image in [0, 1] with smooth gradients, hard edges and a little texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    smooth = np.stack([0.5 + 0.3 * np.sin(6 * xx + 2 * yy), 0.5 + 0.3 * np.cos(5 * yy), 0.4 + 0.3 * xx], axis=2)
    edges = ((xx * 7).astype(int) % 2 ^ (yy * 5).astype(int) % 2)[..., None] * 0.25
    disc = (((xx - 0.6) ** 2 + (yy - 0.4) ** 2) < 0.04)[..., None] * np.array([0.3, -0.2, 0.1])
    img = smooth + edges - 0.12 + disc + rng.normal(0, 0.02, (h, w, 3))
    return np.clip(img, 0, 1).astype(np.float32)


def as_batch(arr: np.ndarray) -> torch.Tensor:
    """An H×W×C numpy image as a (1, C, H, W) float tensor."""
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))[None]


def perturb_decoder(model: UNetSR, seed: int = 0, std: float = 0.01) -> UNetSR:
    """Give every trainable weight small random values, so the residual is not zero (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * std)
    return model
