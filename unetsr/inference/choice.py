"""The shipped model set and how one is chosen for a file: the x4 model for the scales where it was
measured to beat passes of the x2 model, the x2 JPEG model for visibly compressed JPEGs, and the clean
x2 model for the rest (docs/model-card.md). The model for sharpened photos is chosen by the user
(`--model sharpened`): nothing in a file's pixels or header was found to tell a sharpened photo reliably."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetsr.imaging.jpeg import jpeg_quality
from unetsr.inference.upscaler import Upscaler
from unetsr.model import checkpoint

X4_FROM_SCALE = 3.0
"""Scales from this one up use the x4 model (one pass, then the exact-size resize), when it is installed."""

JPEG_BELOW = 90
"""JPEG inputs whose estimated quality is below this use the JPEG model (measured: docs/model-card.md)."""

JPEG_MODEL = "x2_jpeg"
SHARPENED_MODEL = "x2_sharpened"
"""For photos a camera or editor sharpened: it undoes the halos the clean model would draw larger."""
MODEL_CHOICES = ("auto", "clean", "jpeg", "sharpened")
FORCED = {"jpeg": JPEG_MODEL, "sharpened": SHARPENED_MODEL}
"""The --model choices that name one shipped x2 model, run as passes at every scale."""


@dataclass(frozen=True)
class Choice:
    """The shipped model picked for a file, and why (shown on the file's line)."""

    name: str
    reason: str


def installed() -> list[str]:
    """Names of the shipped models present and recorded ('x2', 'x4', 'x2_jpeg'): only names of SHIPPED, never
    another file found beside them."""
    return [name for name, sha in checkpoint.SHIPPED.items()
            if sha is not None and checkpoint.shipped_path(name).is_file()]


def model_scale(name: str) -> int:
    """The scale of a shipped model from its name: 'x4' -> 4, 'x2_jpeg' -> 2."""
    return int(name[1:].split("_")[0])


def shipped_name_for(outscale: float) -> str:
    """The clean shipped model for `outscale`: 'x4' from X4_FROM_SCALE up (if installed), else 'x2'."""
    return "x4" if outscale >= X4_FROM_SCALE and "x4" in installed() else "x2"


def choose(path: str | Path | None, outscale: float, model: str = "auto") -> Choice:
    """The shipped model for the file at `path` upscaled by `outscale`: with `model` 'auto', as
    `choose_for_quality` decides from the file's estimated JPEG quality; 'clean', 'jpeg' and 'sharpened' force one."""
    if model not in MODEL_CHOICES:
        raise ValueError(f"unknown model choice {model!r}; one of {', '.join(MODEL_CHOICES)}")
    if model != "auto":
        return Choice(FORCED.get(model) or shipped_name_for(outscale), f"--model {model}")
    return choose_for_quality(outscale, jpeg_quality(path) if path is not None else None)


def choose_for_quality(outscale: float, quality: int | None) -> Choice:
    """The shipped model for an input of JPEG `quality` (None: not a JPEG) upscaled by `outscale`: the
    JPEG model below JPEG_BELOW at every scale (at x3 and x4 its passes beat the clean x4 model on JPEG
    q75 inputs: model card); the clean model otherwise."""
    clean = shipped_name_for(outscale)
    if quality is None:
        return Choice(clean, "not a JPEG")
    if quality >= JPEG_BELOW:
        return Choice(clean, f"JPEG q≈{quality}, high quality (≥ {JPEG_BELOW})")
    if JPEG_MODEL not in installed():
        return Choice(clean, f"JPEG q≈{quality}, but no JPEG model is installed")
    return Choice(JPEG_MODEL, f"JPEG q≈{quality}")


def shipped_upscaler(outscale: float | None = None, name: str | None = None, **kwargs: Any) -> Upscaler:
    """An Upscaler over the shipped model named `name`, or the clean one chosen for `outscale` (default x2),
    SHA-256-checked (`Upscaler.from_shipped`)."""
    return Upscaler.from_shipped(name or (shipped_name_for(outscale) if outscale else "x2"), **kwargs)


class ModelPicker:
    """The upscaler for each file: the shipped model `choose` names (each loaded once, when first
    needed), or always `fixed` (a --checkpoint). `default` is the one for files that are not JPEGs."""

    def __init__(self, outscale: float, model: str = "auto", fixed: Upscaler | None = None, **options: Any) -> None:
        self.outscale, self.model, self.fixed, self.options = outscale, model, fixed, options
        self._loaded: dict[str, Upscaler] = {}
        self.default = fixed or self._get(choose(None, outscale, model).name)  # a forced model, or the clean one

    def _get(self, name: str) -> Upscaler:
        if name not in self._loaded:
            self._loaded[name] = shipped_upscaler(name=name, **self.options)
        return self._loaded[name]

    def for_file(self, path: str | Path) -> tuple[Upscaler, str]:
        """(upscaler, why it was chosen) for one input file; the reason is empty for a fixed model."""
        if self.fixed is not None:
            return self.fixed, ""
        choice = choose(path, self.outscale, self.model)
        return self._get(choice.name), choice.reason
