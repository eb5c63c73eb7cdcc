import copy
import os
import stat
from pathlib import Path

import pytest
import torch

from unetsr.core.errors import CheckpointError
from unetsr.core.fileio import sha256_of
from unetsr.model import checkpoint
from unetsr.model.checkpoint import load_checkpoint, save_checkpoint
from unetsr.model.network import UNetSR


def test_round_trip_gives_identical_outputs(tiny_model: UNetSR, tiny_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), tiny_model(x))
    assert ckpt.config == tiny_model.config
    assert ckpt.meta["backbone"] == "random"


def test_half_storage_changes_outputs_by_less_than_one_level(tiny_model: UNetSR, tmp_path: Path) -> None:
    full = save_checkpoint(tmp_path / "full.pt", tiny_model)
    half = save_checkpoint(tmp_path / "half.pt", tiny_model, half=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        diff = (load_checkpoint(half).model(x) - tiny_model(x)).abs().max().item()
    assert diff < 1 / 255


def test_refuses_files_that_are_not_checkpoints(tmp_path: Path, tiny_checkpoint: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    for path, message in [(text, "unreadable"), (other, "not a unetsr checkpoint"), (truncated, "unreadable"),
                          (tmp_path / "missing.pt", "no such file")]:
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)


def test_checkpoint_is_loaded_as_data_only(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 1, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def test_sha256_mismatch_is_reported_as_damage(tiny_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tiny_checkpoint, expected_sha256="0" * 64)
    assert load_checkpoint(tiny_checkpoint, expected_sha256=sha256_of(tiny_checkpoint)).model is not None


def _flip_a_byte_of(path: Path, tensor: torch.Tensor) -> None:
    """Flip one bit in the middle of `tensor`'s bytes where they are stored inside the checkpoint's zip."""
    data, raw = bytearray(path.read_bytes()), tensor.contiguous().numpy().tobytes()
    start = data.find(raw)
    assert start >= 0 and data.find(raw, start + 1) < 0, "the tensor's bytes should be stored once, verbatim"
    data[start + len(raw) // 2] ^= 0x04
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["weights", "optimizer state"])
def test_a_flipped_byte_inside_a_tensor_is_reported_as_damage(tiny_model: UNetSR, tmp_path: Path, where: str) -> None:
    exp_avg = torch.linspace(-1, 1, 300)
    state = {"step": 3, "optimizer": {"state": {0: {"exp_avg": exp_avg}}, "param_groups": [{"lr": 1e-3}]}}
    path = save_checkpoint(tmp_path / "last.pt", tiny_model, {"steps": 3}, state)
    assert load_checkpoint(path).train_state["step"] == 3  # sound before
    _flip_a_byte_of(path, tiny_model.tail.weight.detach() if where == "weights" else exp_avg)
    with pytest.raises(CheckpointError, match="damaged") as caught:  # torch itself loads it without complaint
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_older_checkpoints_without_a_checksum_still_load(tiny_model: UNetSR, tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"format": checkpoint.FORMAT, "version": 1, "config": tiny_model.config.to_dict(),
                "state_dict": tiny_model.state_dict(), "meta": {"steps": 1}}, path)  # as written before checksums
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(path).model(x), tiny_model(x))
    assert checkpoint.CHECKSUM_KEY in torch.load(save_checkpoint(tmp_path / "new.pt", tiny_model), weights_only=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_weight_that_is_not_finite_is_refused_at_load(tiny_model: UNetSR, tmp_path: Path, bad: float) -> None:
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.body[0].conv1.weight[0, 0, 1, 1] = bad
    path = save_checkpoint(tmp_path / "diverged.pt", model)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(path)


def test_saved_files_have_ordinary_permissions_and_no_leftovers(tiny_model: UNetSR, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = save_checkpoint(tmp_path / "sub" / "model.pt", tiny_model)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not the 0600 of a bare mkstemp
    before = path.read_bytes()

    def broken_save(obj, f) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, tiny_model, {"steps": 99})
    assert path.read_bytes() == before and os.listdir(path.parent) == ["model.pt"]


def test_missing_default_model_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="no default x2 model installed"):
        checkpoint.load_default()
