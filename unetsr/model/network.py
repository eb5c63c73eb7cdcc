"""UNetSR: a frozen ResNet18 encoder, trainable decoder blocks fused U-Net style, and a sub-pixel
residual added to bilinear upsampling of the input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet, resnet18

from unetsr.model.backbone import load_resnet18
from unetsr.model.config import ENCODER_STRIDES, ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TAP_CHANNELS = (64, 64, 128, 256)  # ResNet18 channels after relu, layer1, layer2, layer3


class ImageNetNormalize(nn.Module):
    """Maps RGB in [0, 1] to the ImageNet-normalised input ResNet18 expects."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ResBlock(nn.Module):
    """conv-act-conv (or conv-act-conv-act-conv when `convs` is 3) plus identity skip: the decoder's unit."""

    def __init__(self, channels: int, convs: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1) if convs == 3 else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        if self.conv3 is not None:
            y = self.conv3(self.act(y))
        return x + y


def encoder_stages(net: ResNet, depth: int) -> nn.ModuleList:
    """ResNet18's first `depth` top-level children, grouped into stages that end at strides 2, 4, 8, 16."""
    stages = [
        nn.Sequential(net.conv1, net.bn1, net.relu),
        nn.Sequential(net.maxpool, net.layer1),
        net.layer2,
        net.layer3,
    ]
    return nn.ModuleList(stages[:list(ENCODER_STRIDES).index(depth) + 1])


class UNetSR(nn.Module):
    """Upscales RGB in [0, 1] by `config.scale`: bilinear(x) + residual predicted from encoder features."""

    def __init__(self, config: ModelConfig, backbone: ResNet | None = None) -> None:
        """Builds the model; `backbone` supplies encoder weights (default: an uninitialised ResNet18
        whose weights a checkpoint or `build_model` fills in)."""
        super().__init__()
        self.config = config
        self.normalize = ImageNetNormalize()
        self.encoder = encoder_stages(backbone if backbone is not None else resnet18(weights=None),
                                      config.encoder_depth)
        self.encoder.requires_grad_(False)
        levels = len(self.encoder)
        w, blocks = config.widths, config.blocks
        self.lateral = nn.ModuleList(nn.Conv2d(TAP_CHANNELS[i], w[i + 1], 1) for i in range(levels))
        self.fuse = nn.ModuleList(
            nn.Sequential(*(ResBlock(w[i + 1], config.block_convs) for _ in range(blocks[i + 1]))) for i in range(levels)
        )
        self.reduce = nn.ModuleList(nn.Conv2d(w[i + 1], w[i], 1) for i in range(levels))
        self.head = nn.Conv2d(3, w[0], 3, padding=1)
        self.body = nn.Sequential(*(ResBlock(w[0], config.block_convs) for _ in range(blocks[0])))
        tail_scale = config.scale // 2 if config.up_blocks else config.scale
        self.up = (nn.Sequential(nn.Conv2d(w[0], 4 * w[0], 3, padding=1), nn.PixelShuffle(2),
                                 *(ResBlock(w[0], config.block_convs) for _ in range(config.up_blocks)))
                   if config.up_blocks else nn.Identity())
        self.tail = nn.Conv2d(w[0], 3 * tail_scale**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(tail_scale)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.encoder.eval()

    def train(self, mode: bool = True) -> "UNetSR":
        """Switches the decoder's mode; the frozen encoder always stays in eval (fixed batch-norm stats)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) in [0, 1] -> (B, 3, H*scale, W*scale), not clamped."""
        return self.base(x) + self.residual(x)

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """Bilinear upsampling of the input: what the residual corrects."""
        return F.interpolate(x, scale_factor=self.config.scale, mode="bilinear", align_corners=False)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's prediction, computed at LR resolution (then at 2x LR with `up_blocks`) and
        upsampled late by pixel shuffle."""
        h, w = x.shape[-2:]
        z = self.normalize(pad_to_stride(x, self.config.stride))
        taps = []
        with torch.no_grad():
            feat = z
            for stage in self.encoder:
                feat = stage(feat)
                taps.append(feat)
        y = None
        for i in reversed(range(len(taps))):
            lat = self.lateral[i](taps[i])
            y = lat if y is None else lat + _up2(y)
            y = self.reduce[i](self.fuse[i](y))
        y = self.body(self.head(z) + _up2(y))
        out = self.shuffle(self.tail(self.up(y)))
        return out[..., : h * self.config.scale, : w * self.config.scale]


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def build_model(config: ModelConfig) -> UNetSR:
    """A fresh model whose frozen encoder holds the backbone weights the config names."""
    return UNetSR(config, load_resnet18(config.backbone, config.backbone_seed))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """(..., H, W) padded at the bottom and right, by edge replication, to multiples of `stride`."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % stride, 0, -h % stride), mode="replicate")
