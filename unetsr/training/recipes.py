"""Training settings as data: `TrainConfig` (saved in every checkpoint), the defaults that depend on the
backbone, and recipes, the JSON files under `unetsr/training/recipes/` that name the shipped models' settings.

Pure Python: importing it (as `python -m unetsr.train --help` does) loads no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from unetsr.core.precision import PRECISIONS

RECIPES_DIR = Path(__file__).parent / "recipes"
# The kernels training can make its LR with (`data.downscale`): antialiased torch interpolation modes.
DOWNSCALE_MODES = ("bilinear", "bicubic", "area")

# Fields a resumed run may change; every other one must match the saved run.
CHANGEABLE_ON_RESUME = frozenset({"steps", "workers", "cache_mb", "val_every", "ckpt_every", "log_every", "val", "out",
                                  "data", "init"})

# The loss weights and learning rate that won for each backbone (docs/model-card.md). The design's
# defaults are for ImageNet features; random features pull away from the target unless L1 dominates.
BACKBONE_DEFAULTS: dict[str, dict[str, float]] = {
    "imagenet": {"w3": 1.0, "w6": 1.0, "w_l1": 0.01, "lr": 2e-3},
    "random": {"w3": 0.02, "w6": 0.02, "w_l1": 1.0, "lr": 1e-3},
}


def backbone_defaults(backbone: str) -> dict[str, float]:
    """The loss weights and learning rate for a backbone: a local .pth counts as ImageNet-like features."""
    return BACKBONE_DEFAULTS["random" if backbone == "random" else "imagenet"]


@dataclass(frozen=True)
class Range:
    """What a number setting may hold; the one check behind the flags, recipe files and library callers."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low end itself is not allowed
    high_open: bool = False

    def check(self, name: str, value: Any) -> int | float:
        """`value` as the setting's kind, or ValueError saying what it must be."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.kind is int and
                                                                              not float(value).is_integer()):
            raise ValueError(f"{name} must be a {'whole number' if self.kind is int else 'number'}, got {value!r}")
        value = self.kind(value)
        if not math.isfinite(value) or (self.low is not None and (value < self.low or (self.low_open and value == self.low))) \
                or (self.high is not None and (value > self.high or (self.high_open and value == self.high))):
            raise ValueError(f"{name} must be {self.describe()}, got {value:g}")
        return value

    def describe(self) -> str:
        """In words: 'at least 1', 'greater than 0 and at most 1', ..."""
        low = None if self.low is None else f"{'greater than' if self.low_open else 'at least'} {self.low:g}"
        high = None if self.high is None else f"{'less than' if self.high_open else 'at most'} {self.high:g}"
        return " and ".join(p for p in (low, high) if p) or "a finite number"


RANGES: dict[str, Range] = {
    "steps": Range(int, 1), "batch": Range(int, 1, 4096), "crop": Range(int, 8, 1024), "min_crop": Range(int, 0),
    "max_crop": Range(int, 0), "photo_downscale": Range(float, 1.0, 16.0), "lr": Range(float, 0, 1, low_open=True),
    "weight_decay": Range(float, 0.0, 1.0), "warmup": Range(int, 0), "clip": Range(float, 0, low_open=True),
    "ema": Range(float, 0.0, 1.0, high_open=True), "w3": Range(float, 0.0), "w6": Range(float, 0.0),
    "w_l1": Range(float, 0.0), "w_mse": Range(float, 0.0), "seed": Range(int, 0), "workers": Range(int, 0, 64), "cache_mb": Range(int, 0, 1 << 20), "val_every": Range(int, 1),
    "ckpt_every": Range(int, 1), "log_every": Range(int, 1), "val_quality": Range(int, 0, 100),
}
"""Every number setting of TrainConfig and what it may hold."""


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
    lr: float | None = None  # None: the backbone's (BACKBONE_DEFAULTS), filled in by `for_backbone`
    weight_decay: float = 1e-4
    warmup: int = 200
    clip: float = 1.0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off); checkpoints hold the average
    w3: float | None = None  # loss weights; None: the backbone's, as lr
    w6: float | None = None
    w_l1: float | None = None
    w_mse: float = 0.0  # weight of an MSE term on the pixels (0: off); a last stage may trade L1 for it
    degrade: str = "none"  # a preset of degradations.PRESETS applied to the training LR (jpeg, photo, mild)
    val_quality: int = 0  # save the validation LR as JPEG at this quality (0: clean LR)
    precision: str = "auto"  # auto: bf16 where the CPU/GPU has it, else fp32 (fp16 AMP on old GPUs)
    seed: int = 0
    workers: int = 1
    cache_mb: int = 4096  # decoded photos kept in memory per loader process; photos beyond it are decoded again
    val_every: int = 500
    ckpt_every: int = 100
    log_every: int = 20
    init: str = ""  # a checkpoint to warm-start the decoder from (fresh optimiser, step 0)
    recipe: str = ""

    def __post_init__(self) -> None:
        """Every setting checked where the config is built, so flags, recipes and library callers agree."""
        for name, value in (("data", self.data), ("val", self.val), ("downscalers", self.downscalers)):
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name, limits in RANGES.items():
            value = getattr(self, name)
            if value is not None or name not in BACKBONE_DEFAULTS["random"]:
                object.__setattr__(self, name, limits.check(name, value))
        if not self.downscalers or set(self.downscalers) - set(DOWNSCALE_MODES):
            raise ValueError(f"downscalers must be some of {', '.join(DOWNSCALE_MODES)}, got {list(self.downscalers)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        from unetsr.training.degradations import PRESETS  # noqa: PLC0415 - numpy and PIL, no torch

        if self.degrade not in PRESETS:
            raise ValueError(f"degrade must be one of {', '.join(PRESETS)}, got {self.degrade!r}")
        if self.max_crop and self.max_crop < self.crop:
            raise ValueError(f"max_crop ({self.max_crop}) must be 0 or at least crop ({self.crop})")
        for name in ("out", "init", "recipe"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be text, got {getattr(self, name)!r}")

    def for_backbone(self, backbone: str) -> "TrainConfig":
        """This config with every loss weight and the learning rate it leaves open set for `backbone`."""
        defaults = backbone_defaults(backbone)
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

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

    @classmethod
    def from_recipe(cls, d: dict[str, Any], where: str) -> "TrainConfig":
        """Build from a recipe's (or the command line's) values: unknown names are refused, not ignored."""
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(d) - known):
            raise ValueError(f"{where}: unknown setting {unknown[0]!r}; the settings are {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


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
    if not isinstance(recipe, dict) or not set(recipe) <= {"model", "train", "note"} or \
            not all(isinstance(recipe.get(k, {}), dict) for k in ("model", "train")):
        raise ValueError(f"recipe {path.name}: expected an object with 'model' and 'train' objects")
    from unetsr.model.config import ModelConfig  # noqa: PLC0415 - pure Python

    model_names = {f.name for f in fields(ModelConfig)}
    if unknown := sorted(set(recipe.get("model", {})) - model_names):
        raise ValueError(f"recipe {path.name}: unknown model setting {unknown[0]!r}; the settings are "
                         f"{', '.join(sorted(model_names))}")
    train_names = {f.name for f in fields(TrainConfig)} - {"data", "out", "recipe"}
    if unknown := sorted(set(recipe.get("train", {})) - train_names):
        raise ValueError(f"recipe {path.name}: unknown setting {unknown[0]!r}; the settings are "
                         f"{', '.join(sorted(train_names))}")
    return {"model": dict(recipe.get("model", {})), "train": dict(recipe.get("train", {}))}
