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
    loss_fn = PerceptualLoss(backbone, **LOSS_WEIGHTS)
    torch.nn.init.normal_(model.tail.weight, std=0.01)
    model.train()
    loss_fn.train()
    assert not loss_fn.training and not backbone.training
    loss, _ = loss_fn(model(torch.rand(2, 3, 16, 16)), torch.rand(2, 3, 32, 32))
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0 and model.fuse[0][0].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.parameters())


def test_folded_loss_network_computes_the_backbones_features() -> None:
    # The loss folds each batch norm into its convolution: its features are those of the backbone's own
    # children (with their batch norms, in eval mode), computed here the plain way.
    backbone = load_resnet18("random", seed=3)
    for bn in (backbone.bn1, backbone.layer1[0].bn2, backbone.layer2[0].downsample[1]):  # statistics that matter
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    backbone.eval()
    loss_fn = PerceptualLoss(backbone, **LOSS_WEIGHTS)
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        f3 = backbone.relu(backbone.bn1(backbone.conv1(loss_fn.normalize(x))))
        f6 = backbone.layer2(backbone.layer1(backbone.maxpool(f3)))
        g3, g6 = loss_fn.features(x)
    assert torch.allclose(g3, f3, atol=1e-4) and torch.allclose(g6, f6, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loss_fn.modules())
    assert all(not p.requires_grad for p in loss_fn.parameters())
    assert isinstance(backbone.layer1[0].bn1, torch.nn.BatchNorm2d)  # the model's encoder keeps its own layers


def test_pixel_only_loss_skips_the_loss_network() -> None:
    loss_fn = PerceptualLoss(load_resnet18("random"), w3=0.0, w6=0.0, w_l1=2.0)
    x, y = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24)
    calls = []
    loss_fn.to3.register_forward_hook(lambda *_: calls.append(1))
    total, terms = loss_fn(x, y)
    assert calls == [] and set(terms) == {"l1", "total"}
    assert total.item() == pytest.approx(2.0 * (x - y).abs().mean().item(), rel=1e-6)


def test_mse_term_is_the_mean_squared_pixel_error_and_off_by_default() -> None:
    backbone = load_resnet18("random")
    x, y = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    total, terms = PerceptualLoss(backbone, w3=0.5, w6=0.25, w_l1=0.0, w_mse=4.0)(x, y)
    squared = ((x.double() - y.double()) ** 2).mean().item()
    assert terms["mse"] == pytest.approx(squared, rel=1e-5)
    assert total.item() == pytest.approx(0.5 * terms["feat3"] + 0.25 * terms["feat6"] + 4.0 * squared, rel=1e-5)
    assert "mse" not in PerceptualLoss(backbone, **LOSS_WEIGHTS)(x, y)[1]

