import io

import numpy as np
import pytest
from helpers import photo_like
from PIL import Image

from unetsr.imaging.jpeg import (
    CHROMA,
    LUMA,
    ijg_table,
    jpeg_quality,
    quality_from_tables,
)


def _jpeg(tmp_path, quality: int, mode: str = "RGB", subsampling: int = 2, **kw):
    path = tmp_path / f"q{quality}{mode}{subsampling}.jpg"
    im = Image.fromarray((photo_like(48, 64) * 255).astype(np.uint8))
    im.convert(mode).save(path, "JPEG", quality=quality, subsampling=subsampling, **kw)
    return path


@pytest.mark.parametrize("quality", [50, 75, 95])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_the_estimate_is_within_five_of_the_saved_quality(tmp_path, quality: int, subsampling: int) -> None:
    assert abs(jpeg_quality(_jpeg(tmp_path, quality, subsampling=subsampling)) - quality) <= 5


def test_greyscale_and_progressive_jpegs_are_estimated_from_the_luma_table(tmp_path) -> None:
    assert abs(jpeg_quality(_jpeg(tmp_path, 60, mode="L")) - 60) <= 5
    assert abs(jpeg_quality(_jpeg(tmp_path, 85, progressive=True)) - 85) <= 5


def test_ijg_scaling_matches_libjpeg_by_hand() -> None:
    # libjpeg: q50 keeps the Annex K tables, q100 makes them all 1, q25 doubles them (scale 200%).
    assert np.array_equal(ijg_table(LUMA, 50), LUMA) and np.array_equal(ijg_table(CHROMA, 50), CHROMA)
    assert set(ijg_table(LUMA, 100)) == {1}
    assert ijg_table(LUMA, 25)[0] == 32 and ijg_table(LUMA, 75)[0] == 8  # 16*2; (16*50+50)//100


def test_custom_tables_get_the_nearest_quality() -> None:
    tables = {0: list(ijg_table(LUMA, 80) + 1), 1: list(ijg_table(CHROMA, 80))}
    assert abs(quality_from_tables(tables) - 80) <= 2
    assert quality_from_tables({}) is None and quality_from_tables({0: [1, 2, 3]}) is None


def test_other_files_have_no_quality(tmp_path, photo_png) -> None:
    assert jpeg_quality(photo_png) is None
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert jpeg_quality(broken) is None
    assert jpeg_quality(tmp_path / "missing.jpg") is None
    webp = tmp_path / "lossy.webp"
    Image.open(photo_png).save(webp, quality=50)
    assert jpeg_quality(webp) is None
    assert jpeg_quality(io.BytesIO(b"")) is None
