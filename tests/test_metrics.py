"""PSNR-Y and SSIM-Y checked against values computed independently: by hand and by scikit-image."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import (
    structural_similarity,  # the reference implementation (requirements-dev.txt)
)

from unetsr.evaluation.metrics import halo_y, psnr_y, ssim_y


def test_psnr_of_a_hand_worked_case() -> None:
    # Grey 128/255 everywhere; the bottom half is 138/255 on every channel. On Y (BT.601, 219 levels for
    # full swing) those 10 levels are 10 * 219/255 = 8.588 Y levels on half the pixels, so
    # MSE = 0.5 * (8.588/255)^2 = 5.671e-4 and PSNR = 10 log10(1 / MSE) = 32.463 dB.
    x = torch.full((1, 3, 16, 16), 128 / 255)
    y = x.clone()
    y[..., 8:, :] = 138 / 255
    assert psnr_y(y, x).item() == pytest.approx(32.463, abs=0.001)
    assert psnr_y(x, x).item() > 100  # identical: as good as it gets (MSE floored, not infinite)


def test_psnr_rounds_to_8_bits_like_a_saved_image() -> None:
    x = torch.full((1, 3, 8, 8), 100 / 255)
    assert psnr_y(x + 0.4 / 255, x).item() > 100  # rounds back to the same level
    # One level on every channel is 219/255 Y levels everywhere: PSNR = 20 log10(255 / (219/255)) = 49.46 dB.
    assert psnr_y(x + 1 / 255, x).item() == pytest.approx(20 * math.log10(255 / (219 / 255)), abs=0.001)


def test_shave_ignores_the_border() -> None:
    x = torch.rand(2, 3, 20, 20)
    y = x.clone()
    y[..., :2, :] = 0
    assert psnr_y(y, x, shave=2).min() > 90
    assert psnr_y(y, x, shave=0).max() < 40


def _y_255(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in 0..255 of an H×W×3 array in [0, 1] rounded to 8 bits, as MATLAB's rgb2ycbcr."""
    q = np.round(np.clip(rgb, 0, 1) * 255) / 255
    return 16 + 65.481 * q[..., 0] + 128.553 * q[..., 1] + 24.966 * q[..., 2]


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_ssim_matches_scikit_image(noise: float) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48] / 48
    clean = np.stack([0.5 + 0.3 * np.sin(9 * xx), 0.4 + 0.4 * yy, 0.3 + 0.2 * np.cos(7 * xx * yy)], axis=2)
    noisy = np.clip(clean + rng.normal(0, noise, clean.shape), 0, 1)
    clean, noisy = (np.round(a * 255).astype(np.float32) / 255 for a in (clean, noisy))  # on 8-bit levels
    # Wang et al.'s SSIM: 11×11 Gaussian window, sigma 1.5, population covariances, only full windows.
    expected = structural_similarity(_y_255(noisy), _y_255(clean), data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))[None]
    assert ssim_y(as_t(noisy), as_t(clean)).item() == pytest.approx(expected, abs=1e-5)


def test_ssim_of_two_flat_images_is_the_luminance_term() -> None:
    # No variance anywhere, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1) with a, b the two Y values in 0..255.
    a, b = 16 + 219 * 100 / 255, 16 + 219 * 140 / 255
    c1 = (0.01 * 255) ** 2
    x, y = torch.full((1, 3, 12, 12), 100 / 255), torch.full((1, 3, 12, 12), 140 / 255)
    assert ssim_y(y, x).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-6)
    assert ssim_y(x, x).item() == pytest.approx(1.0, abs=1e-9)


def test_ssim_is_computed_on_the_inputs_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA is not available here, so the 'meta' device (shapes only) stands in for it: the window must be
    # made beside the inputs, or conv2d on a GPU fails with tensors on two devices.
    conv2d, seen = torch.nn.functional.conv2d, []

    def spy(x: torch.Tensor, weight: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        seen.append((x.device, x.dtype, weight.device, weight.dtype))
        return conv2d(x, weight, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", spy)
    x = torch.empty(2, 3, 24, 24, device="meta")
    score = ssim_y(x, x)
    assert score.device.type == "meta" and score.shape == (2,)
    assert seen and all(xd == wd and xt == wt for xd, xt, wd, wt in seen)


def test_halo_counts_pixels_outside_the_targets_local_range() -> None:
    # A grey step edge; the prediction adds a bright line 20 levels (of Y's 219) above the bright side, next to
    # the edge, and a faint one (3 levels) elsewhere: only the first is a visible halo.
    target = torch.full((1, 3, 20, 20), 0.3)
    target[..., 10:] = 0.7
    pred = target.clone()
    pred[..., 10] += 20 / 219  # rgb_to_y maps a grey change of d to 219·d levels of Y
    pred[..., 15] += 3 / 219
    share = halo_y(pred, target).item()
    assert share == pytest.approx(20 / 400)  # one column of 20 pixels
    assert halo_y(target, target).item() == 0
    # a dark rim below the dark side counts the same, and the shave drops border pixels
    rim = target.clone()
    rim[..., 0] -= 20 / 219
    assert halo_y(rim, target).item() == pytest.approx(20 / 400)
    assert halo_y(rim, target, shave=1).item() == 0
