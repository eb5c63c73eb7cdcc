"""Training settings as data: `TrainConfig` (saved in every checkpoint), the defaults that depend on the
backbone, and recipes, the JSON files under `unetsr/training/recipes/` that name the shipped models' settings.

Pure Python: importing it (as `python -m unetsr.train --help` does) loads no torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

RECIPES_DIR = Path(__file__).parent / "recipes"
# The kernels training can make its LR with (`data.downscale`): antialiased torch interpolation modes.
DOWNSCALE_MODES = ("bilinear", "bicubic", "area")

# Fields a resumed run may change; every other one must match the saved run.
CHANGEABLE_ON_RESUME = frozenset({"steps", "workers", "val_every", "ckpt_every", "log_every", "val", "out",
                                  "data", "init"})

# The loss weights and learning rate that won for each backbone (docs/model-card.md). The design's
# defaults are for ImageNet features; random features pull away from the target unless L1 dominates.
BACKBONE_DEFAULTS: dict[str, dict[str, float]] = {
    "imagenet": {"w3": 1.0, "w6": 1.0, "w_l1": 0.01, "lr": 2e-3},
    "random": {"w3": 0.02, "w6": 0.02, "w_l1": 1.0, "lr": 1e-3},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run besides the model; saved in its checkpoints."""

    data: tuple[str, ...]
    out: str
    val: tuple[str, ...] = ()
    steps: int = 20000
    batch: int = 16
    crop: int = 96
    min_crop: int = 0  # smallest HR crop side before downscaling to `crop` (0: `crop`; never smaller)
    max_crop: int = 0  # largest HR crop side (0: the photo's short side)
    photo_downscale: float = 1.0  # shrink each photo by this factor before cropping
    downscalers: tuple[str, ...] = DOWNSCALE_MODES  # LR kernels, one drawn per crop (repeat a name to weight it)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    clip: float = 1.0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off); checkpoints hold the average
    w3: float = 0.02
    w6: float = 0.02
    w_l1: float = 1.0
    degrade: str = "none"  # a preset of degradations.PRESETS applied to the training LR (jpeg, photo, mild)
    val_quality: int = 0  # save the validation LR as JPEG at this quality (0: clean LR)
    precision: str = "auto"  # auto: bf16 where the CPU/GPU has it, else fp32 (fp16 AMP on old GPUs)
    seed: int = 0
    workers: int = 1
    val_every: int = 500
    ckpt_every: int = 100
    log_every: int = 20
    init: str = ""  # a checkpoint to warm-start the decoder from (fresh optimiser, step 0)
    recipe: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples as lists), so a checkpoint stays loadable with weights_only=True."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from `to_dict`, ignoring keys this version does not know."""
        known = {f.name: f for f in fields(cls)}
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        if isinstance(d.get("degrade"), bool):  # before presets, --degrade was an on/off flag
            d["degrade"] = "mild" if d["degrade"] else "none"
        return cls(**d)


def train_field_names() -> list[str]:
    """The names of TrainConfig's fields, in order."""
    return [f.name for f in fields(TrainConfig)]


def recipe_names() -> list[str]:
    """The recipes shipped with unetsr (file names under unetsr/training/recipes without .json)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def load_recipe(name: str) -> dict[str, dict[str, Any]]:
    """A recipe by name (`x2`) or path to a JSON file: {"model": ModelConfig fields, "train": TrainConfig fields}."""
    path = Path(name) if name.endswith(".json") else RECIPES_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no recipe {name!r}: choose one of {', '.join(recipe_names())} or give a .json path")
    try:
        recipe = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"recipe {path} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(recipe, dict) or not set(recipe) <= {"model", "train", "note"}:
        raise ValueError(f"recipe {path}: expected an object with 'model' and 'train' objects")
    return {"model": dict(recipe.get("model", {})), "train": dict(recipe.get("train", {}))}
