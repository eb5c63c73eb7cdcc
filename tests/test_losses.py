import pytest
import torch
import torch.nn.functional as F
from helpers import as_batch, photo_like

from unetsr.model.backbone import load_resnet18
from unetsr.model.config import ModelConfig
from unetsr.model.network import UNetSR
from unetsr.training.losses import PerceptualLoss

LOSS_WEIGHTS = {"w3": 1.0, "w6": 1.0, "w_l1": 0.01}


def test_the_weights_have_one_owner_the_backbone() -> None:
    """No second set of loss weights hides in the loss: they must be given, and come from the backbone's."""
    with pytest.raises(TypeError):
        PerceptualLoss(load_resnet18("random"))  # type: ignore[call-arg]
    from unetsr.training.recipes import BACKBONE_DEFAULTS, TrainConfig

    cfg = TrainConfig(data=("photos",), out="run").for_backbone("random")
    assert (cfg.w3, cfg.w6, cfg.w_l1, cfg.lr) == tuple(BACKBONE_DEFAULTS["random"][k] for k in ("w3", "w6", "w_l1", "lr"))
    cfg = TrainConfig(data=("photos",), out="run", w_l1=0.5).for_backbone("imagenet")
    assert (cfg.w3, cfg.w_l1) == (BACKBONE_DEFAULTS["imagenet"]["w3"], 0.5)


def blur(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, stride=1)


def test_zero_for_identical_images_and_grows_with_blur() -> None:
    loss_fn = PerceptualLoss(load_resnet18("random"), **LOSS_WEIGHTS)
    x = as_batch(photo_like(64, 64))
    zero, terms = loss_fn(x, x)
    assert zero.item() == 0 and all(v == 0 for v in terms.values())
    losses = [loss_fn(blur(x, k), x)[0].item() for k in (3, 5, 9)]
    assert 0 < losses[0] < losses[1] < losses[2]


def test_weights_combine_the_terms() -> None:
    backbone = load_resnet18("random")
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    total, terms = PerceptualLoss(backbone, w3=2.0, w6=0.5, w_l1=3.0)(x, y)
    expected = 2.0 * terms["feat3"] + 0.5 * terms["feat6"] + 3.0 * terms["l1"]
    assert abs(total.item() - expected) < 1e-5 and terms["total"] == total.item()


def test_gradients_reach_the_decoder_not_the_encoder_or_loss_network() -> None:
    backbone = load_resnet18("random")
    model = UNetSR(ModelConfig(widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1, 1), backbone="random"), backbone)
    loss_fn = PerceptualLoss(backbone, **LOSS_WEIGHTS)  # one shared frozen network for model and both loss terms
    assert loss_fn.to3[0] is model.encoder[0][0]
    torch.nn.init.normal_(model.tail.weight, std=0.01)
    model.train()
    loss_fn.train()
    assert not loss_fn.training and not backbone.training
    loss, _ = loss_fn(model(torch.rand(2, 3, 16, 16)), torch.rand(2, 3, 32, 32))
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0 and model.fuse[0][0].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.parameters())
