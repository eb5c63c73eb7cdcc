import pytest
import torch

from unetsr.model.config import ModelConfig
from unetsr.model.network import UNetSR, build_model, count_parameters


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("depth", [3, 6])
def test_output_shape_for_each_scale(scale: int, depth: int) -> None:
    model = build_model(ModelConfig(scale=scale, encoder_depth=depth, widths=(8, 8, 8, 8, 8),
                                    blocks=(1, 1, 1, 1, 1), backbone="random"))
    x = torch.rand(2, 3, 21, 34)  # not a multiple of the encoder stride
    assert model(x).shape == (2, 3, 21 * scale, 34 * scale)


def expected_trainable(cfg: ModelConfig) -> int:
    """The decoder's parameter count worked out by hand from the architecture in docs/architecture.md."""
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    w, b, taps = cfg.widths, cfg.blocks, (64, 64, 128, 256)
    tail_scale = cfg.scale // 2 if cfg.up_blocks else cfg.scale
    total = conv(3, w[0], 3) + (b[0] + cfg.up_blocks) * cfg.block_convs * conv(w[0], w[0], 3)
    total += conv(w[0], 3 * tail_scale**2, 3) + (conv(w[0], 4 * w[0], 3) if cfg.up_blocks else 0)
    for i in range(3):  # encoder depth 6: taps at strides 2, 4, 8
        total += conv(taps[i], w[i + 1], 1) + b[i + 1] * cfg.block_convs * conv(w[i + 1], w[i + 1], 3)
        total += conv(w[i + 1], w[i], 1)
    return total


@pytest.mark.parametrize("convs, scale, up_blocks", [(2, 2, 0), (3, 2, 0), (2, 4, 0), (2, 4, 2), (3, 4, 1)])
def test_parameter_counts_match_the_architecture(convs: int, scale: int, up_blocks: int) -> None:
    cfg = ModelConfig(backbone="random", block_convs=convs, scale=scale, up_blocks=up_blocks)
    trainable, frozen = count_parameters(build_model(cfg))
    assert trainable == expected_trainable(cfg)
    assert frozen == 683_072  # conv1, bn1, layer1, layer2 of ResNet18


def test_default_model_parameter_count() -> None:
    assert count_parameters(build_model(ModelConfig(backbone="random")))[0] == 1_184_076


def test_zero_initialised_tail_gives_exact_bilinear(tiny_config: ModelConfig) -> None:
    model = build_model(tiny_config).eval()
    assert torch.count_nonzero(model.tail.weight) == 0
    x = torch.rand(1, 3, 17, 23)
    expected = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize("scale", [2, 4])
def test_up_blocks_upsample_in_two_steps_and_start_as_bilinear(scale: int) -> None:
    cfg = ModelConfig(scale=scale, widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1, 1), up_blocks=2, backbone="random")
    model = build_model(cfg).eval()
    x = torch.rand(2, 3, 13, 18)
    y = model.up(torch.rand(2, 8, 13, 18))
    assert y.shape == (2, 8, 26, 36)  # the blocks run at twice the LR resolution
    assert model.tail.out_channels == 3 * (scale // 2) ** 2
    expected = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    assert torch.equal(model(x), expected)  # the zero tail still leaves bilinear upsampling
    model.tail.weight.data.normal_()
    assert not torch.allclose(model(x), expected)


def test_encoder_is_frozen_and_stays_in_eval_mode(tiny_model: UNetSR) -> None:
    model = build_model(tiny_model.config)
    model.train()
    assert model.training and model.fuse.training
    assert not any(m.training for m in model.encoder.modules())
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("encoder."))
    stats = [b.clone() for b in model.encoder.buffers()]
    model(torch.rand(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(stats, model.encoder.buffers()))


def test_decoder_receives_gradients_after_one_step(tiny_config: ModelConfig) -> None:
    model = build_model(tiny_config).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32)
    for _ in range(2):  # the zero tail gets its gradient first, then everything behind it
        opt.zero_grad()
        torch.nn.functional.l1_loss(model(x), y).backward()
        opt.step()
    assert model.tail.weight.grad.abs().sum() > 0
    assert model.head.weight.grad.abs().sum() > 0
    assert model.lateral[-1].weight.grad.abs().sum() > 0


def test_random_backbone_is_seeded() -> None:
    a = build_model(ModelConfig(backbone="random", backbone_seed=1))
    b = build_model(ModelConfig(backbone="random", backbone_seed=1))
    c = build_model(ModelConfig(backbone="random", backbone_seed=2))
    wa, wb, wc = (m.encoder[0][0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_config_rejects_bad_values_and_round_trips() -> None:
    with pytest.raises(ValueError):
        ModelConfig(scale=5)
    with pytest.raises(ValueError):
        ModelConfig(encoder_depth=4)
    with pytest.raises(ValueError):
        ModelConfig(widths=(0, 0, 0, 0, 0))
    with pytest.raises(ValueError):
        ModelConfig(block_convs=4)
    with pytest.raises(ValueError, match="even scale"):
        ModelConfig(scale=3, up_blocks=1)
    with pytest.raises(ValueError):
        ModelConfig(up_blocks=-1)
    assert ModelConfig.from_dict({k: v for k, v in ModelConfig().to_dict().items() if k != "up_blocks"}).up_blocks == 0
    cfg = ModelConfig(scale=3, widths=(1, 2, 3, 4, 5), backbone="random")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert isinstance(UNetSR(cfg).config.widths, tuple)
