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
)


@pytest.fixture
def lr8() -> np.ndarray:
    return np.round(photo_like(40, 48, seed=4) * 255).astype(np.uint8)


@pytest.mark.parametrize("preset", ["mild", "jpeg", "photo", "photo_mid"])
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
