"""The `python -m unetsr.infer` command line: naming, sizes, refusals, bad inputs, image kinds, exit codes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from helpers import perturb_decoder, photo_like
from PIL import Image

from unetsr.imaging.photos import read_image, write_image
from unetsr.infer import build_parser, main, upscaler_options
from unetsr.inference.upscaler import Upscaler
from unetsr.model import checkpoint as checkpoint_module
from unetsr.model.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def save_photo(path: Path, h: int = 40, w: int = 56, seed: int = 0, mode: str = "RGB") -> Path:
    """A photo-like 8-bit image file (RGB, L or RGBA with a gradient alpha)."""
    rgb = (photo_like(h, w, seed) * 255 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "L":
        Image.fromarray(rgb).convert("L").save(path)
    elif mode == "RGBA":
        alpha = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, axis=0).astype(np.uint8)
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    else:
        Image.fromarray(rgb).save(path)
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    """main() on the arguments (paths turned to str) -> (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def problem_lines(err: str) -> list[str]:
    """The one-line reports of files that failed or were skipped."""
    return [line for line in err.splitlines() if line.startswith(("unetsr.infer: failed ", "unetsr.infer: skipped "))]


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32)


# --- outputs: names, sizes, places ---------------------------------------------------------------------------


def test_default_output_beside_input_at_twice_the_size(capsys, photo_png: Path, tiny_checkpoint: Path) -> None:
    code, out, err = run(capsys, photo_png, "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    result = photo_png.with_name("photo_x2.png")
    assert size_of(result) == (112, 80)
    assert f"{photo_png} -> {result} (56×40 -> 112×80, " in out
    assert "upscaled 1, failed 0" in err


@pytest.mark.parametrize("scale, name, size", [("3", "photo_x3.png", (168, 120)),
                                               ("1.5", "photo_x1.5.png", (84, 60))])
def test_scale_gives_exact_size(capsys, photo_png: Path, tiny_checkpoint: Path, scale, name, size) -> None:
    code, _, err = run(capsys, photo_png, "--scale", scale, "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    assert size_of(photo_png.with_name(name)) == size


@pytest.mark.parametrize("argv", [["--scale", "1"], ["--scale", "0.5"], ["--scale", "abc"], ["--scale", "nan"],
                                  ["--scale", "inf"], ["--scale", "1e308"], ["--scale", "1e150"], ["--scale", "16.5"],
                                  ["--tile", "-1"], ["--quality", "0"], ["--quality", "101"], ["--format", "gif"],
                                  ["--max-pixels", "0"], ["--max-pixels", "1e308"], ["--precision", "fp8"],
                                  ["--half", "--precision", "bf16"], ["-o", "out.png", "--format", "jpg"],
                                  ["-o", "out.tif"]])
def test_bad_arguments_are_usage_errors(capsys, photo_png: Path, tiny_checkpoint: Path, argv) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(photo_png), "--checkpoint", str(tiny_checkpoint), *argv])
    assert exc.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in error and len(error) < 200  # no 300-digit number
    assert sorted(p.name for p in photo_png.parent.iterdir()) == ["photo.png"]


def test_output_file_in_a_new_folder(capsys, photo_png: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "result.png"
    code, _, err = run(capsys, photo_png, "-o", target, "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    assert size_of(target) == (112, 80)
    assert not photo_png.with_name("photo_x2.png").exists()


def test_output_folder_for_many_inputs_and_trailing_slash(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    a, b = save_photo(tmp_path / "in" / "a.png"), save_photo(tmp_path / "in" / "b.jpg", 24, 32, seed=1)
    code, _, err = run(capsys, a, b, "-o", tmp_path / "out", "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    assert size_of(tmp_path / "out" / "a_x2.png") == (112, 80)
    assert size_of(tmp_path / "out" / "b_x2.png") == (64, 48)
    code, _, err = run(capsys, a, "-o", f"{tmp_path / 'one'}/", "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    assert size_of(tmp_path / "one" / "a_x2.png") == (112, 80)


def test_folder_input_takes_images_only_and_skips_own_outputs(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = tmp_path / "photos"
    save_photo(folder / "a.png")
    save_photo(folder / "b.JPG", 24, 32)
    save_photo(folder / "holiday_x2.png", 16, 16)  # the user's own photo, merely named like an output: taken
    save_photo(folder / "sub" / "c.png", 16, 16)  # a subfolder: only with --recursive
    (folder / "notes.txt").write_text("not an image")
    code, _, err = run(capsys, folder, "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x2.png", "b.JPG", "b_x2.png", "holiday_x2.png",
                                                         "holiday_x2_x2.png", "notes.txt", "sub"]
    assert "upscaled 3, failed 0, skipped 0" in err
    assert not (folder / "sub" / "c_x2.png").exists()
    code, _, err = run(capsys, folder, "--checkpoint", tiny_checkpoint, "--overwrite")  # a rerun
    assert code == 0, err
    assert not (folder / "a_x2_x2.png").exists() and not (folder / "holiday_x2_x2_x2.png").exists()
    assert "upscaled 3, failed 0, skipped 3 (3 earlier unetsr outputs)" in err


def test_a_rerun_at_another_scale_upscales_only_the_originals(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = tmp_path / "myphotos"
    save_photo(folder / "a.png", 8, 8)
    save_photo(folder / "b.jpg", 8, 12, seed=1)
    code, _, err = run(capsys, folder, "--checkpoint", tiny_checkpoint, "--quiet")  # x2, beside the photos
    assert code == 0, err
    earlier = read_image(folder / "a_x2.png")  # and an output of another run, format and name
    write_image(folder / "a big one.webp", earlier)

    code, out, err = run(capsys, folder, "--scale", "4", "-o", tmp_path / "out4", "--checkpoint", tiny_checkpoint)

    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out4").iterdir()) == ["a_x4.png", "b_x4.png"]
    assert len(out.splitlines()) == 2  # one line per file upscaled
    assert "unetsr.infer: note: passed over 3 earlier unetsr outputs (name a file to upscale it again)" in err
    assert "upscaled 2, failed 0, skipped 3 (3 earlier unetsr outputs)" in err


def test_a_folder_of_unsupported_photos_says_why(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    for name in ("IMG_1.heic", "IMG_2.HEIC"):
        (folder / name).write_bytes(b"not decoded")
    code, _, err = run(capsys, folder, "--checkpoint", tiny_checkpoint)
    assert code == 1
    expected = (f"unetsr.infer: failed {folder}: no image files to upscale in this folder: only 2 .heic files "
                "(HEIC is not supported; convert to JPEG or PNG)")
    assert problem_lines(err) == [expected]


def test_recursive_mirrors_subfolders_under_output(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    tree = tmp_path / "tree"
    save_photo(tree / "a.png", 16, 24)
    save_photo(tree / "x" / "y" / "a.png", 24, 16)  # the same name deeper: mirrored, so no conflict
    out = tmp_path / "out"
    code, _, err = run(capsys, tree, "--recursive", "-o", out, "--checkpoint", tiny_checkpoint, "--quiet")
    assert code == 0, err
    assert size_of(out / "a_x2.png") == (48, 32)
    assert size_of(out / "x" / "y" / "a_x2.png") == (32, 48)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a_x2.png", "x/y/a_x2.png"]


def test_glob_input(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    save_photo(tmp_path / "g" / "a.png", 16, 16)
    save_photo(tmp_path / "g" / "b.png", 16, 24)
    save_photo(tmp_path / "g" / "c.jpg", 16, 16)
    save_photo(tmp_path / "g" / "s" / "d.png", 16, 16)
    code, _, err = run(capsys, str(tmp_path / "g" / "*.png"), "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    assert size_of(tmp_path / "g" / "b_x2.png") == (48, 32)
    assert (tmp_path / "g" / "a_x2.png").exists() and not (tmp_path / "g" / "c_x2.png").exists()
    code, _, err = run(capsys, str(tmp_path / "g" / "**" / "d.png"), "-o", tmp_path / "out",
                       "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    assert (tmp_path / "out" / "s" / "d_x2.png").exists()


def test_format_jpg_writes_jpeg(capsys, photo_png: Path, tiny_checkpoint: Path) -> None:
    code, _, err = run(capsys, photo_png, "--format", "jpg", "--quality", "80", "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    with Image.open(photo_png.with_name("photo_x2.jpg")) as im:
        assert (im.format, im.size) == ("JPEG", (112, 80))


def test_quiet_prints_nothing_on_success(capsys, photo_png: Path, tiny_checkpoint: Path) -> None:
    code, out, err = run(capsys, photo_png, "--quiet", "--checkpoint", tiny_checkpoint)
    assert (code, out, err) == (0, "", "")
    assert photo_png.with_name("photo_x2.png").exists()


# --- refusals ------------------------------------------------------------------------------------------------


def test_existing_output_is_kept_unless_overwrite(capsys, photo_png: Path, tiny_checkpoint: Path) -> None:
    result = photo_png.with_name("photo_x2.png")
    result.write_bytes(b"precious")
    code, _, err = run(capsys, photo_png, "--checkpoint", tiny_checkpoint)
    assert code == 0, err  # a rerun: skipping what is done already is not a failure
    assert result.read_bytes() == b"precious"
    (line,) = problem_lines(err)
    assert line.startswith("unetsr.infer: skipped ") and "already exists" in line and "--overwrite" in line
    assert "upscaled 0, failed 0, skipped 1" in err
    code, _, err = run(capsys, photo_png, "--checkpoint", tiny_checkpoint, "--overwrite")
    assert code == 0, err
    assert size_of(result) == (112, 80)


def test_never_writes_over_an_input(capsys, photo_png: Path, tiny_checkpoint: Path) -> None:
    original = photo_png.read_bytes()
    code, _, err = run(capsys, photo_png, "-o", photo_png, "--overwrite", "--checkpoint", tiny_checkpoint)
    assert code == 1
    assert photo_png.read_bytes() == original
    assert len(problem_lines(err)) == 1 and "input" in err
    # a.png's output would be a_x2.png, itself an input here: refused even with --overwrite
    other = save_photo(photo_png.with_name("photo_x2.png"), 16, 16, seed=3)
    other_bytes = other.read_bytes()
    code, _, err = run(capsys, photo_png, other, "--overwrite", "--checkpoint", tiny_checkpoint)
    assert code == 1
    assert other.read_bytes() == other_bytes
    assert size_of(photo_png.with_name("photo_x2_x2.png")) == (32, 32)


def test_two_inputs_with_the_same_output_conflict(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    save_photo(tmp_path / "a.png", 16, 16)
    save_photo(tmp_path / "a.jpg", 16, 24)
    code, _, err = run(capsys, tmp_path / "a.png", tmp_path / "a.jpg", "--checkpoint", tiny_checkpoint)
    assert code == 1
    assert size_of(tmp_path / "a_x2.png") == (32, 32)  # from a.png, the first; not replaced by a.jpg's
    (line,) = problem_lines(err)
    assert "a.jpg" in line and "conflicts" in line


# --- bad inputs: one line each, the good file still written --------------------------------------------------


def _not_image(folder: Path) -> Path:
    path = folder / "notes.png"
    path.write_text("this is text, not a PNG\n")
    return path


def _truncated(folder: Path) -> Path:
    path = save_photo(folder / "cut.png", 64, 64)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _bomb(folder: Path) -> Path:
    path = folder / "huge.png"
    Image.new("RGB", (400, 300)).save(path)  # 0.12 MP, over the 0.01 MP limit below
    return path


def _missing(folder: Path) -> Path:
    return folder / "missing.png"


@pytest.mark.parametrize("make, reason", [(_not_image, "not a supported image"), (_truncated, "truncated"),
                                          (_bomb, "limit"), (_missing, "no such file")])
def test_bad_input_is_one_line_and_others_still_done(capsys, photo_png: Path, tiny_checkpoint: Path,
                                                     make, reason) -> None:
    bad = make(photo_png.parent)
    code, _, err = run(capsys, bad, photo_png, "--max-pixels", "0.01", "--checkpoint", tiny_checkpoint)
    assert code == 1
    (line,) = problem_lines(err)
    assert str(bad) in line and reason in line
    assert size_of(photo_png.with_name("photo_x2.png")) == (112, 80)
    assert not bad.with_name(bad.stem + "_x2.png").exists()
    assert "upscaled 1, failed 1" in err


def test_unwritable_output_folder(capsys, tmp_path: Path, photo_png: Path, tiny_checkpoint: Path) -> None:
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("a file where a folder should be")
    second = save_photo(tmp_path / "b.png", 16, 16)
    code, _, err = run(capsys, photo_png, second, "-o", blocker / "out", "--checkpoint", tiny_checkpoint)
    assert code == 1
    lines = problem_lines(err)
    assert len(lines) == 2 and all("not a folder" in line for line in lines)
    assert blocker.read_text() == "a file where a folder should be"
    assert "upscaled 0, failed 2" in err


def test_unexpected_error_on_one_file_is_one_line(capsys, monkeypatch, tmp_path: Path, tiny_checkpoint) -> None:
    a, b = save_photo(tmp_path / "a.png", 16, 16), save_photo(tmp_path / "b.png", 16, 16)
    real, calls = Upscaler.upscale_array, []

    def flaky(self, arr, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory\nmore detail")
        return real(self, arr, *args, **kwargs)

    monkeypatch.setattr(Upscaler, "upscale_array", flaky)
    code, _, err = run(capsys, a, b, "--checkpoint", tiny_checkpoint)
    assert code == 1
    (line,) = problem_lines(err)
    assert line.endswith("a.png: RuntimeError: out of memory")
    assert (tmp_path / "b_x2.png").exists() and not (tmp_path / "a_x2.png").exists()


def test_ctrl_c_exits_130_without_partial_output(capsys, monkeypatch, photo_png: Path, tiny_checkpoint) -> None:
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Upscaler, "upscale_array", interrupt)
    code, _, err = run(capsys, photo_png, "--checkpoint", tiny_checkpoint)
    assert code == 130
    assert err.strip().splitlines()[-1] == "unetsr.infer: interrupted"
    assert sorted(p.name for p in photo_png.parent.iterdir()) == ["photo.png"]


@pytest.mark.parametrize("switch", ["--debug", "UNETSR_DEBUG=1"])
def test_debug_adds_the_traceback_of_a_failure(capsys, monkeypatch, photo_png: Path, tiny_checkpoint, switch) -> None:
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a library bug")

    monkeypatch.setattr(Upscaler, "upscale_array", bug)
    if switch.startswith("UNETSR_DEBUG"):
        monkeypatch.setenv("UNETSR_DEBUG", "1")
    argv = [str(photo_png), "--checkpoint", str(tiny_checkpoint), *([switch] if switch == "--debug" else [])]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert f"unetsr.infer: failed {photo_png}: ZeroDivisionError: a library bug" in err.splitlines()
    lines = err.splitlines()
    assert "Traceback (most recent call last):" in lines and "ZeroDivisionError: a library bug" in lines
    monkeypatch.delenv("UNETSR_DEBUG", raising=False)
    assert main([str(photo_png), "--checkpoint", str(tiny_checkpoint)]) == 1
    assert "Traceback" not in capsys.readouterr().err  # without the switch: the one line only


# --- model loading failures: one line, exit 1, no file touched ------------------------------------------------


def _missing_ckpt(folder: Path, good: Path) -> Path:
    return folder / "nope.pt"


def _not_ckpt(folder: Path, good: Path) -> Path:
    path = folder / "notes.pt"
    path.write_text("not a checkpoint")
    return path


def _truncated_ckpt(folder: Path, good: Path) -> Path:
    path = folder / "cut.pt"
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("make", [_missing_ckpt, _not_ckpt, _truncated_ckpt])
def test_bad_checkpoint_is_one_error_line(capsys, tmp_path: Path, photo_png: Path, tiny_checkpoint, make) -> None:
    bad = make(tmp_path, tiny_checkpoint)
    code, out, err = run(capsys, photo_png, "-o", tmp_path / "out" / "", "--checkpoint", bad)
    assert code == 1
    assert out == ""
    assert err.startswith("unetsr.infer: error: ") and err.count("\n") == 1
    assert str(bad) in err
    assert not (tmp_path / "out").exists() and not photo_png.with_name("photo_x2.png").exists()


def test_no_default_model_says_so(capsys, monkeypatch, tmp_path: Path, photo_png: Path) -> None:
    monkeypatch.setattr(checkpoint_module, "DEFAULT_CHECKPOINT", tmp_path / "not_installed.pt")
    code, _, err = run(capsys, photo_png)
    assert code == 1
    assert err.startswith("unetsr.infer: error: no default x2 model installed") and "--checkpoint" in err
    assert err.count("\n") == 1


# --- image kinds -------------------------------------------------------------------------------------------


def test_alpha_is_upscaled_and_kept(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = save_photo(tmp_path / "logo.png", mode="RGBA")
    code, _, err = run(capsys, src, "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    with Image.open(tmp_path / "logo_x2.png") as im:
        assert (im.mode, im.size) == ("RGBA", (112, 80))
        alpha = np.asarray(im, dtype=np.float32)[..., 3]
    # the left-to-right alpha ramp survives: downsampled back, it matches the input's alpha
    small = alpha.reshape(40, 2, 56, 2).mean(axis=(1, 3))
    assert np.abs(small - pixels(src)[..., 3]).mean() < 8


def test_grayscale_stays_grayscale(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = save_photo(tmp_path / "grey.png", mode="L")
    code, _, err = run(capsys, src, "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    with Image.open(tmp_path / "grey_x2.png") as im:
        assert (im.mode, im.size) == ("L", (112, 80))


@pytest.mark.parametrize("grey", [False, True])
def test_16_bit_png_stays_16_bit(capsys, tmp_path: Path, tiny_checkpoint: Path, grey: bool) -> None:
    img = photo_like(24, 32)
    samples = (img.mean(axis=2, keepdims=True) if grey else img) * 65535 + 0.5
    src = tmp_path / "deep.png"
    with open(src, "wb") as f:
        png.Writer(32, 24, greyscale=grey, bitdepth=16).write(f, samples.astype(np.uint16).reshape(24, -1))
    code, _, err = run(capsys, src, "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    result = read_image(tmp_path / "deep_x2.png")
    assert result.bit_depth == 16 and result.grayscale == grey and result.rgb.shape == (48, 64, 3)
    # more than 256 levels: the output really holds 16-bit data
    assert len(np.unique(result.rgb[..., 0])) > 256


def test_tiled_matches_untiled(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = save_photo(tmp_path / "big.png", 64, 80, seed=2)
    common = ["--checkpoint", tiny_checkpoint, "--quiet"]
    assert run(capsys, src, "-o", tmp_path / "tiled.png", "--tile", "16", "--tile-overlap", "32", *common)[0] == 0
    assert run(capsys, src, "-o", tmp_path / "whole.png", "--tile", "0", *common)[0] == 0
    tiled, whole = pixels(tmp_path / "tiled.png"), pixels(tmp_path / "whole.png")
    assert tiled.shape == whole.shape == (128, 160, 3)
    assert np.abs(tiled - whole).max() <= 1


# --- as a real command ---------------------------------------------------------------------------------------


def _cli(*argv, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "unetsr.infer", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_command_mixed_good_and_bad_files(tmp_path: Path, photo_png: Path, tiny_checkpoint: Path) -> None:
    bad = _not_image(tmp_path)
    damaged = tmp_path / "damaged_exif.jpg"  # IFD0 promises 5 entries and holds none: Pillow warns
    Image.new("RGB", (8, 8)).save(damaged, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00")
    proc = _cli(photo_png, bad, tmp_path / "missing.png", damaged, "--checkpoint", tiny_checkpoint,
                "--device", "cpu", "--half")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert "--half is ignored" in proc.stderr
    assert len(problem_lines(proc.stderr)) == 2
    (warning,) = [line for line in proc.stderr.splitlines() if "Corrupt EXIF" in line]
    assert warning.startswith(f"unetsr.infer: warning: {damaged}: Corrupt EXIF data")
    assert "upscaled 2, failed 2, skipped 0" in proc.stderr
    assert "photo.png -> " in proc.stdout
    assert size_of(photo_png.with_name("photo_x2.png")) == (112, 80)


def test_command_bad_checkpoint_and_bad_scale(tmp_path: Path, photo_png: Path, tiny_checkpoint: Path) -> None:
    proc = _cli(photo_png, "--checkpoint", _truncated_ckpt(tmp_path, tiny_checkpoint))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("unetsr.infer: error: checkpoint ") and proc.stderr.count("\n") == 1
    proc = _cli(photo_png, "--scale", "1", "--checkpoint", tiny_checkpoint)
    assert proc.returncode == 2 and "greater than 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not photo_png.with_name("photo_x2.png").exists() and not photo_png.with_name("photo_x1.png").exists()


def test_an_output_over_the_size_limit_is_refused_in_one_line(tiny_checkpoint, tmp_path: Path, capsys) -> None:
    big = tmp_path / "big.png"
    Image.new("RGB", (1300, 1300), (90, 120, 150)).save(big)  # x16: 433 MP
    code, _, err = run(capsys, big, "--checkpoint", tiny_checkpoint, "--scale", "16", "--quiet")
    assert code == 1
    (line,) = problem_lines(err)
    assert "output would be 433 MP" in line and "output limit" in line
    assert not list(tmp_path.glob("*_x16*"))


def test_the_size_limit_covers_the_largest_intermediate(capsys, monkeypatch, photo_png: Path,
                                                        tiny_checkpoint: Path) -> None:
    """Several passes, then a downsizing resize: the biggest image computed can be larger than the output."""
    monkeypatch.setattr(Upscaler, "intermediate_size", lambda self, h, w, s=None: (h * 512, w * 512), raising=False)
    code, _, err = run(capsys, photo_png, "--checkpoint", tiny_checkpoint, "--scale", "3")
    assert code == 1
    (line,) = problem_lines(err)
    assert "intermediate image" in line and "400 MP" in line
    assert not photo_png.with_name("photo_x3.png").exists()


# --- hostile inputs: one line each, never a hang, never a silently wrong output ---------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_are_reported_and_never_opened(capsys, tmp_path: Path, tiny_checkpoint) -> None:
    folder = tmp_path / "photos"
    photo = save_photo(folder / "photo.png", 16, 16)
    named, found = tmp_path / "named.png", folder / "found.png"
    os.mkfifo(named)
    os.mkfifo(found)

    def unblock() -> None:  # should infer open a FIFO after all, give it an end instead of hanging the test
        for fifo in (named, found):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # nobody is reading it: as it should be

    timer = threading.Timer(15, unblock)
    timer.start()
    try:
        code, _, err = run(capsys, named, folder, "--checkpoint", tiny_checkpoint)
    finally:
        timer.cancel()
    assert code == 1
    lines = problem_lines(err)
    assert len(lines) == 2 and all("not a regular file (a FIFO)" in line for line in lines)
    assert size_of(photo.with_name("photo_x2.png")) == (32, 32)


def test_control_characters_in_names_keep_messages_on_one_line(capsys, tmp_path: Path, tiny_checkpoint) -> None:
    good = save_photo(tmp_path / "good\nphoto.png", 16, 16)
    bad = tmp_path / "bad\rname\x1b.png"
    bad.write_text("not an image")
    code, out, err = run(capsys, good, bad, "--checkpoint", tiny_checkpoint)
    assert code == 1
    (line,) = problem_lines(err)
    assert "bad\\rname\\x1b.png" in line and "not a supported image" in line
    assert len(out.splitlines()) == 1 and "good\\nphoto.png -> " in out
    assert (tmp_path / "good\nphoto_x2.png").exists()


def test_a_file_and_a_link_to_it_get_an_output_each(capsys, tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = tmp_path / "photos"
    save_photo(folder / "a.png", 16, 16)
    (folder / "b.png").symlink_to(folder / "a.png")
    code, _, err = run(capsys, folder, "--checkpoint", tiny_checkpoint, "--quiet")
    assert code == 0, err
    assert size_of(folder / "a_x2.png") == size_of(folder / "b_x2.png") == (32, 32)


def test_nan_float_image_is_a_failed_file_not_a_black_output(capsys, tmp_path: Path, photo_png: Path,
                                                             tiny_checkpoint) -> None:
    nan = tmp_path / "nan.tif"
    Image.frombytes("F", (8, 4), np.where(np.arange(32) == 5, np.nan, 0.5).astype(np.float32).tobytes()).save(nan)
    code, _, err = run(capsys, nan, photo_png, "--checkpoint", tiny_checkpoint)
    assert code == 1
    (line,) = problem_lines(err)
    assert "nan.tif" in line and "NaN" in line
    assert not (tmp_path / "nan_x2.png").exists() and photo_png.with_name("photo_x2.png").exists()


def test_nan_weights_fail_the_file_instead_of_writing_black(capsys, tmp_path: Path, photo_png: Path,
                                                            tiny_model) -> None:
    broken = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(p for p in broken.parameters() if p.requires_grad).view(-1)[0] = float("nan")
    ckpt = save_checkpoint(tmp_path / "nan.pt", broken, {"backbone": "random", "steps": 0})
    code, out, err = run(capsys, photo_png, "--checkpoint", ckpt)
    assert code == 1
    assert out == "" and all(line.startswith("unetsr.infer: ") for line in err.splitlines())
    assert not photo_png.with_name("photo_x2.png").exists()


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png", ".tif"])
def test_animations_and_multi_page_files_are_refused(capsys, tmp_path: Path, tiny_checkpoint, suffix) -> None:
    source = tmp_path / f"moving{suffix}"
    frames = [Image.new("RGB", (8, 8), (60 * i, 90, 120)) for i in range(3)]
    frames[0].save(source, save_all=True, append_images=frames[1:])
    code, _, err = run(capsys, source, "--checkpoint", tiny_checkpoint)
    assert code == 1
    (line,) = problem_lines(err)
    assert "has 3 frames" in line
    assert not list(tmp_path.glob("moving_x2*"))


def test_precision_reaches_the_upscaler(capsys, photo_png: Path, tiny_checkpoint) -> None:
    assert upscaler_options("cpu", False, "bf16", 64, 8) == {"device": "cpu", "half": False, "tile": 64,
                                                       "tile_overlap": 8, "precision": "bf16", "ensemble": False}
    assert upscaler_options("cpu", False, "fp32", 0, 8, ensemble=True)["ensemble"] is True
    code, out, err = run(capsys, photo_png, "--checkpoint", tiny_checkpoint, "--precision", "fp32", "--device", "cpu")
    assert code == 0, err
    assert size_of(photo_png.with_name("photo_x2.png")) == (112, 80)
    assert "tiny.pt, " in out and "self-ensemble" not in out
    code, out, err = run(capsys, photo_png, "--checkpoint", tiny_checkpoint, "--ensemble", "--overwrite")
    assert code == 0, err
    assert "tiny.pt (x8 self-ensemble), " in out


def test_console_script_names_itself(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/unetsr-infer"])
    assert build_parser().prog == "unetsr-infer"
    code, _, err = run(capsys, tmp_path / "missing.png", "--checkpoint", tmp_path / "missing.pt")
    assert code == 1 and err.startswith("unetsr-infer: error: ")
    monkeypatch.setattr(sys, "argv", ["/x/unetsr/infer.py"])
    assert build_parser().prog == "python -m unetsr.infer"


def test_python_warnings_become_one_line_each(capsys, monkeypatch, photo_png: Path, tiny_checkpoint) -> None:
    real = Upscaler.upscale_array

    def warn_then_upscale(self, *args, **kwargs):
        warnings.warn("something odd\nwith a second line", UserWarning)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Upscaler, "upscale_array", warn_then_upscale)
    code, _, err = run(capsys, photo_png, "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    assert [line for line in err.splitlines() if "odd" in line] == ["unetsr.infer: warning: something odd"]
    assert "second line" not in err and "UserWarning" not in err


# --- model choice per file ------------------------------------------------------------------------------------


def test_each_file_gets_the_model_its_kind_asks_for_and_the_line_says_why(capsys, monkeypatch, tmp_path: Path,
                                                                           tiny_model) -> None:
    from unetsr.inference import choice as models

    def fake_shipped(outscale=None, name=None, **kw):  # two different tiny models stand in for the shipped pair
        model = tiny_model if name == "x2" else perturb_decoder(copy.deepcopy(tiny_model), seed=5)
        up = Upscaler(model, device="cpu")
        up.name = f"shipped {name} model"
        return up

    monkeypatch.setattr(models, "installed", lambda: ["x2", "x2_jpeg"])
    monkeypatch.setattr(models, "shipped_upscaler", fake_shipped)
    rgb = (photo_like(40, 56) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "shared.jpg", quality=75)
    Image.fromarray(rgb).save(tmp_path / "camera.jpg", quality=95)
    Image.fromarray(rgb).save(tmp_path / "clean.png")
    code, out, err = run(capsys, tmp_path, "-o", tmp_path / "auto")
    assert code == 0, err
    lines = {Path(line.split(" -> ")[0]).name: line for line in out.splitlines()}
    assert "shipped x2_jpeg model: JPEG q≈75," in lines["shared.jpg"]
    assert "shipped x2 model: JPEG q≈95, high quality" in lines["camera.jpg"]
    assert "shipped x2 model: not a JPEG," in lines["clean.png"]
    code, out, err = run(capsys, tmp_path / "shared.jpg", "--model", "clean", "-o", tmp_path / "forced.png")
    assert code == 0 and "shipped x2 model: --model clean" in out
    assert not np.array_equal(pixels(tmp_path / "forced.png"), pixels(tmp_path / "auto" / "shared_x2.png"))


def test_model_choice_and_a_checkpoint_contradict(capsys, photo_png: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(photo_png), "--model", "jpeg", "--checkpoint", str(tiny_checkpoint)])
    assert exit_info.value.code == 2 and "cannot be combined with --checkpoint" in capsys.readouterr().err
