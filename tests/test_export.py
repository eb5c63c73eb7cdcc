"""Release export: smaller file, training state dropped, outputs within tolerance, SHA-256 printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetsr import export
from unetsr.core.errors import UnetsrError
from unetsr.core.fileio import sha256_of
from unetsr.export import main
from unetsr.inference.release import check_images, export_checkpoint, parse_meta
from unetsr.model.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def training_checkpoint(tmp_path: Path, tiny_model) -> Path:
    """A checkpoint as train writes it: with optimiser state."""
    state = {"step": 7, "optimizer": {"state": {}, "param_groups": []}, "best_psnr": 30.0}
    return save_checkpoint(tmp_path / "last.pt", tiny_model, {"steps": 7, "backbone": "random"}, state)


def test_half_export_is_smaller_without_training_state_and_within_tolerance(training_checkpoint: Path,
                                                                            tmp_path: Path, tiny_model) -> None:
    result = export_checkpoint(training_checkpoint, tmp_path / "release.pt", meta={"note": "x"})
    assert result.sha256 == sha256_of(tmp_path / "release.pt")
    assert result.bytes < 0.75 * training_checkpoint.stat().st_size
    assert 0 < result.max_abs_diff <= 1 / 255
    loaded = load_checkpoint(result.path)
    assert loaded.train_state is None and loaded.meta == {"steps": 7, "backbone": "random", "note": "x"}
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert (loaded.model(x) - tiny_model(x)).abs().max().item() <= 1 / 255
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "release.pt"]  # no temporary files left


def test_export_refuses_outputs_that_move_too_far(training_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UnetsrError, match="differ by") as caught:
        export_checkpoint(training_checkpoint, tmp_path / "release.pt", tolerance=1e-12)
    assert "--full" in str(caught.value) and "--half" not in str(caught.value)  # a flag that exists
    assert list(tmp_path.iterdir()) == [training_checkpoint]


def test_export_never_replaces_its_input_or_an_existing_file_unasked(training_checkpoint: Path,
                                                                      tmp_path: Path) -> None:
    before = training_checkpoint.read_bytes()
    with pytest.raises(UnetsrError, match="being exported"):
        export_checkpoint(training_checkpoint, training_checkpoint, overwrite=True)
    existing = tmp_path / "release.pt"
    existing.write_bytes(b"an earlier release")
    with pytest.raises(UnetsrError, match="--overwrite"):
        export_checkpoint(training_checkpoint, existing)
    assert existing.read_bytes() == b"an earlier release" and training_checkpoint.read_bytes() == before
    assert load_checkpoint(export_checkpoint(training_checkpoint, existing, overwrite=True).path).train_state is None


def test_the_check_uses_the_lr_of_each_photo_read_at_full_depth(tmp_path: Path) -> None:
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((20, 30), 1000, dtype=np.uint16)).save(grey16)  # 16-bit grey: 1000/65535 = 3.9/255
    (lr,) = check_images([grey16], scale=2)
    assert lr.shape == (10, 15, 3)  # the LR the model would be given, as evaluation makes it
    assert np.allclose(lr, 4 / 255)  # not clipped to white as an 8-bit RGB conversion did


def test_cli_prints_sha256_and_rejects_a_missing_checkpoint(training_checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "release.pt"
    assert main([str(training_checkpoint), str(out), "--meta", "steps=9", "data=photos"]) == 0
    assert sha256_of(out) in capsys.readouterr().out
    assert load_checkpoint(out).meta["steps"] == 9
    assert main([str(tmp_path / "missing.pt"), str(tmp_path / "x.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err and not (tmp_path / "x.pt").exists()
    with pytest.raises(SystemExit) as caught:
        main([str(training_checkpoint), str(tmp_path / "y.pt"), "--tolerance", "-1"])
    assert caught.value.code == 2 and "--tolerance" in capsys.readouterr().err


def test_help_does_not_import_torch_and_names_the_console_script(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys, unetsr.export; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0
    proc = subprocess.run([sys.executable, "-m", "unetsr.export", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m unetsr.export")
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/unetsr-export"])
    assert export.build_parser().prog == "unetsr-export"


def test_parse_meta_reads_json_values_and_rejects_bare_words() -> None:
    assert parse_meta(["steps=10", "data=[\"a\", \"b\"]", "note=hello world"]) == {
        "steps": 10, "data": ["a", "b"], "note": "hello world"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_meta(["oops"])


def test_check_photos_too_small_are_skipped_with_a_line_each(training_checkpoint: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from unetsr.core import fileio

    photos = tmp_path / "check"
    photos.mkdir()
    for name, (h, w) in {"dot.png": (1, 1), "line.png": (1, 17), "good.png": (24, 32)}.items():
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(photos / name)
    real, written = fileio.atomic_write, []  # the release file goes through the one atomic-write helper
    monkeypatch.setattr(fileio, "atomic_write", lambda path, save: written.append(Path(path)) or real(path, save))

    assert main([str(training_checkpoint), str(tmp_path / "r.pt"), "--check", str(photos)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and written == [tmp_path / "r.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check", "last.pt", "r.pt"]  # nothing else left
    assert err.splitlines() == [
        f"{export.build_parser().prog}: warning: {photos / n}: {size} is too small to check at x2 "
        "(at least 16 px a side); skipped" for n, size in (("dot.png", "1×1"), ("line.png", "17×1"))]

    with pytest.raises(UnetsrError, match=r"^none of the 2 check photos is large enough to check at x2 \(at least "
                                          r"16 px a side\)$"), pytest.warns(UserWarning, match="too small"):
        check_images([photos / "dot.png", photos / "line.png"], scale=2)


def test_the_kind_of_release_file_has_its_own_name() -> None:
    assert export.release_format("a/model.ONNX", None) == "onnx" and export.release_format("m.pt", None) == "pt"
    assert export.release_format("model.bin", "onnx") == "onnx" and export.release_format("m.onnx", "pt") == "pt"
    assert not hasattr(export, "output_format")  # one output_format in the package: the image one
