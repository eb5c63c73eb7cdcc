import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import photo_like
from unetsr import evaluate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hr_dir(tmp_path: Path) -> Path:
    for i in range(2):
        Image.fromarray((photo_like(64, 80, seed=i) * 255).astype(np.uint8)).save(tmp_path / f"hr{i}.png")
    return tmp_path


def test_prints_a_row_per_method_and_lpips_reason(hr_dir: Path, tiny_checkpoint: Path, capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate, "lpips_metric", lambda: (None, "OSError: offline"))
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--hr", str(hr_dir)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert set(rows) == {"method", "bilinear", "bicubic", "lanczos", "unetsr"}
    assert all("n/a" in rows[m] for m in ("bilinear", "unetsr"))
    assert "LPIPS n/a: OSError: offline" in out and "2 photos, x2" in out


def test_classic_methods_rank_as_expected_on_a_photo_like_image(hr_dir: Path, tiny_checkpoint: Path) -> None:
    from unetsr.upscaler import Upscaler

    rows = {r.method: r for r in evaluate.evaluate(Upscaler.from_checkpoint(tiny_checkpoint),
                                                   sorted(hr_dir.glob("*.png")), 2)}
    assert rows["bicubic"].psnr > rows["bilinear"].psnr
    assert 0 < rows["bilinear"].ssim < 1 and rows["unetsr"].seconds_per_mp > 0


def test_lpips_column_is_filled_when_a_metric_is_available(hr_dir: Path, tiny_checkpoint: Path) -> None:
    from unetsr.upscaler import Upscaler

    fake = lambda pred, target: float((pred - target).abs().mean())  # noqa: E731 - a stand-in distance
    rows = evaluate.evaluate(Upscaler.from_checkpoint(tiny_checkpoint), sorted(hr_dir.glob("*.png")), 2, fake)
    assert all(r.lpips is not None and r.lpips > 0 for r in rows)
    assert "n/a" not in evaluate.format_table(rows)


def test_bad_checkpoint_or_empty_folder_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("no")
    proc = subprocess.run([sys.executable, "-m", "unetsr.evaluate", "--checkpoint", str(bad), "--hr", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("unetsr.evaluate: error: checkpoint")
