"""`python -m unetsr.evaluate`: each row is computed from what it names, the table alone is on stdout."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from unetsr import evaluate
from unetsr.evaluation import benchmark
from unetsr.imaging.resize import make_lr
from unetsr.inference.upscaler import Upscaler
from unetsr.model.network import build_model

ROOT = Path(__file__).resolve().parents[1]


def psnr_y_by_hand(pred: np.ndarray, target: np.ndarray, shave: int) -> float:
    """PSNR on BT.601 luma of 8-bit-rounded H×W×3 images, border shaved: the SR papers' recipe, in numpy."""
    def luma(a: np.ndarray) -> np.ndarray:
        q = np.round(np.clip(a.astype(np.float64), 0, 1) * 255) / 255
        y = 16 + 65.481 * q[..., 0] + 128.553 * q[..., 1] + 24.966 * q[..., 2]
        return y[shave:-shave, shave:-shave]
    return float(10 * np.log10(255**2 / np.mean((luma(pred) - luma(target)) ** 2)))


def hr_and_lr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The photo as floats and its x2 LR, as the evaluation protocol makes it."""
    return make_lr(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255, 2)


def rows_of(model: torch.nn.Module, paths: list[Path], **kwargs) -> dict[str, benchmark.Row]:
    upscaler = Upscaler(model, device="cpu", precision="fp32")
    return {r.method: r for r in benchmark.evaluate(upscaler, paths, 2, **kwargs)}


def test_the_model_row_is_the_model_and_an_untrained_one_scores_as_bilinear(photo_png: Path, tiny_config,
                                                                           tiny_model) -> None:
    hr, lr = hr_and_lr(photo_png)
    lr_t = torch.from_numpy(lr.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        direct = tiny_model(lr_t)[0].permute(1, 2, 0).numpy()  # the model itself: no Upscaler, no tiles
    pil_bilinear = np.asarray(Image.fromarray(np.round(lr * 255).astype(np.uint8)).resize(
        (hr.shape[1], hr.shape[0]), Image.BILINEAR), dtype=np.float32) / 255

    rows = rows_of(tiny_model, [photo_png])
    assert list(rows) == ["bilinear", "bicubic", "lanczos", "unetsr"]
    assert rows["unetsr"].psnr == pytest.approx(psnr_y_by_hand(direct, hr, 2), abs=0.02)
    assert rows["bilinear"].psnr == pytest.approx(psnr_y_by_hand(pil_bilinear, hr, 2), abs=0.05)
    assert abs(rows["unetsr"].psnr - rows["bilinear"].psnr) > 0.5  # a trained-like model is not bilinear

    untrained = build_model(tiny_config).eval()  # the tail starts at zero: SR = bilinear base + 0
    with torch.no_grad():
        base = F.interpolate(lr_t, scale_factor=2, mode="bilinear", align_corners=False)
        assert torch.allclose(untrained(lr_t), base, atol=1e-6)
    plain = rows_of(untrained, [photo_png])
    assert plain["unetsr"].psnr == pytest.approx(plain["bilinear"].psnr, abs=0.05)
    assert plain["unetsr"].ssim == pytest.approx(plain["bilinear"].ssim, abs=0.002)
    assert plain["unetsr"].psnr != pytest.approx(rows["unetsr"].psnr, abs=0.5)


def test_classic_methods_rank_as_expected_on_a_photo_like_image(photo_png: Path, tiny_model) -> None:
    rows = rows_of(tiny_model, [photo_png])
    assert rows["bicubic"].psnr > rows["bilinear"].psnr and rows["bicubic"].ssim > rows["bilinear"].ssim
    assert all(0 < r.ssim < 1 and r.seconds_per_mp > 0 and r.lpips is None for r in rows.values())


def test_a_16_bit_photo_scores_like_its_8_bit_copy(tmp_path: Path, photo_png: Path, tiny_model) -> None:
    grey = np.asarray(Image.open(photo_png).convert("L"), dtype=np.float64) / 255
    grey = np.clip(grey * 0.8 + 0.1 + np.linspace(0, 0.02, grey.shape[1]), 0, 1)  # values off the 8-bit steps
    deep, flat = tmp_path / "deep.png", tmp_path / "flat.png"
    Image.fromarray(np.round(grey * 65535).astype(np.uint16)).save(deep)  # mode I;16
    Image.fromarray(np.round(grey * 255).astype(np.uint8)).save(flat)
    r16, r8 = rows_of(tiny_model, [deep]), rows_of(tiny_model, [flat])
    for method in r8:  # a reader that clipped 16-bit values to 255 would see a white image here
        assert r16[method].psnr == pytest.approx(r8[method].psnr, abs=0.3), method
        assert r16[method].ssim == pytest.approx(r8[method].ssim, abs=0.01), method
    assert r8["bicubic"].psnr < 45


def test_lpips_column_is_filled_when_a_metric_is_available(photo_png: Path, tiny_model) -> None:
    fake = lambda pred, target: float((pred - target).abs().mean())  # noqa: E731 - a stand-in distance
    rows = list(rows_of(tiny_model, [photo_png], lpips_fn=fake).values())
    assert all(r.lpips is not None and r.lpips > 0 for r in rows)
    assert "n/a" not in benchmark.format_table(rows)


def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[bool]:
    """An empty torch hub cache whose downloads fail as they do offline; returns the `progress` of each try."""
    import urllib.error

    tries: list[bool] = []

    def download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        tries.append(progress)
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return tries


def test_offline_lpips_is_one_plain_line_without_download_noise(photo_png: Path, tiny_checkpoint: Path, capsys,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    pytest.importorskip("lpips")
    tries = offline_hub(monkeypatch, tmp_path)
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--hr", str(photo_png.parent), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.count("n/a") == 4 and tries == [False]  # one try, without a progress bar
    lines = [line for line in err.splitlines() if "--no-lpips" in line]
    assert len(lines) == 1 and "LPIPS n/a: it needs AlexNet weights (233 MB) from the network" in lines[0]
    assert "(Name or service not known); --no-lpips skips it" in lines[0]
    assert "Downloading" not in err and "URLError" not in err and "Traceback" not in err


def test_missing_lpips_weights_are_fetched_once_quietly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys) -> None:
    lpips = pytest.importorskip("lpips")
    tries: list[bool] = []

    def download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        tries.append(progress)
        print(f'Downloading: "{url}"', file=sys.stderr)
        Path(dst).write_bytes(b"weights")

    def loaded(*args, **kwargs) -> torch.nn.Module:
        print("Loading model from: lpips/weights/v0.1/alex.pth")  # what lpips prints on stdout
        return torch.nn.Identity()

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    monkeypatch.setattr(lpips, "LPIPS", loaded)
    said: list[str] = []
    fn, note = benchmark.lpips_metric(say=said.append)
    assert fn is not None and note == "" and tries == [False]
    assert said == [f"LPIPS: fetching its AlexNet weights (233 MB, once) into {benchmark.alexnet_weights()[1]}"]
    assert benchmark.lpips_metric(say=said.append)[0] is not None and tries == [False] and len(said) == 1  # cached
    assert capsys.readouterr() == ("", "")


def test_lpips_that_fails_to_load_is_one_line_and_prints_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 capsys) -> None:
    lpips = pytest.importorskip("lpips")

    def broken(*args, **kwargs):
        print('Downloading: "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"')
        raise OSError("no network\nsecond line")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _, cached = benchmark.alexnet_weights()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"damaged")
    monkeypatch.setattr(lpips, "LPIPS", broken)
    fn, note = benchmark.lpips_metric()
    assert fn is None and note.startswith("LPIPS n/a: it could not be loaded (OSError: no network; a damaged ")
    assert note.endswith("--no-lpips skips it") and "\n" not in note
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_stdout_holds_the_table_alone(fmt: str, photo_png: Path, tiny_checkpoint: Path, capsys,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate, "lpips_metric", lambda say=None: (None, "LPIPS n/a: offline"))
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--hr", str(photo_png.parent),
                          "--format", fmt]) == 0
    out, err = capsys.readouterr()
    if fmt == "json":
        table = json.loads(out)
        assert table["photos"] == 1 and table["scale"] == 2 and table["lpips_note"] == "LPIPS n/a: offline"
        psnr = {r["method"]: r["psnr"] for r in table["rows"]}
        assert all(r["lpips"] is None for r in table["rows"])
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        psnr = {r["method"]: float(r["psnr_y_db"]) for r in rows}
        assert all(r["lpips"] == "" for r in rows)
    else:
        lines = out.strip().splitlines()
        assert lines[0].startswith("| method ") and set(lines[1]) <= set("|-:")
        assert all(line.startswith("| ") and line.endswith(" |") and "n/a" in line for line in lines[2:])
        assert len({len(line) for line in lines}) == 1  # aligned columns
        psnr = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in lines[2:]}
    assert list(psnr) == ["bilinear", "bicubic", "lanczos", "unetsr"]
    assert psnr["bicubic"] > psnr["bilinear"] > 15
    assert "unetsr.evaluate: LPIPS n/a: offline\n" in err and "1 photo, x2" in err and "evaluating" in err


def test_an_unreadable_photo_is_skipped_with_one_line_and_exit_1(photo_png: Path, tiny_checkpoint: Path,
                                                                capsys) -> None:
    (photo_png.parent / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--hr", str(photo_png.parent), "--no-lpips",
                          "--quiet", "--format", "csv"]) == 1
    out, err = capsys.readouterr()
    assert [r["method"] for r in csv.DictReader(io.StringIO(out))] == ["bilinear", "bicubic", "lanczos", "unetsr"]
    skipped = [line for line in err.splitlines() if "skipped:" in line]
    assert len(skipped) == 1 and "broken.png" in skipped[0]
    assert "1 photo (1 skipped), x2" in err and "evaluating" not in err


def test_bad_checkpoint_or_empty_folder_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("no")
    proc = subprocess.run([sys.executable, "-m", "unetsr.evaluate", "--checkpoint", str(bad), "--hr", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("unetsr.evaluate: error: checkpoint") and proc.stderr.count("\n") == 1
    assert evaluate.main(["--hr", str(tmp_path / "nothing-here")]) == 1


def test_help_imports_no_torch_and_shows_defaults() -> None:
    code = ("import sys; from unetsr import evaluate; text = evaluate.build_parser().format_help(); "
            "print('torch' in sys.modules, 'lpips' in sys.modules); print(text)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    first, text = proc.stdout.split("\n", 1)
    assert first == "False False", proc.stderr
    assert text.startswith("usage: python -m unetsr.evaluate ")
    assert "(default: 384)" in " ".join(text.split()) and "(default: md)" in text and "(default: none)" in text


def test_the_console_script_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/unetsr-evaluate", "--help"])
    assert evaluate.build_parser().prog == "unetsr-evaluate"


@pytest.mark.parametrize("bad", [["--tile", "-1"], ["--limit", "0"], ["--scale", "1"], ["--format", "xml"]])
def test_bad_numbers_are_refused_by_argparse(bad: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--hr", ".", *bad])
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


def test_jpeg_degraded_lr_is_scored_from_the_saved_jpeg(photo_png: Path, tiny_checkpoint: Path, tiny_model, capsys,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Independently: the LR saved by Pillow at q60 and read back, upscaled by PIL bicubic.
    hr, lr = hr_and_lr(photo_png)
    saved = io.BytesIO()
    Image.fromarray(np.round(lr * 255).astype(np.uint8)).save(saved, "JPEG", quality=60)
    with Image.open(saved) as im:
        bicubic = np.asarray(im.convert("RGB").resize((hr.shape[1], hr.shape[0]), Image.BICUBIC), np.float32) / 255
    rows = rows_of(tiny_model, [photo_png], quality=60)
    assert rows["bicubic"].psnr == pytest.approx(psnr_y_by_hand(bicubic, hr, 2), abs=0.05)
    assert rows["bicubic"].psnr < rows_of(tiny_model, [photo_png])["bicubic"].psnr - 0.3

    monkeypatch.setattr(evaluate, "lpips_metric", lambda say=None: (None, "skipped"))
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--hr", str(photo_png.parent), "--degrade", "jpeg",
                          "--quality", "60", "--format", "json"]) == 0
    captured = capsys.readouterr()
    table = json.loads(captured.out)
    assert table["jpeg_quality"] == 60 and "JPEG q60" in table["lr"] and "JPEG q60" in captured.err
    psnr = {r["method"]: r["psnr"] for r in table["rows"]}
    assert psnr["bicubic"] == pytest.approx(rows["bicubic"].psnr, abs=1e-6)


def test_box_lr_kernel_is_the_mean_of_each_2x2_block(photo_png: Path, tiny_checkpoint: Path, tiny_model, capsys,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Independently: a box downscale by 2 averages each 2×2 block; the bicubic row upscales that LR.
    hr = np.asarray(Image.open(photo_png).convert("RGB"), dtype=np.float32) / 255
    hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
    blocks = hr.reshape(hr.shape[0] // 2, 2, hr.shape[1] // 2, 2, 3).mean(axis=(1, 3))
    _, lr = make_lr(hr, 2, kernel="box")
    assert np.abs(lr - np.round(blocks * 255) / 255).max() <= 1 / 255 + 1e-6
    assert np.abs(lr - make_lr(hr, 2)[1]).max() > 2 / 255  # not the bicubic protocol's LR
    with pytest.raises(ValueError, match="unknown LR kernel"):
        make_lr(hr, 2, kernel="nearest")

    bicubic = np.clip(np.stack([np.asarray(Image.fromarray(lr[..., c], mode="F").resize(
        (hr.shape[1], hr.shape[0]), Image.BICUBIC)) for c in range(3)], axis=2), 0, 1)
    monkeypatch.setattr(evaluate, "lpips_metric", lambda say=None: (None, "skipped"))
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--hr", str(photo_png.parent), "--lr-kernel", "box",
                          "--format", "json", "--quiet"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["lr_kernel"] == "box" and "antialiased box" in table["lr"]
    psnr = {r["method"]: r["psnr"] for r in table["rows"]}
    assert psnr["bicubic"] == pytest.approx(psnr_y_by_hand(bicubic, hr, 2), abs=0.05)
    assert psnr["bicubic"] != pytest.approx(rows_of(tiny_model, [photo_png])["bicubic"].psnr, abs=0.05)


def test_ensemble_flag_scores_the_self_ensemble(photo_png: Path, tiny_checkpoint: Path, tiny_model, capsys) -> None:
    hr, lr = hr_and_lr(photo_png)
    ensemble = Upscaler(tiny_model, device="cpu", precision="fp32", ensemble=True).upscale_array(lr)
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint), "--hr", str(photo_png.parent), "--ensemble",
                          "--precision", "fp32", "--no-lpips", "--format", "json", "--quiet"]) == 0
    captured = capsys.readouterr()
    table = json.loads(captured.out)
    psnr = {r["method"]: r["psnr"] for r in table["rows"]}
    assert table["ensemble"] is True and "x8 self-ensemble" in captured.err
    assert psnr["unetsr"] == pytest.approx(psnr_y_by_hand(ensemble, hr, 2), abs=0.02)
    assert psnr["unetsr"] != pytest.approx(rows_of(tiny_model, [photo_png])["unetsr"].psnr, abs=0.01)
