"""The one small frozen dataclass that fully describes a model; saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# The depths at which the encoder can end (each the end of a stage with a feature map worth tapping:
# an encoder of depth d is the first d top-level children of torchvision's ResNet18), with the stride of
# that last feature map: the one table every other module reads.
ENCODER_STRIDES = {3: 2, 5: 4, 6: 8, 7: 16}
ENCODER_DEPTHS = tuple(ENCODER_STRIDES)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a UNetSR model: scale, encoder depth, decoder widths, backbone source.

    `widths` and `blocks` give the decoder's channels and residual blocks at LR resolution (stride 1)
    and at the encoder taps of stride 2, 4, 8 and 16 (only as many as the encoder depth reaches).
    `block_convs` is the shape of every residual block: 2 is conv-ReLU-conv, 3 is
    conv-ReLU-conv-ReLU-conv (ArtCNN's choice). `up_blocks` (even scales only) moves the last x2 of the
    upsampling before the tail: a convolution and pixel shuffle to twice the LR resolution, then this
    many residual blocks of `widths[0]` channels there (EDSR's two-step x4 tail); 0 keeps one sub-pixel step.
    """

    scale: int = 2
    encoder_depth: int = 6
    widths: tuple[int, ...] = (64, 64, 96, 128, 192)
    blocks: tuple[int, ...] = (4, 1, 1, 2, 2)
    backbone: str = "imagenet"
    backbone_seed: int = 0
    block_convs: int = 2
    up_blocks: int = 0

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
        if min(self.widths) < 1 or min(self.blocks) < 0:
            raise ValueError(f"widths must be at least 1 and blocks at least 0, got {self.widths} and {self.blocks}")
        if self.block_convs not in (2, 3):
            raise ValueError(f"block_convs must be 2 or 3, got {self.block_convs}")
        if self.up_blocks < 0 or (self.up_blocks and self.scale % 2):
            raise ValueError(f"up_blocks must be at least 0, and above 0 only at an even scale; got {self.up_blocks} "
                             f"at scale {self.scale}")

    @property
    def stride(self) -> int:
        """The coarsest encoder stride; model inputs are padded to a multiple of it."""
        return ENCODER_STRIDES[self.encoder_depth]

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
