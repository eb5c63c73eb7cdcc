import pytest
import torch
from torchvision.models import resnet18

from unetsr.core.errors import BackboneError
from unetsr.model import backbone


def test_imagenet_offline_gives_an_actionable_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache, and no network here or in CI

    def offline(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    # torchvision's weights loader calls this name; patched, the test never touches the network
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(BackboneError) as err:
        backbone.load_resnet18("imagenet")
    message = str(err.value)
    assert "\n" not in message and "Name or service not known" in message
    assert "resnet18-f37072fd.pth" in message and str(tmp_path) in message and "--backbone" in message


def test_local_weights_file_is_loaded(tmp_path) -> None:
    net = resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    loaded = backbone.load_resnet18(str(path))
    assert torch.equal(loaded.conv1.weight, net.conv1.weight)
    assert not loaded.training


def test_wrong_local_file_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(BackboneError, match="not a torchvision ResNet18"):
        backbone.load_resnet18(str(bad))
    with pytest.raises(BackboneError, match="no such file"):
        backbone.load_resnet18(str(tmp_path / "missing.pth"))
