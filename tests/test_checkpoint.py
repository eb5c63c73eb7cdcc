from pathlib import Path

import pytest
import torch

from unetsr import checkpoint
from unetsr.checkpoint import load_checkpoint, save_checkpoint, sha256_of
from unetsr.errors import CheckpointError
from unetsr.model import UNetSR


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


def test_missing_default_model_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="no default model"):
        checkpoint.load_default()
