import torch

from unetsr.metrics import psnr_y, rgb_to_y, ssim_y


def test_psnr_matches_its_definition_and_identity_is_perfect() -> None:
    x = torch.full((1, 3, 16, 16), 0.5)
    y = x.clone()
    y[..., 8:, :] += 10 / 255  # half the pixels off by 10 levels on every channel
    mse_y = ((rgb_to_y(x) - rgb_to_y(y)) ** 2).mean()
    assert abs(psnr_y(y, x).item() - 10 * torch.log10(1 / mse_y).item()) < 0.05
    assert ssim_y(x, x).item() > 0.9999 and ssim_y(y, x).item() < 0.999


def test_shave_ignores_the_border() -> None:
    x = torch.rand(2, 3, 20, 20)
    y = x.clone()
    y[..., :2, :] = 0
    assert psnr_y(y, x, shave=2).min() > 90
    assert psnr_y(y, x, shave=0).max() < 40


def test_ssim_drops_with_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=gen)
    small = (x + 0.02 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    large = (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    assert 1 > ssim_y(small, x).item() > ssim_y(large, x).item()
