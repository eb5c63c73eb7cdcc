import pytest

from unetsr import models
from unetsr.checkpoint import SHIPPED, load_shipped
from unetsr.errors import CheckpointError


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
        assert up.scale == int(name[1:]) and up.name == f"shipped {name} model"
    assert models.shipped_upscaler(4.0, device="cpu").scale == (4 if "x4" in models.installed() else 2)
    with pytest.raises(CheckpointError, match="no shipped model"):
        load_shipped("x8")
