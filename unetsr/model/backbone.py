"""Getting ResNet18 weights: ImageNet (torchvision's cache or download), seeded random, or a local file."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from unetsr.core.errors import BackboneError, first_line

IMAGENET = "imagenet"
RANDOM = "random"


def imagenet_weights_file() -> Path:
    """Where torchvision caches the ImageNet ResNet18 weights (honours TORCH_HOME)."""
    url = ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_resnet18(source: str = IMAGENET, seed: int = 0) -> ResNet:
    """A ResNet18 in eval mode with weights from `source`: "imagenet", "random" (seeded) or a .pth path."""
    if source == IMAGENET:
        net = _imagenet_resnet18()
    elif source == RANDOM:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = resnet18(weights=None)
    else:
        net = resnet18(weights=None)
        net.load_state_dict(_read_state_dict(Path(source)))
    return net.eval()


def _imagenet_resnet18() -> ResNet:
    """torchvision's IMAGENET1K_V1 weights, with an actionable one-line error when they can't be had."""
    try:
        return resnet18(weights=ResNet18_Weights.IMAGENET1K_V1, progress=False)
    except Exception as exc:  # offline: URLError, socket errors, a damaged cached file...
        url = ResNet18_Weights.IMAGENET1K_V1.url
        raise BackboneError(
            f"cannot load ImageNet ResNet18 weights ({type(exc).__name__}: {first_line(exc)}); "
            f"download {url} to {imagenet_weights_file()}, or pass --backbone PATH/TO/resnet18.pth "
            f"or --backbone random"
        ) from exc


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A ResNet18 state dict from a local file, checked to be one."""
    if not path.is_file():
        raise BackboneError(f"backbone weights {path}: no such file (expected 'imagenet', 'random' or a .pth path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneError(f"backbone weights {path}: not a readable PyTorch file ({first_line(exc)})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    expected = resnet18(weights=None).state_dict()
    if not isinstance(state, dict) or any(
        k not in state or getattr(state[k], "shape", None) != v.shape for k, v in expected.items()
    ):
        raise BackboneError(f"backbone weights {path}: not a torchvision ResNet18 state dict")
    return {k: state[k] for k in expected}

