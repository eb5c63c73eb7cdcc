"""Perceptual loss on frozen ResNet18 features (after 3 and after 6 top-level children) plus a small
L1 term on the image, which keeps colour and brightness right."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet

from unetsr.model.network import ImageNetNormalize


class PerceptualLoss(nn.Module):
    """w3·L1(features after conv1-bn1-relu) + w6·L1(features after layer2) + w_l1·L1(pixels).

    One frozen loss network serves both feature terms; pass the model's own backbone to share it.
    """

    def __init__(self, backbone: ResNet, w3: float, w6: float, w_l1: float) -> None:
        """The weights have no defaults here: they belong to the backbone (training.recipes.backbone_defaults)."""
        super().__init__()
        self.w3, self.w6, self.w_l1 = w3, w6, w_l1
        self.normalize = ImageNetNormalize()
        self.to3 = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu)
        self.to6 = nn.Sequential(backbone.maxpool, backbone.layer1, backbone.layer2)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """The loss network never leaves eval mode: its batch-norm statistics are fixed."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of an RGB batch in [0, 1] after 3 and after 6 ResNet18 children."""
        f3 = self.to3(self.normalize(x))
        return f3, self.to6(f3)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted total (differentiable in `pred`) and, as floats for logs, each unweighted term and the total.

        Under autocast the features may be bfloat16; every L1 is taken in float32.
        """
        with torch.no_grad():
            t3, t6 = self.features(target)
        p3, p6 = self.features(pred)
        terms = {"feat3": F.l1_loss(p3.float(), t3.float()), "feat6": F.l1_loss(p6.float(), t6.float()),
                 "l1": F.l1_loss(pred.float(), target.float())}
        total = self.w3 * terms["feat3"] + self.w6 * terms["feat6"] + self.w_l1 * terms["l1"]
        return total, {**{k: v.item() for k, v in terms.items()}, "total": total.item()}
