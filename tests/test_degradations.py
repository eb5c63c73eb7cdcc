from dataclasses import replace

import numpy as np
import pytest
from helpers import photo_like

from unetsr.training.degradations import (
    PRESETS,
    Degradation,
    apply,
    gaussian_blur,
    jpeg_roundtrip,
    unsharp_mask,
)


@pytest.fixture
def lr8() -> np.ndarray:
    return np.round(photo_like(40, 48, seed=4) * 255).astype(np.uint8)


@pytest.mark.parametrize("preset", ["mild", "jpeg", "photo", "photo_mid", "camera"])
def test_each_preset_is_seeded_by_the_generator(lr8: np.ndarray, preset: str) -> None:
    first = [apply(lr8, PRESETS[preset], np.random.default_rng([3, i])) for i in range(8)]
    again = [apply(lr8, PRESETS[preset], np.random.default_rng([3, i])) for i in range(8)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert all(a.shape == lr8.shape and a.dtype == np.uint8 for a in first)
    assert sum(not np.array_equal(a, lr8) for a in first) >= 5  # most items are damaged
    assert len({a.tobytes() for a in first}) >= 5  # and differently


def test_none_and_clean_leave_the_lr_alone(lr8: np.ndarray) -> None:
    assert apply(lr8, PRESETS["none"], np.random.default_rng(0)) is lr8
    assert apply(lr8, Degradation(p_clean=1.0, p_jpeg=1.0), np.random.default_rng(0)) is lr8


def test_jpeg_only_is_the_jpeg_of_the_shifted_crop(lr8: np.ndarray) -> None:
    # With one save at a fixed quality, the result is Pillow's JPEG of the crop padded by the drawn grid
    # shift, cropped back: computed here independently from the same draws.
    spec = Degradation(p_jpeg=1.0, quality=(40, 40), p_420=1.0)
    rng, ref = np.random.default_rng(7), np.random.default_rng(7)
    out = apply(lr8, spec, rng)
    ref.random(), ref.random(), ref.random()  # p_clean, p_blur, p_noise draws
    ref.random()  # p_jpeg
    dy, dx = ref.integers(0, 8, 2)
    padded = np.pad(lr8, ((dy, 0), (dx, 0), (0, 0)), mode="reflect")
    assert np.array_equal(out, jpeg_roundtrip(padded, 40, "4:2:0")[dy:, dx:])
    assert 0.5 < np.abs(out.astype(int) - lr8).mean() < 20


def test_lower_quality_means_more_damage(lr8: np.ndarray) -> None:
    def error(q: int) -> float:
        return float(np.abs(jpeg_roundtrip(lr8, q).astype(int) - lr8).mean())
    assert error(30) > error(60) > error(95) > 0


def test_blur_keeps_flat_areas_and_the_mean(lr8: np.ndarray) -> None:
    flat = np.full((10, 12, 3), 0.4)
    assert np.allclose(gaussian_blur(flat, 0.8), 0.4)
    img = lr8 / 255.0
    blurred = gaussian_blur(img, 1.0)
    assert blurred.shape == img.shape
    assert abs(blurred.mean() - img.mean()) < 2e-3 and np.abs(np.diff(blurred, axis=1)).mean() < np.abs(np.diff(img, axis=1)).mean()


def test_noise_has_the_drawn_strength() -> None:
    grey = np.full((64, 64, 3), 128, np.uint8)
    out = apply(grey, Degradation(p_noise=1.0, noise_sigma=(4 / 255, 4 / 255)), np.random.default_rng(1))
    assert abs((out.astype(float) - 128).std() - 4) < 0.4


def test_photo_mid_is_photo_at_the_jpeg_models_qualities() -> None:
    from unetsr.inference.choice import JPEG_BELOW

    mid, photo = PRESETS["photo_mid"], PRESETS["photo"]
    assert mid.quality[1] < JPEG_BELOW <= photo.quality[1]  # nothing the clean model would be chosen for
    assert replace(mid, quality=photo.quality) == photo  # otherwise the same damage


def test_unsharp_mask_is_x_plus_amount_times_x_minus_its_blur() -> None:
    # A step edge: computed independently with a full-width Gaussian, the mask overshoots on both sides.
    row = np.r_[np.zeros(10), np.ones(10)]
    img = np.repeat(np.repeat(row[None, :, None], 6, axis=0), 3, axis=2)
    sharp = unsharp_mask(img, 1.0, 0.8)
    taps = np.exp(-np.arange(-3, 4) ** 2 / 2.0)
    blurred = np.convolve(np.pad(row, 3, mode="edge"), taps / taps.sum(), mode="valid")
    assert np.allclose(sharp[2, :, 0], row + 0.8 * (row - blurred))
    assert sharp.min() < -0.05 and sharp.max() > 1.05  # the halos a camera leaves
    assert np.allclose(unsharp_mask(np.full((8, 8, 3), 0.3), 1.2, 1.0), 0.3)  # flat stays flat


def test_camera_sharpens_about_half_of_its_items(lr8: np.ndarray) -> None:
    spec = PRESETS["camera"]
    assert spec.p_sharpen == 0.5 and spec.quality[1] > 95  # high-quality camera JPEGs are in range
    plain = replace(spec, p_jpeg=0.0, p_blur=0.0, p_noise=0.0, p_clean=0.0)
    sharpened = [not np.array_equal(apply(lr8, plain, np.random.default_rng([5, i])), lr8) for i in range(200)]
    assert 70 < sum(sharpened) < 130
    # p_sharpen 0 takes no draw, so older presets keep their data: test_jpeg_only_is_the_jpeg_of_the_shifted_crop
