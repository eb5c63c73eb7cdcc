"""The image formats unetsr reads and writes: the one list of Pillow decoders it lets run, the file suffixes
that count as photos, and the output format names. Everything that opens an image opens it here.

A file's bytes never choose its decoder beyond this list: Pillow would otherwise hand PostScript saved as
`holiday.png` to its EPS reader, which runs Ghostscript."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from PIL import Image

Image.init()  # registers Pillow's plugins, so that OPEN lists what this Pillow can decode
READ_FORMATS: tuple[str, ...] = tuple(f for f in ("PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP", "GIF", "AVIF")
                                      if f in Image.OPEN)
"""The Pillow decoders unetsr runs (AVIF where this Pillow has it); any other file is "not a supported image"."""

READ_NAMES = "PNG, JPEG, WebP, TIFF, BMP, GIF" + (", AVIF" if "AVIF" in READ_FORMATS else "")
"""The readable formats, as said in messages."""

INPUT_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".tif", ".tiff", ".bmp", ".gif",
                            *((".avif",) if "AVIF" in READ_FORMATS else ())})
"""Suffixes of the files that count as images when a folder is scanned (any case)."""

_RAW_SUFFIXES = (".raw", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf")
_UNSUPPORTED: dict[str, tuple[str, str]] = {  # suffix -> (the format's name, what to do instead)
    ".heic": ("HEIC", "convert to JPEG or PNG"),
    ".heif": ("HEIF", "convert to JPEG or PNG"),
    ".avif": ("AVIF", "this Pillow has no AVIF decoder; convert to JPEG or PNG, or upgrade Pillow"),
    ".jxl": ("JPEG XL", "convert to JPEG or PNG"),
    ".psd": ("Photoshop", "export it as PNG or TIFF"),
    ".eps": ("EPS", "export it as PNG"),
    ".pdf": ("PDF", "export its pages as PNG"),
    ".svg": ("SVG", "render it as PNG"),
    **dict.fromkeys(_RAW_SUFFIXES, ("Camera raw", "develop it to TIFF, PNG or JPEG first")),
}
UNSUPPORTED_SUFFIXES = frozenset(_UNSUPPORTED) - INPUT_SUFFIXES
"""Suffixes of photos people have that unetsr cannot read: a folder scan counts them and says why, instead of
ignoring them."""

OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
"""The formats unetsr writes, by the name the command line and the web page use, with the usual suffix."""

PILLOW_WRITERS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".jpe": "jpg", ".jfif": "jpg", ".webp": "webp"}


def open_image(source: str | Path | IO[bytes]) -> Image.Image:
    """Pillow's Image.open limited to READ_FORMATS; anything else raises PIL.UnidentifiedImageError."""
    return Image.open(source, formats=READ_FORMATS)


def is_image_path(path: str | Path) -> bool:
    """True when the file's suffix is one unetsr reads; used to pick images out of a folder."""
    return Path(path).suffix.lower() in INPUT_SUFFIXES


def unsupported_reason(suffix: str) -> str:
    """Why files with this suffix (one of UNSUPPORTED_SUFFIXES, any case) are not read, and what to do:
    'HEIC is not supported; convert to JPEG or PNG'."""
    name, advice = _UNSUPPORTED.get(suffix.lower(), (suffix.lower().lstrip(".").upper(), "convert to JPEG or PNG"))
    return f"{name} is not supported; {advice}"


def format_name(text: str) -> str | None:
    """An output format name as written by a person (png, JPG, .jpeg, webp) -> 'png', 'jpg' or 'webp'; None if
    unetsr cannot write it."""
    name = text.lower().lstrip(".")
    name = "jpg" if name in ("jpeg", "jpe", "jfif") else name
    return name if name in OUTPUT_FORMATS else None


def format_of_suffix(path: str | Path) -> str | None:
    """The output format a file name implies ('png', 'jpg', 'webp'), or None for another or no suffix."""
    return _SUFFIX_FORMATS.get(Path(path).suffix.lower())
