"""Shared fixtures: tiny photo-like images and small random-backbone models, built on the spot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetsr.checkpoint import save_checkpoint
from unetsr.config import ModelConfig
from unetsr.model import UNetSR, build_model


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


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    """A small x2 model on a seeded random ResNet18 (no download)."""
    return ModelConfig(scale=2, widths=(8, 16, 16, 16, 16), blocks=(1, 1, 1, 1, 1), backbone="random")


@pytest.fixture(scope="session")
def tiny_model(tiny_config: ModelConfig) -> UNetSR:
    """The tiny model with a non-zero residual, in eval mode. Do not modify it in tests.

    Seeded: the decoder's initial weights come from the global RNG, whose state depends on which tests ran first.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(tiny_config)
    return perturb_decoder(model).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_model: UNetSR) -> Path:
    """A checkpoint file of the tiny model."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, tiny_model, {"backbone": "random", "steps": 0})


@pytest.fixture
def photo_png(tmp_path: Path) -> Path:
    """A 40×56 8-bit RGB photo-like PNG in a fresh folder."""
    path = tmp_path / "photo.png"
    Image.fromarray((photo_like(40, 56) * 255 + 0.5).astype(np.uint8)).save(path)
    return path
