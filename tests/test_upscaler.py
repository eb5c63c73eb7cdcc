import copy
import math

import numpy as np
import pytest
import torch
from helpers import as_batch, photo_like
from PIL import Image

from unetsr.core.errors import NonFiniteError, UnetsrError
from unetsr.inference import upscaler as upscaler_module
from unetsr.inference.upscaler import Upscaler
from unetsr.model.network import UNetSR


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
                                            (2.5, (75, 100)), (2.01, (60, 80))])
def test_any_scale_gives_the_exact_size(tiny_model: UNetSR, outscale: float, size: tuple[int, int]) -> None:
    y = Upscaler(tiny_model).upscale_tensor(as_batch(photo_like(30, 40)), outscale)
    assert y.shape[-2:] == size
    assert 0 <= y.min() and y.max() <= 1


@pytest.mark.parametrize("outscale, passes", [(None, 1), (2, 1), (2.01, 1), (1.2, 1), (3, 1), (3.01, 2), (4, 2),
                                              (6, 2), (6.5, 3), (8, 3)])
def test_another_pass_only_when_more_than_the_threshold_is_left(tiny_model: UNetSR, outscale: float | None,
                                                                passes: int) -> None:
    up = Upscaler(tiny_model, device="cpu")
    assert upscaler_module.EXTRA_PASS_ABOVE == 1.5  # the rule these cases are for: x3 is one pass, x3.01 two
    assert up.passes_for(outscale) == passes


def test_scale_2_01_runs_the_model_once_and_reports_its_largest_size(tiny_model: UNetSR) -> None:
    up = Upscaler(tiny_model, device="cpu")
    calls = []
    up.model.tail.register_forward_hook(lambda *_: calls.append(1))
    assert up.upscale_tensor(as_batch(photo_like(30, 40)), 2.01).shape[-2:] == (60, 80)
    assert len(calls) == 1  # one model pass plus a 1.005 resize, not two passes to x4
    assert up.intermediate_size(30, 40, 2.01) == (60, 80)
    assert up.intermediate_size(30, 40, 3.5) == (120, 160)  # two passes to x4, then down to x3.5
    assert up.intermediate_size(30, 40, 3) == (90, 120)  # one pass to x2, then up to x3
    assert up.intermediate_size(1000, 1000, 1e6) == (1000 * 2**20, 1000 * 2**20)  # 20 passes, then down


@pytest.mark.parametrize("outscale", [0, -2, math.nan, math.inf, -math.inf, 1e308])
def test_scales_that_mean_nothing_are_refused(tiny_model: UNetSR, outscale: float) -> None:
    up = Upscaler(tiny_model, device="cpu")
    with pytest.raises(ValueError, match="scale"):
        up.upscale_tensor(as_batch(photo_like(8, 8)), outscale)  # 0 used to mean "the model's scale"


def test_the_callers_model_is_not_moved_cast_or_switched_to_eval(tiny_model: UNetSR) -> None:
    model = copy.deepcopy(tiny_model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    up = Upscaler(model, device="cpu", precision="bf16")
    assert up.model is not model and model.training and not up.model.training
    assert type(model.head) is torch.nn.Conv2d  # not wrapped for float32 either
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype and v.is_contiguous() and torch.equal(v, before[k]), k


def test_nan_weights_raise_a_clear_error_not_a_black_image(tiny_model: UNetSR) -> None:
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.tail.bias[0] = float("nan")
    with pytest.raises(NonFiniteError, match="NaN or infinite") as caught:
        Upscaler(model, device="cpu").upscale_array(photo_like(16, 16))
    assert isinstance(caught.value, UnetsrError) and "\n" not in str(caught.value)


def test_a_nan_pixel_is_refused(tiny_model: UNetSR) -> None:
    image = photo_like(16, 16)
    image[3, 4, 1] = np.nan
    with pytest.raises(NonFiniteError, match="NaN or infinite"):
        Upscaler(tiny_model, device="cpu").upscale_array(image)


def test_bf16_agrees_with_fp32_within_the_stated_tolerance(tiny_model: UNetSR) -> None:
    x = as_batch(photo_like(96, 128, seed=5))
    fp32 = Upscaler(tiny_model, device="cpu", precision="fp32").upscale_tensor(x)
    up = Upscaler(tiny_model, device="cpu", precision="bf16")
    bf16 = up.upscale_tensor(x)
    diff = (bf16 - fp32).abs()
    assert 0 < diff.max().item() < 1 / 255 and diff.mean().item() < 0.05 / 255  # docs/performance.md: 0.60/255 and 0.016/255
    assert up.model.tail.weight.is_contiguous(memory_format=torch.channels_last)


def test_fp32_on_the_cpu_runs_channels_last_and_matches_the_plain_layout(tiny_model: UNetSR) -> None:
    x = as_batch(photo_like(96, 128, seed=6))
    up = Upscaler(tiny_model, device="cpu", precision="fp32")
    assert up.model.tail.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        plain = tiny_model.eval()(x).clamp(0, 1)  # the caller's model, untouched: contiguous float32
    assert (up.upscale_tensor(x) - plain).abs().max().item() < 1e-5


def test_bf16_keeps_the_stem_in_float32_and_the_rest_in_bf16(tiny_model: UNetSR) -> None:
    # The stem sees the image (float32 in); what follows it, the residual stream of the LR blocks
    # included, must be bf16: float32 there costs casts and float32 adds at full LR size.
    up = Upscaler(tiny_model, device="cpu", precision="bf16")
    seen = {}
    up.model.head.module.register_forward_hook(lambda m, inp, out: seen.update(stem=(inp[0].dtype, out.dtype)))
    up.model.body[0].register_forward_hook(lambda m, inp, out: seen.update(body=(inp[0].dtype, out.dtype)))
    up.upscale_tensor(as_batch(photo_like(40, 48, seed=1)))
    assert seen == {"stem": (torch.float32, torch.float32), "body": (torch.bfloat16, torch.bfloat16)}


def test_auto_precision_is_bf16_only_on_cpus_with_native_bf16(tiny_model: UNetSR,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from unetsr.core import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert Upscaler(tiny_model, device="cpu").precision == "fp32"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert Upscaler(tiny_model, device="cpu").precision == "bf16"
    assert Upscaler(tiny_model, device="cpu", precision="fp32").precision == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        Upscaler(tiny_model, device="cpu", precision="fp16")


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


def test_half_on_cpu_is_ignored_with_a_warning(tiny_model: UNetSR) -> None:
    with pytest.warns(UserWarning, match="ignored on the CPU"):
        up = Upscaler(tiny_model, device="cpu", half=True, precision="fp32")
    assert up.dtype == torch.float32 and up.precision == "fp32"


def _numpy_views(arr: np.ndarray) -> list[tuple[np.ndarray, object]]:
    """The 8 flips and rotations of an H×W×C array, each with the numpy function that maps an output back."""
    views = []
    for k in range(4):
        views.append((np.rot90(arr, k), lambda y, k=k: np.rot90(y, -k)))
        views.append((np.rot90(arr[:, ::-1], k), lambda y, k=k: np.rot90(y, -k)[:, ::-1]))
    return views


def test_the_eight_views_are_the_square_symmetries_and_unview_undoes_each() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    arr = x[0].permute(1, 2, 0).numpy()
    expected = {np.ascontiguousarray(v).tobytes() for v, _ in _numpy_views(arr)}
    got = {np.ascontiguousarray(upscaler_module.dihedral_view(x, v)[0].permute(1, 2, 0).numpy()).tobytes()
           for v in range(upscaler_module.ENSEMBLE_VIEWS)}
    assert got == expected and len(got) == 8
    for view in range(upscaler_module.ENSEMBLE_VIEWS):
        assert torch.equal(upscaler_module.unview(upscaler_module.dihedral_view(x, view), view), x)


def test_ensemble_is_the_mean_of_the_model_over_the_eight_views(tiny_model: UNetSR) -> None:
    arr = 0.2 + 0.6 * photo_like(64, 96, seed=5)  # stride-aligned, and far from 0 and 1, where outputs clamp
    plain = Upscaler(tiny_model, precision="fp32")
    outputs = [back(plain.upscale_array(np.ascontiguousarray(view))) for view, back in _numpy_views(arr)]
    expected = np.clip(np.mean(outputs, axis=0), 0, 1)
    got = Upscaler(tiny_model, precision="fp32", ensemble=True).upscale_array(arr)
    assert got.shape == expected.shape == (128, 192, 3)
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(got - plain.upscale_array(arr)).max() > 1 / 255  # the views disagree, so the mean is news


def test_ensemble_output_commutes_with_flips_and_transposes(tiny_model: UNetSR) -> None:
    x = as_batch(photo_like(64, 64, seed=6))  # a multiple of the stride: no one-sided padding
    plain, ensemble = Upscaler(tiny_model, precision="fp32"), Upscaler(tiny_model, precision="fp32", ensemble=True)
    for dims in ((-1,), (-2,)):
        assert (ensemble.upscale_tensor(x.flip(dims)) - ensemble.upscale_tensor(x).flip(dims)).abs().max() < 1e-5
        assert (plain.upscale_tensor(x.flip(dims)) - plain.upscale_tensor(x).flip(dims)).abs().max() > 1 / 255
    transposed = ensemble.upscale_tensor(x.transpose(-2, -1))
    assert (transposed - ensemble.upscale_tensor(x).transpose(-2, -1)).abs().max() < 1e-5


def test_ensemble_tiled_matches_untiled(tiny_model: UNetSR) -> None:
    x = as_batch(photo_like(70, 90, seed=7))
    whole = Upscaler(tiny_model, ensemble=True).upscale_tensor(x)
    tiled = Upscaler(tiny_model, ensemble=True, tile=32, tile_overlap=32).upscale_tensor(x)
    assert whole.shape == tiled.shape == (1, 3, 140, 180)
    assert (whole - tiled).abs().max().item() < 1 / 255


class CountingUpscaler(Upscaler):
    """An Upscaler that records the (height, width) of every patch handed to the model, and skips the model."""

    def _run_model(self, patch: torch.Tensor) -> torch.Tensor:
        self.patches.append(tuple(patch.shape[-2:]))
        return torch.zeros(*patch.shape[:-2], patch.shape[-2] * self.scale, patch.shape[-1] * self.scale)


def _tile_cost(model: UNetSR, h: int, w: int) -> tuple[int, int]:
    """(model calls, pixels the model computes once each patch is padded to the stride) for one H×W pass."""
    up = CountingUpscaler(model, device="cpu", tile=32, tile_overlap=8)
    up.patches = []
    assert up.upscale_array(photo_like(h, w)).shape[:2] == (2 * h, 2 * w)
    s = model.config.stride
    return len(up.patches), sum(-(-ph // s) * s * -(-pw // s) * s for ph, pw in up.patches)


def test_thin_photos_cost_what_square_ones_of_the_same_area_do(tiny_model: UNetSR) -> None:
    stride = tiny_model.config.stride
    square_calls, square_pixels = _tile_cost(tiny_model, 128, 128)  # 16,384 pixels in 32-px tiles
    thin_calls, thin_pixels = _tile_cost(tiny_model, stride, 16384 // stride)  # as many pixels, one stride tall
    assert thin_calls <= square_calls and thin_pixels <= square_pixels  # squares for it: 4× the calls
    _, row_pixels = _tile_cost(tiny_model, 1, 16384)  # padded to a stride, as the model needs...
    assert row_pixels <= 1.2 * stride * 16384  # ...and no more: 32-px squares of it computed 1.5× that


def test_band_tiles_of_a_thin_photo_match_the_untiled_result(tiny_model: UNetSR) -> None:
    x = as_batch(photo_like(5, 300, seed=8))
    whole = Upscaler(tiny_model, precision="fp32").upscale_tensor(x)
    up = Upscaler(tiny_model, precision="fp32", tile=32, tile_overlap=32)
    assert [box[3] - box[1] for box in up.tile_boxes(5, 300)] == [128, 128, 44]  # 32² px over 5 rows padded to 8
    assert (whole - up.upscale_tensor(x)).abs().max().item() < 1 / 255


def _palette_with_transparency() -> Image.Image:
    image = Image.fromarray((photo_like(12, 16, seed=2) * 255).astype(np.uint8)).quantize(8)
    image.info["transparency"] = 0  # palette entry 0 is see-through
    assert 0 in np.asarray(image)
    return image


@pytest.mark.parametrize("kind, mode", [("I;16", "I;16"), ("P", "RGBA"), ("LA", "LA")])
def test_the_pil_call_reads_an_image_as_read_image_reads_its_file(tiny_model: UNetSR, tmp_path, kind: str,
                                                                   mode: str) -> None:
    from unetsr.imaging.photos import read_image

    grey = photo_like(12, 16, seed=1)[..., 0]
    image = {"I;16": lambda: Image.fromarray((grey * 65535 + 0.5).astype(np.uint16)),
             "P": _palette_with_transparency,
             "LA": lambda: Image.fromarray((np.dstack([grey, 1 - grey]) * 255 + 0.5).astype(np.uint8), "LA")}[kind]()
    up = Upscaler(tiny_model, device="cpu", precision="fp32")
    out = up(image)
    assert out.mode == mode and out.size == (32, 24)  # I;16 used to come back white RGB, P without its alpha
    image.save(tmp_path / "same.png")
    picture = read_image(tmp_path / "same.png")  # what infer reads from the file
    colour = up.upscale_array(picture.rgb)
    expected = colour.mean(axis=2, keepdims=True) if picture.grayscale else colour
    if picture.alpha is not None:
        expected = np.concatenate([expected, up.upscale_array(picture.alpha)[..., None]], axis=2)
    got = np.asarray(out, dtype=np.float32).reshape(24, 32, -1) / (65535 if mode == "I;16" else 255)
    assert got.shape == expected.shape and np.abs(got - np.clip(expected, 0, 1)).max() <= 0.51 / 255


def test_the_ensemble_note_says_what_it_is(tiny_model: UNetSR) -> None:
    assert Upscaler(tiny_model, device="cpu", ensemble=True).ensemble_note == " (x8 self-ensemble)"
    assert Upscaler(tiny_model, device="cpu").ensemble_note == ""
    assert not hasattr(Upscaler, "mode")  # a display label, not a mode: renamed
