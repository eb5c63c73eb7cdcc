"""JPEG as photos have it: how hard a file was compressed, read from its quantisation tables (no pixels
decoded), and `jpeg_roundtrip`, the one JPEG encoder unetsr damages LR with (training and evaluation alike).

Almost every encoder (libjpeg, Pillow, browsers, most phones and editors) scales the two example tables
of the JPEG standard (Annex K) by the IJG quality formula; the quality whose scaled tables lie closest
to the file's is the estimate. Encoders with tables of their own get the nearest IJG quality.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from unetsr.imaging.formats import open_image

# JPEG standard, Annex K, in natural (row-major) order, as Pillow reports them.
LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
                 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
                 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])
CHROMA = np.array([17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
                   24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32)
JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a camera's JPEG with its preview images


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's `jpeg_quality_scaling`: the base table scaled for quality 1..100, limited to 1..255."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


_TABLES = {q: (ijg_table(LUMA, q), ijg_table(CHROMA, q)) for q in range(1, 101)}


def quality_from_tables(tables: dict[int, list[int]]) -> int | None:
    """The IJG quality (1..100) whose tables are nearest (sum of absolute differences) to `tables`,
    Pillow's `Image.quantization` {0: luma, 1: chroma, ...}; None without a luma table of 64 entries."""
    luma = np.asarray(tables.get(0, ()), dtype=np.int64)
    if luma.shape != (64,):
        return None
    chroma = np.asarray(tables.get(1, ()), dtype=np.int64)

    def distance(q: int) -> int:
        ref_luma, ref_chroma = _TABLES[q]
        d = int(np.abs(luma - ref_luma).sum())
        return d + int(np.abs(chroma - ref_chroma).sum()) if chroma.shape == (64,) else d

    return min(range(1, 101), key=lambda q: (distance(q), -q))


def jpeg_quality(path: str | Path) -> int | None:
    """The estimated quality of a JPEG file, or None for any other kind of file (or an unreadable one)."""
    try:
        with open_image(path) as im:
            if im.format not in JPEG_FORMATS:
                return None
            return quality_from_tables(getattr(im, "quantization", None) or {})
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
"""Chroma subsampling by name, as Pillow's JPEG encoder takes it."""


def jpeg_roundtrip(rgb: np.ndarray, quality: int, subsampling: str = "4:2:0") -> np.ndarray:
    """An H×W×3 uint8 array saved as a baseline JPEG by Pillow (libjpeg's standard tables) and decoded."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=int(quality), subsampling=SUBSAMPLING[subsampling])
    with Image.open(buf, formats=("JPEG",)) as im:
        return np.asarray(im.convert("RGB"))
