"""unetsr.imaging.formats: only the decoders unetsr names ever run, whatever a file's name or bytes say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, UnidentifiedImageError

from unetsr.commons.image_check import check_image
from unetsr.core.errors import DownloadError, ImageError
from unetsr.imaging.formats import (
    READ_FORMATS,
    format_name,
    format_of_suffix,
    is_image_path,
    open_image,
)
from unetsr.imaging.jpeg import jpeg_quality
from unetsr.imaging.photos import read_image

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
       b"newpath 0 0 moveto 8 0 lineto 8 8 lineto closepath fill\nshowpage\n%%EOF\n")


@pytest.fixture
def ghostscript_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every call Pillow would make to Ghostscript, recorded instead of run."""
    calls: list[object] = []

    def record(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise OSError("Ghostscript must not run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", record)
    return calls


@pytest.mark.parametrize("name", ["holiday.png", "holiday.jpg", "holiday.eps"])
def test_postscript_under_any_name_is_not_a_supported_image(tmp_path: Path, name: str,
                                                            ghostscript_calls: list[object]) -> None:
    path = tmp_path / name
    path.write_bytes(EPS)
    with pytest.raises(ImageError, match="not a supported image|EPS is not supported"):
        read_image(path)
    assert jpeg_quality(path) is None
    with pytest.raises(DownloadError):
        check_image(path)
    assert ghostscript_calls == []
    assert "EPS" in Image.OPEN  # Pillow itself would have opened it: the allow-list is what refused it


@pytest.mark.parametrize("fmt", ["ICO", "TGA", "PPM", "PCX", "SGI"])
def test_other_pillow_formats_are_refused_by_their_bytes(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "photo.png"  # a name that claims a supported format
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(path, format=fmt)
    with Image.open(path) as im:  # what a plain Image.open would have done
        assert im.format == fmt
    with pytest.raises(UnidentifiedImageError):
        open_image(path)
    with pytest.raises(ImageError, match=r"photo.png: not a supported image \(unetsr reads PNG, JPEG"):
        read_image(path)


def test_supported_formats_open(tmp_path: Path) -> None:
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("TIFF", ".tif"), ("BMP", ".bmp")):
        path = tmp_path / f"a{suffix}"
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path, format=fmt)
        with open_image(path) as im:
            assert im.format == fmt and fmt in READ_FORMATS


def test_output_format_names_have_one_spelling() -> None:
    assert [format_name(t) for t in ("PNG", ".jpeg", "JPG", "jfif", "webp", "gif")] == [
        "png", "jpg", "jpg", "jpg", "webp", None]
    assert [format_of_suffix(p) for p in ("a.JPEG", "b.png", "c.webp", "d.tif", "e")] == [
        "jpg", "png", "webp", None, None]


def test_is_image_path() -> None:
    assert is_image_path("holiday/IMG_0001.JPG")
    assert is_image_path(Path("scan.tiff"))
    assert not is_image_path("notes.txt")
