"""The shipped model set and how one is chosen: the x4 model for the scales where it was measured to
beat passes of the x2 model, the x2 model for the rest (README, model card)."""

from __future__ import annotations

from typing import Any

from .checkpoint import SHIPPED, WEIGHTS_DIR
from .upscaler import Upscaler

X4_FROM_SCALE = 3.0
"""Scales from this one up use the x4 model (one pass, then the exact-size resize), when it is installed."""


def installed() -> list[str]:
    """Names of the shipped models present and recorded ('x2', 'x4')."""
    return [name for name, sha in SHIPPED.items() if sha is not None and (WEIGHTS_DIR / f"unetsr_{name}.pt").is_file()]


def shipped_name_for(outscale: float) -> str:
    """The shipped model to use for `outscale`: 'x4' from X4_FROM_SCALE up (if installed), else 'x2'."""
    return "x4" if outscale >= X4_FROM_SCALE and "x4" in installed() else "x2"


def shipped_upscaler(outscale: float | None = None, name: str | None = None, **kwargs: Any) -> Upscaler:
    """An Upscaler over the shipped model named `name`, or the one chosen for `outscale` (default x2)."""
    from .checkpoint import load_shipped  # noqa: PLC0415

    name = name or (shipped_name_for(outscale) if outscale else "x2")
    upscaler = Upscaler(load_shipped(name).model, **kwargs)
    upscaler.name = f"shipped {name} model"
    return upscaler
