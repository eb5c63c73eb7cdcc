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


def test_a_zip_bomb_is_refused_before_torch_reads_it(tiny_checkpoint: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries stored compressed (torch never writes them) or claiming more bytes than the file holds are
    refused from the zip directory alone: torch.load is never called."""
    import zipfile

    calls: list[object] = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(tiny_checkpoint) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("bomb/data/99", b"\0" * 20_000_000)  # 20 MB that deflate to ~20 KB
    assert bomb.stat().st_size < tiny_checkpoint.stat().st_size + 100_000
    with pytest.raises(CheckpointError, match="compressed entries"):
        load_checkpoint(bomb)
    big = tmp_path / "big.pt"
    big.write_bytes(b"\0")
    monkeypatch.setattr(checkpoint, "MAX_FILE_BYTES", 0)
    with pytest.raises(CheckpointError, match="over the 0 MB"):
        load_checkpoint(big)
    assert calls == []


def test_a_config_asking_for_huge_layers_is_refused_without_building_them(tiny_model: UNetSR, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny file whose config asks for 1,024-channel layers costs no memory: the model is checked on the
    meta device against the parameter budget and the file's own tensors before anything is allocated."""
    path = save_checkpoint(tmp_path / "t.pt", tiny_model)
    payload = torch.load(path, weights_only=True)
    payload["config"]["widths"] = [1024] * 5
    payload["config"]["blocks"] = [64] * 5
    payload.pop(checkpoint.CHECKSUM_KEY)
    torch.save(payload, path)
    built: list[object] = []
    real_init = UNetSR.__init__

    def counting_init(self, *args, **kwargs) -> None:
        built.append(torch.empty(0).device)  # the device new tensors land on: meta inside the check
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(UNetSR, "__init__", counting_init)
    with pytest.raises(CheckpointError, match="weights, over the"):
        load_checkpoint(path)
    assert [d.type for d in built] == ["meta"]
    payload["config"]["widths"], payload["config"]["blocks"] = [16] * 5, [1] * 5  # small, but not its tensors
    torch.save(payload, path)
    built.clear()
    with pytest.raises(CheckpointError, match="weights do not match its config"):
        load_checkpoint(path)
    assert [d.type for d in built] == ["meta"]


def test_an_onnx_file_named_pt_is_called_an_onnx_model(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    node = onnx.helper.make_node("Identity", ["input"], ["output"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [value("input", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                                   [value("output", onnx.TensorProto.FLOAT, [1, 3, 4, 4])])
    path = tmp_path / "model.pt"
    onnx.save(onnx.helper.make_model(graph, producer_name="pytorch"), path)
    with pytest.raises(CheckpointError, match="this is an ONNX model, not a unetsr checkpoint"):
        load_checkpoint(path)


def test_a_shipped_name_with_other_sound_bytes_is_refused(tiny_model: UNetSR, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    assert checkpoint.shipped_path("x4") == tmp_path / "unetsr_x4.pt"
    save_checkpoint(checkpoint.shipped_path("x4"), tiny_model)  # a sound checkpoint, its own checksum right
    assert load_checkpoint(checkpoint.shipped_path("x4")).config == tiny_model.config
    with pytest.raises(CheckpointError, match=r"unetsr_x4\.pt is damaged: SHA-256 .* does not match the recorded"):
        checkpoint.load_shipped("x4")  # only the recorded whole-file SHA-256 tells it from the shipped one
