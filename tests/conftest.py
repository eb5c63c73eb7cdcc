"""Shared fixtures: tiny photo-like images and small random-backbone models, built on the spot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import perturb_decoder, photo_like
from PIL import Image

from unetsr.model.checkpoint import save_checkpoint
from unetsr.model.config import ModelConfig
from unetsr.model.network import UNetSR, build_model


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
