import numpy as np
import pytest
import torch
from PIL import Image

from conftest import as_batch, photo_like
from unetsr.model import UNetSR
from unetsr.upscaler import Upscaler


def test_tiled_matches_untiled_within_one_level(tiny_model: UNetSR) -> None:
    x = as_batch(photo_like(100, 140, seed=3))
    whole = Upscaler(tiny_model).upscale_tensor(x)
    tiled = Upscaler(tiny_model, tile=32, tile_overlap=32).upscale_tensor(x)
    assert whole.shape == tiled.shape == (1, 3, 200, 280)
    assert (whole - tiled).abs().max().item() < 1 / 255
    assert (whole - tiny_model.base(x).clamp(0, 1)).abs().max().item() > 1 / 255  # the residual matters


def test_tiles_without_context_would_differ(tiny_model: UNetSR) -> None:
    x = as_batch(photo_like(64, 64, seed=4))
    whole = Upscaler(tiny_model).upscale_tensor(x)
    seams = Upscaler(tiny_model, tile=16, tile_overlap=0).upscale_tensor(x)
    assert (whole - seams).abs().max().item() > 1 / 255  # so the overlap above is what makes them match


@pytest.mark.parametrize("outscale, size", [(2, (60, 80)), (3, (90, 120)), (4, (120, 160)), (1.5, (45, 60)),
                                            (2.5, (75, 100))])
def test_any_scale_gives_the_exact_size(tiny_model: UNetSR, outscale: float, size: tuple[int, int]) -> None:
    y = Upscaler(tiny_model).upscale_tensor(as_batch(photo_like(30, 40)), outscale)
    assert y.shape[-2:] == size
    assert 0 <= y.min() and y.max() <= 1


def test_array_layouts_grey_rgb_and_alpha(tiny_model: UNetSR) -> None:
    up = Upscaler(tiny_model)
    rgb = photo_like(20, 24)
    alpha = np.linspace(0, 1, 20 * 24, dtype=np.float32).reshape(20, 24)
    rgba = np.concatenate([rgb, alpha[..., None]], axis=2)
    out = up.upscale_array(rgba)
    assert out.shape == (40, 48, 4)
    assert np.allclose(out[..., :3], up.upscale_array(rgb))
    assert abs(out[..., 3].mean() - alpha.mean()) < 0.02
    assert up.upscale_array(rgb[..., 0]).shape == (40, 48)


def test_pil_call_keeps_mode_and_doubles_size(tiny_model: UNetSR) -> None:
    image = Image.fromarray((photo_like(20, 30) * 255).astype(np.uint8)).convert("RGBA")
    out = Upscaler(tiny_model)(image)
    assert out.mode == "RGBA" and out.size == (60, 40)


def test_half_on_cpu_falls_back_to_float32(tiny_model: UNetSR) -> None:
    with pytest.warns(UserWarning, match="float32"):
        up = Upscaler(tiny_model, device="cpu", half=True)
    assert up.dtype == torch.float32
