"""unetsr: a perceptual-loss U-Net upscaler for photographs.

The public names below are imported on first use, so `import unetsr` (and every command's --help) stays
instant; `from unetsr import Upscaler` loads torch then. `unetsr.train`, `unetsr.infer` and the other
commands are modules of their own (the training loop is `unetsr.training.loop.train`). The layout: docs/architecture.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from unetsr.core.version import __version__

_PUBLIC = {
    "Upscaler": "unetsr.inference.upscaler",
    "shipped_upscaler": "unetsr.inference.choice",
    "choose": "unetsr.inference.choice",
    "ModelPicker": "unetsr.inference.choice",
    "ModelConfig": "unetsr.model.config",
    "UNetSR": "unetsr.model.network",
    "load_checkpoint": "unetsr.model.checkpoint",
    "save_checkpoint": "unetsr.model.checkpoint",
    "load_shipped": "unetsr.model.checkpoint",
    "read_image": "unetsr.imaging.photos",
    "write_image": "unetsr.imaging.photos",
    "TrainConfig": "unetsr.training.recipes",
    "PerceptualLoss": "unetsr.training.losses",
    "export_checkpoint": "unetsr.inference.release",
    "UnetsrError": "unetsr.core.errors",
}
__all__ = ["__version__", *_PUBLIC]

if TYPE_CHECKING:
    from unetsr.core.errors import UnetsrError  # noqa: F401
    from unetsr.imaging.photos import read_image, write_image  # noqa: F401
    from unetsr.inference.choice import ModelPicker, choose, shipped_upscaler  # noqa: F401
    from unetsr.inference.release import export_checkpoint  # noqa: F401
    from unetsr.inference.upscaler import Upscaler  # noqa: F401
    from unetsr.model.checkpoint import load_checkpoint, load_shipped, save_checkpoint  # noqa: F401
    from unetsr.model.config import ModelConfig  # noqa: F401
    from unetsr.model.network import UNetSR  # noqa: F401
    from unetsr.training.losses import PerceptualLoss  # noqa: F401
    from unetsr.training.recipes import TrainConfig  # noqa: F401


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unetsr' has no attribute {name!r}")
