import pytest

from unetsr.core.errors import CheckpointError
from unetsr.inference import choice as models
from unetsr.model.checkpoint import SHIPPED, load_shipped


@pytest.mark.parametrize(("scale", "expected"), [(1.5, "x2"), (2, "x2"), (2.9, "x2"), (3, "x4"), (4, "x4"), (8, "x4")])
def test_the_x4_model_serves_scales_from_three_up(monkeypatch: pytest.MonkeyPatch, scale: float, expected: str) -> None:
    monkeypatch.setattr(models, "installed", lambda: ["x2", "x4"])
    assert models.shipped_name_for(scale) == expected


def test_without_an_x4_model_every_scale_uses_x2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "installed", lambda: ["x2"])
    assert {models.shipped_name_for(s) for s in (2, 3, 4, 8)} == {"x2"}


def test_shipped_models_are_recorded_and_chosen_by_name() -> None:
    assert "x2" in models.installed() and set(models.installed()) <= set(SHIPPED)
    for name in models.installed():
        up = models.shipped_upscaler(name=name, device="cpu")
        assert up.scale == models.model_scale(name) and up.name == f"shipped {name} model"
    assert models.shipped_upscaler(4.0, device="cpu").scale == (4 if "x4" in models.installed() else 2)
    with pytest.raises(CheckpointError, match="no shipped model"):
        load_shipped("x8")


def test_every_way_to_a_shipped_model_goes_through_its_sha256_check(monkeypatch, tiny_model) -> None:
    from unetsr.inference import upscaler as upscaler_module
    from unetsr.inference.upscaler import Upscaler
    from unetsr.model import checkpoint

    checked: list[tuple[str, str | None]] = []

    def load(path, expected_sha256=None):
        checked.append((path.name, expected_sha256))
        return checkpoint.Checkpoint(tiny_model)

    monkeypatch.setattr(models, "installed", lambda: ["x2", "x4", "x2_jpeg"])
    monkeypatch.setattr(checkpoint, "load_checkpoint", load)  # what load_shipped calls, with the recorded SHA-256
    monkeypatch.setattr(upscaler_module, "load_checkpoint", lambda *a, **k: pytest.fail("loaded without its SHA-256"))
    checkpoint.load_default()
    assert Upscaler.from_checkpoint(device="cpu").name == "shipped x2 model"
    assert Upscaler.from_shipped("x4", device="cpu").name == "shipped x4 model"
    models.shipped_upscaler(name="x2_jpeg", device="cpu")
    models.ModelPicker(4.0, device="cpu")
    assert checked == [(f"unetsr_{name}.pt", SHIPPED[name]) for name in ("x2", "x2", "x4", "x2_jpeg", "x4")]


def _saved_jpeg(path, quality: int):
    import numpy as np
    from helpers import photo_like
    from PIL import Image

    Image.fromarray((photo_like(32, 40) * 255).astype(np.uint8)).save(path, quality=quality)
    return path


@pytest.mark.parametrize(("quality", "expected"), [(40, "x2_jpeg"), (models.JPEG_BELOW - 1, "x2_jpeg"),
                                                   (models.JPEG_BELOW, "x2"), (97, "x2")])
def test_jpegs_below_the_threshold_get_the_jpeg_model(monkeypatch, tmp_path, quality: int, expected: str) -> None:
    monkeypatch.setattr(models, "installed", lambda: ["x2", "x4", "x2_jpeg"])
    choice = models.choose(_saved_jpeg(tmp_path / "a.jpg", quality), 2.0)
    assert choice.name == expected and f"q≈{quality}" in choice.reason


def test_other_files_and_forced_choices(monkeypatch, tmp_path, photo_png) -> None:
    monkeypatch.setattr(models, "installed", lambda: ["x2", "x4", "x2_jpeg"])
    jpeg = _saved_jpeg(tmp_path / "b.jpg", 60)
    assert models.choose(photo_png, 2.0) == models.Choice("x2", "not a JPEG")
    assert models.choose(photo_png, 4.0).name == "x4"
    assert models.choose(jpeg, 4.0) == models.Choice("x2_jpeg", "JPEG q≈60")  # twice: better than x4 on JPEGs
    assert models.choose(_saved_jpeg(tmp_path / "c.jpg", 95), 4.0).name == "x4"
    monkeypatch.setattr(models, "installed", lambda: ["x2", "x4"])  # without the JPEG model: the clean one
    assert models.choose(jpeg, 4.0) == models.Choice("x4", "JPEG q≈60, but no JPEG model is installed")
    monkeypatch.setattr(models, "installed", lambda: ["x2", "x4", "x2_jpeg"])
    assert models.choose(photo_png, 2.0, "jpeg") == models.Choice("x2_jpeg", "--model jpeg")
    assert models.choose(jpeg, 2.0, "clean") == models.Choice("x2", "--model clean")
    assert models.choose(jpeg, 4.0, "sharpened") == models.Choice("x2_sharpened", "--model sharpened")  # passes
    renamed = tmp_path / "really_a_jpeg.png"  # the content decides, not the suffix
    renamed.write_bytes(jpeg.read_bytes())
    assert models.choose(renamed, 2.0).name == "x2_jpeg"
    with pytest.raises(ValueError, match="unknown model choice"):
        models.choose(jpeg, 2.0, "sharp")


def test_without_a_jpeg_model_jpegs_get_the_clean_one_and_say_why(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(models, "installed", lambda: ["x2"])
    choice = models.choose(_saved_jpeg(tmp_path / "c.jpg", 50), 2.0)
    assert choice.name == "x2" and "no JPEG model" in choice.reason


def test_the_picker_loads_each_model_once(monkeypatch, tmp_path, photo_png, tiny_model) -> None:
    from unetsr.inference.upscaler import Upscaler

    loads: list[str] = []

    def fake_shipped(outscale=None, name=None, **kw):
        loads.append(name)
        up = Upscaler(tiny_model, device="cpu")
        up.name = f"shipped {name} model"
        return up

    monkeypatch.setattr(models, "installed", lambda: ["x2", "x2_jpeg"])
    monkeypatch.setattr(models, "shipped_upscaler", fake_shipped)
    picker = models.ModelPicker(2.0)
    jpeg = _saved_jpeg(tmp_path / "d.jpg", 70)
    picks = [picker.for_file(p) for p in (photo_png, jpeg, photo_png, jpeg)]
    assert [up.name for up, _ in picks] == ["shipped x2 model", "shipped x2_jpeg model"] * 2
    assert loads == ["x2", "x2_jpeg"] and picks[1][1] == "JPEG q≈70"
    fixed = Upscaler(tiny_model, device="cpu")
    assert models.ModelPicker(2.0, fixed=fixed).for_file(jpeg) == (fixed, "")


def test_the_infer_help_states_the_threshold_in_use() -> None:
    from unetsr.infer import build_parser

    assert f"below {models.JPEG_BELOW} " in " ".join(build_parser().format_help().split())


def test_infer_offers_every_model_choice() -> None:
    from unetsr.infer import build_parser

    action = next(a for a in build_parser()._actions if a.dest == "model")
    assert tuple(action.choices) == models.MODEL_CHOICES and set(models.FORCED.values()) <= set(SHIPPED)
