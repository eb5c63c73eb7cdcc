"""Release export: smaller file, training state dropped, outputs within tolerance, SHA-256 printed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unetsr.checkpoint import load_checkpoint, save_checkpoint, sha256_of
from unetsr.errors import UnetsrError
from unetsr.export import export_checkpoint, main, parse_meta


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
    assert not list(tmp_path.glob(".*export*"))


def test_export_refuses_outputs_that_move_too_far(training_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UnetsrError, match="differ by"):
        export_checkpoint(training_checkpoint, tmp_path / "release.pt", tolerance=1e-12)
    assert list(tmp_path.iterdir()) == [training_checkpoint]


def test_cli_prints_sha256_and_rejects_a_missing_checkpoint(training_checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "release.pt"
    assert main([str(training_checkpoint), str(out), "--meta", "steps=9", "data=photos"]) == 0
    assert sha256_of(out) in capsys.readouterr().out
    assert load_checkpoint(out).meta["steps"] == 9
    assert main([str(tmp_path / "missing.pt"), str(tmp_path / "x.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err and not (tmp_path / "x.pt").exists()


def test_parse_meta_reads_json_values_and_rejects_bare_words() -> None:
    assert parse_meta(["steps=10", "data=[\"a\", \"b\"]", "note=hello world"]) == {
        "steps": 10, "data": ["a", "b"], "note": "hello world"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_meta(["oops"])
