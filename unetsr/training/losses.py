"""Perceptual loss on frozen ResNet18 features (after 3 and after 6 top-level children) plus a small
L1 term on the image, which keeps colour and brightness right, and an optional MSE term (the PSNR objective)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import ResNet
from torchvision.models.resnet import BasicBlock

from unetsr.model.network import ImageNetNormalize


class PerceptualLoss(nn.Module):
    """w3·L1(features after conv1-bn1-relu) + w6·L1(features after layer2) + w_l1·L1(pixels) + w_mse·MSE(pixels).

    One frozen loss network serves both feature terms: a copy of `backbone`'s first six children with each
    batch norm folded into the convolution before it: the same function, with one layer less to run and to
    differentiate through on every step (docs/training.md, Throughput).
    """

    def __init__(self, backbone: ResNet, w3: float, w6: float, w_l1: float, w_mse: float = 0.0) -> None:
        """The weights have no defaults here: they belong to the backbone (training.recipes.backbone_defaults);
        the MSE term is off unless asked for (a last stage on MSE instead of L1)."""
        super().__init__()
        self.w3, self.w6, self.w_l1, self.w_mse = w3, w6, w_l1, w_mse
        self.normalize = ImageNetNormalize()
        conv1, bn1, relu, maxpool, layer1, layer2 = copy.deepcopy(nn.ModuleList(  # the six children, not the rest
            [backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool, backbone.layer1, backbone.layer2])).eval()
        self.to3 = nn.Sequential(fuse_conv_bn_eval(conv1, bn1), relu)
        self.to6 = nn.Sequential(maxpool, fold_batch_norms(layer1), fold_batch_norms(layer2))
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """The loss network never leaves eval mode: its batch-norm statistics are fixed."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of an RGB batch in [0, 1] after 3 and after 6 ResNet18 children."""
        f3 = self.to3(self.normalize(x))
        return f3, self.to6(f3)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted total (differentiable in `pred`) and, as floats for logs, each unweighted term and the total.

        Under autocast the features may be bfloat16; every term is taken in float32.
        """
        terms = {"l1": F.l1_loss(pred.float(), target.float())}
        if self.w_mse:
            terms["mse"] = F.mse_loss(pred.float(), target.float())
        if self.w3 or self.w6:  # a pixel-loss-only run skips the loss network
            with torch.no_grad():
                t3, t6 = self.features(target)
            p3, p6 = self.features(pred)
            terms = {"feat3": F.l1_loss(p3.float(), t3.float()), "feat6": F.l1_loss(p6.float(), t6.float()), **terms}
        weights = {"l1": self.w_l1, "mse": self.w_mse, "feat3": self.w3, "feat6": self.w6}
        total = sum(weights[k] * v for k, v in terms.items())
        return total, {**{k: v.item() for k, v in terms.items()}, "total": total.item()}


def fold_batch_norms(layer: nn.Sequential) -> nn.Sequential:
    """A ResNet layer (of BasicBlocks, in eval mode) with every batch norm folded into its convolution."""
    for block in layer:
        assert isinstance(block, BasicBlock)
        block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
        block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
        if block.downsample is not None:
            block.downsample = fuse_conv_bn_eval(block.downsample[0], block.downsample[1])
    return layer
