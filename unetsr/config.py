"""The one small frozen dataclass that fully describes a model; saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# Top-level children of torchvision's ResNet18, in order. An encoder of depth d uses children[:d].
RESNET18_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
# The depths at which the encoder can end, each the end of a stage with a feature map worth tapping.
ENCODER_DEPTHS = (3, 5, 6, 7)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a UNetSR model: scale, encoder depth, decoder widths, backbone source.

    `widths` and `blocks` give the decoder's channels and residual blocks at LR resolution (stride 1)
    and at the encoder taps of stride 2, 4, 8 and 16 (only as many as the encoder depth reaches).
    """

    scale: int = 2
    encoder_depth: int = 6
    widths: tuple[int, ...] = (32, 64, 96, 128, 192)
    blocks: tuple[int, ...] = (2, 1, 1, 2, 2)
    backbone: str = "imagenet"
    backbone_seed: int = 0

    def __post_init__(self) -> None:
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4 for a model, got {self.scale}")
        if self.encoder_depth not in ENCODER_DEPTHS:
            raise ValueError(f"encoder_depth must be one of {ENCODER_DEPTHS}, got {self.encoder_depth}")
        for name in ("widths", "blocks"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 5:
                raise ValueError(f"{name} needs five entries: strides 1, 2, 4, 8 and 16")
            object.__setattr__(self, name, value)

    @property
    def stride(self) -> int:
        """The coarsest encoder stride; model inputs are padded to a multiple of it."""
        return {3: 2, 5: 4, 6: 8, 7: 16}[self.encoder_depth]

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so a checkpoint stays loadable with weights_only=True."""
        d = asdict(self)
        d["widths"], d["blocks"] = list(self.widths), list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Rebuild from `to_dict`, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
