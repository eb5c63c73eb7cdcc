"""upscale_file: one file read, upscaled and written, with its alpha, sizes and folder problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import photo_like
from PIL import Image

from unetsr.batch.one_file import ensure_folder, upscale_file
from unetsr.batch.plan import Job, Source
from unetsr.core.errors import ImageError
from unetsr.imaging.metadata import is_unetsr_output
from unetsr.inference.upscaler import Upscaler

OPTIONS = dict(max_pixels=10**6, fmt=None, quality=95, overwrite=False, progress=False)


def _job(src: Path, dest: Path) -> Job:
    return Job(Source(src, Path(src.name)), dest)


def test_writes_what_the_upscaler_computes(tiny_model, photo_png: Path, tmp_path: Path) -> None:
    up = Upscaler(tiny_model, precision="fp32")
    dest = tmp_path / "new" / "deeper" / "out.png"  # missing folders are made
    before, after, notes = upscale_file(up, _job(photo_png, dest), 2.0, **OPTIONS)
    assert (before, after, notes) == ((56, 40), (112, 80), ())
    pixels = np.asarray(Image.open(photo_png).convert("RGB"), dtype=np.float32) / 255
    expected = (up.upscale_array(pixels, 2.0) * 255 + 0.5).clip(0, 255).astype(np.uint8)
    written = np.asarray(Image.open(dest))
    assert written.shape == (80, 112, 3)
    assert np.abs(written.astype(int) - expected).max() <= 1  # 8-bit rounding only


def test_alpha_is_upscaled_and_kept(tiny_model, tmp_path: Path) -> None:
    rgba = np.dstack([(photo_like(24, 32) * 255).astype(np.uint8), np.full((24, 32), 200, np.uint8)])
    src = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(src)
    up = Upscaler(tiny_model, precision="fp32")
    upscale_file(up, _job(src, tmp_path / "a_x2.png"), 2.0, **OPTIONS)
    out = Image.open(tmp_path / "a_x2.png")
    assert out.mode == "RGBA" and out.size == (64, 48)
    alpha = up.upscale_array(rgba[..., 3].astype(np.float32) / 255, 2.0)  # alpha through the model on its own
    assert np.abs(np.asarray(out)[..., 3].astype(int) - (alpha * 255 + 0.5).clip(0, 255).astype(int)).max() <= 1


def test_existing_output_is_not_replaced(tiny_model, photo_png: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out.png"
    dest.write_bytes(b"earlier result")
    with pytest.raises(ImageError):
        upscale_file(Upscaler(tiny_model, precision="fp32"), _job(photo_png, dest), 2.0, **OPTIONS)
    assert dest.read_bytes() == b"earlier result"


def test_folder_blocked_by_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ImageError, match="is a file, not a folder"):
        ensure_folder(tmp_path / "f" / "sub")
    ensure_folder(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()


def test_the_output_is_marked_and_the_writers_notes_come_back(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "described.png"
    exif = Image.Exif()
    exif[0x010E] = "x" * 200_000  # ImageDescription: more than a JPEG segment holds
    Image.fromarray((photo_like(16, 16) * 255).astype(np.uint8)).save(src, exif=exif)
    dest = tmp_path / "described_x2.jpg"

    _, _, notes = upscale_file(Upscaler(tiny_model, precision="fp32"), _job(src, dest), 2.0, **OPTIONS)

    assert notes == ("the EXIF (200 KB) is more than a JPEG holds (64 KB): kept it without ImageDescription",)
    assert is_unetsr_output(dest) and not is_unetsr_output(src)


def test_a_photo_too_big_to_upscale_is_refused_from_its_header(tiny_model, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3,000×3,000 PNG at x16 (a 2,304 MP output) is refused before a single pixel is decoded."""
    import struct
    import zlib

    from unetsr.batch import one_file

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    src = tmp_path / "huge.png"  # a header that promises 9 MP and no pixel data at all
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3000, 3000, 8, 2, 0, 0, 0))
                    + chunk(b"IEND", b""))
    monkeypatch.setattr(one_file, "read_image", lambda *a, **k: pytest.fail("pixels decoded"))
    with pytest.raises(ImageError, match="the x16 output would be 2304 MP, over the 400 MP output limit"):
        upscale_file(Upscaler(tiny_model, precision="fp32"), _job(src, tmp_path / "out.png"), 16.0,
                     **{**OPTIONS, "max_pixels": 10**8})
    assert not (tmp_path / "out.png").exists()


def test_a_thin_photo_is_judged_by_the_padded_image_the_model_computes() -> None:
    from unetsr.batch.plan import size_problem

    assert size_problem(1, 60_000_000, 2.0) is None  # a 240 MP output on its own is allowed
    assert size_problem(1, 60_000_000, 2.0, stride=8) == (
        "a 60000000×1 photo is computed padded to a multiple of 8 px, 1920 MP at x2, over the 400 MP limit")
    assert size_problem(64, 64, 2.0, stride=8) is None
