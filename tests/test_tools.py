"""tools/: pack_photos.py packs photos into JPEGs within a budget, and accelerator_run.sh trains on them and
leaves what a lent machine should send back, run end to end here on the CPU at a tiny size."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import photo_like
from PIL import Image
from PIL.JpegImagePlugin import get_sampling

from unetsr.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "tools" / "pack_photos.py"
RUN = ROOT / "tools" / "accelerator_run.sh"
MIB = 2**20


def _load_pack_photos():
    """tools/pack_photos.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("pack_photos", PACK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


pack_photos = _load_pack_photos()


def save_photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A photo-like 8-bit RGB PNG of width×height."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((photo_like(height, width, seed) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def run_pack(*args: str | Path) -> subprocess.CompletedProcess:
    """`python tools/pack_photos.py ARGS` in a fresh process."""
    return subprocess.run([sys.executable, str(PACK), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_pack_photos_shrinks_to_the_largest_side_that_fits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sizes = {"a/same.png": (1000, 700), "a/small.png": (80, 60), "b/same.png": (700, 1000), "v/val.png": (300, 200)}
    for i, (name, (w, h)) in enumerate(sizes.items()):
        save_photo(tmp_path / name, w, h, seed=i)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"<html>not a photo</html>")  # skipped with a warning
    out = tmp_path / "packed"
    folders = ["--train", tmp_path / "a", tmp_path / "b", "--val", tmp_path / "v"]
    assert pack_photos.main([*map(str, ["--out", out, "--budget-mb", 100, *folders])]) == 0
    assert "long side at most 4096 px" in capsys.readouterr().out
    full = sum(p.stat().st_size for p in out.rglob("*.jpg"))

    assert pack_photos.main([*map(str, ["--out", out, "--budget-mb", 1, *folders])]) == 2  # not empty
    assert "--overwrite" in capsys.readouterr().err
    budget = (full - 1) / MIB  # the photos at their own size no longer fit: the next side down does
    assert pack_photos.main([*map(str, ["--out", out, "--budget-mb", budget, "--overwrite", *folders])]) == 0
    summary, warned = capsys.readouterr()
    assert "skipped 1 unreadable photos" in warned and "broken.jpg" in warned
    assert summary.count("\n") == 1 and "4 photos (3 train, 1 val), long side at most 896 px" in summary

    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["train/0_same.jpg", "train/0_small.jpg", "train/1_same.jpg", "val/0_val.jpg"]
    total = 0
    for name, source in zip(written, ["a/same.png", "a/small.png", "b/same.png", "v/val.png"]):
        with Image.open(out / name) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and get_sampling(im) == 0  # 4:4:4
            w, h = sizes[source]
            if max(w, h) > 896:
                assert max(im.size) == 896 and abs(im.size[0] / im.size[1] - w / h) < 0.01
            else:
                assert im.size == (w, h)  # never enlarged
        total += (out / name).stat().st_size
    assert total <= budget * MIB < full


@pytest.mark.parametrize("case", ["missing folder", "budget too small"])
def test_pack_photos_bad_input_is_one_line_and_status_2(tmp_path: Path, case: str) -> None:
    save_photo(tmp_path / "photos" / "a.png", 300, 200)
    if case == "missing folder":
        proc = run_pack("--out", tmp_path / "out", "--train", tmp_path / "photos", "--val", tmp_path / "nowhere")
        expected = "nowhere"
    else:
        proc = run_pack("--out", tmp_path / "out", "--budget-mb", "0.001", "--train", tmp_path / "photos",
                        "--val", tmp_path / "photos")
        expected = "do not fit"
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("pack_photos: error: ") and expected in proc.stderr
    assert not any((tmp_path / "out").rglob("*.jpg"))


def run_script(cwd: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """`bash tools/accelerator_run.sh ARGS` from `cwd`, with this venv's python3 and this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k != "TRAIN_SECONDS"}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT),
               OUT=str(out))
    return subprocess.run(["bash", str(RUN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_accelerator_run_trains_and_leaves_what_comes_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """About 10 s: two steps of the x2 recipe on the CPU, from packed photos."""
    site, out = tmp_path / "site", tmp_path / "out"
    for i in range(3):
        save_photo(tmp_path / "train" / f"p{i}.png", 300, 200, seed=i)
    save_photo(tmp_path / "val" / "v.png", 300, 200, seed=9)  # a whole 192-px validation crop fits
    assert pack_photos.main(["--out", str(site / ".carry" / "photos"), "--pylib", str(site / ".carry" / "pylib"),
                             "--train", str(tmp_path / "train"), "--val", str(tmp_path / "val")]) == 0
    assert (site / ".carry" / "pylib" / "png.py").is_file()

    proc = run_script(site, out, "x2", "2", "--batch", "2", "--crop", "32", "--workers", "0", "--val-every", "1",
                      "--ckpt-every", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and all(name.count("/") <= 1 for name in files)
    assert {"train.log", "log.jsonl", "last.pt", "best.pt", "state/last.pt.00"} <= set(files), files
    assert all((out / name).stat().st_size <= 16 * MIB for name in files)

    last = load_checkpoint(out / "last.pt")
    assert last.meta["steps"] == 2 and last.train_state is None
    assert load_checkpoint(out / "best.pt").meta["steps"] in (1, 2)
    assert "unetsr.train" in (out / "train.log").read_text()
    state = tmp_path / "joined.pt"
    state.write_bytes(b"".join((out / name).read_bytes() for name in files if name.startswith("state/")))
    assert load_checkpoint(state).train_state["step"] == 2

    again = run_script(site, out, "x2", "2")  # OUT now holds a run
    assert again.returncode == 2 and "not empty" in again.stderr and again.stderr.count("\n") == 1
    elsewhere = run_script(tmp_path, tmp_path / "out2", "x2", "2")  # no .carry/photos here
    assert elsewhere.returncode == 2 and ".carry/photos/train" in elsewhere.stderr
