"""What travels beside the pixels: EXIF (orientation reset, trimmed to what a JPEG holds), the size limit of
ICC profiles, and the marker unetsr writes into every output so that a later run recognises its own files
whatever their name, scale or format.

The marker is a PNG tEXt chunk `unetsr`, a JPEG comment starting `unetsr:`, or a WebP XMP packet with a
`unetsr:output` property. `is_unetsr_output` finds it by reading only the file's metadata, never its pixels.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from unetsr.core.version import __version__
from unetsr.imaging import png16

ORIENTATION_TAG = 0x0112
EXIF_PREFIX = png16.EXIF_PREFIX
JPEG_SEGMENT_BYTES = 65533  # the data a JPEG marker segment holds: EXIF's 6-byte prefix included
MAX_ICC_BYTES = 255 * 65519  # the largest ICC profile a JPEG can hold (255 APP2 segments): about 16 MB

MARKER_KEY = "unetsr"
MARKER_TEXT = f"upscaled by unetsr {__version__}"
_JPEG_PREFIX = f"{MARKER_KEY}:".encode("ascii")
_JPEG_COMMENT = _JPEG_PREFIX + f" {MARKER_TEXT}".encode("ascii")
_XMP_NAMESPACE = "urn:unetsr:output:1"
_XMP = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:unetsr="{_XMP_NAMESPACE}" unetsr:output="{MARKER_TEXT}"/>'
        f"</rdf:RDF></x:xmpmeta>").encode("ascii")
_MAX_MARKER_READ = 1 << 16  # a metadata block larger than this is not one unetsr wrote
_MAX_SEGMENTS = 10_000  # how many chunks or segments are looked at before giving up on finding a marker
_EXIF_BIG_TAG = 4096  # when EXIF must shrink for a JPEG, tags whose value is larger than this go first
_MAKER_NOTE, _EXIF_IFD, _GPS_IFD = 0x927C, 0x8769, 0x8825


def marker_options(fmt: str) -> dict[str, object]:
    """Pillow save options that carry the marker ('png' gets a tEXt chunk, 'jpg' a comment, 'webp' XMP)."""
    if fmt == "png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text(MARKER_KEY, MARKER_TEXT)
        return {"pnginfo": info}
    return {"comment": _JPEG_COMMENT} if fmt == "jpg" else {"xmp": _XMP}


def is_unetsr_output(path: str | Path) -> bool:
    """Whether the file carries unetsr's output marker, read from its metadata alone (PNG chunks before the
    pixels, JPEG segments before the scan, WebP chunks); False for other files, anything unreadable, and
    whatever is not a regular file (never blocks on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the scan
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            head = file.read(12)
            if head.startswith(png16.SIGNATURE):
                return _png_marked(file)
            if head.startswith(b"\xff\xd8"):
                return _jpeg_marked(file)
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return _webp_marked(file)
    except (OSError, struct.error, ValueError):
        return False
    return False


def _png_marked(file: BinaryIO) -> bool:
    """A tEXt chunk keyed `unetsr` before the first IDAT."""
    for count, (kind, start, length) in enumerate(png16.chunks(file, stop=(b"IDAT", b"IEND"))):
        if count > _MAX_SEGMENTS:
            return False
        if kind == b"tEXt" and length <= _MAX_MARKER_READ:
            file.seek(start)
            if file.read(length).startswith(MARKER_KEY.encode("ascii") + b"\x00"):
                return True
    return False


def _jpeg_marked(file: BinaryIO) -> bool:
    """A comment (COM) segment starting `unetsr:` before the start of scan."""
    file.seek(2)
    for _ in range(_MAX_SEGMENTS):
        byte = file.read(1)
        if byte != b"\xff":
            return False
        marker = file.read(1)
        while marker == b"\xff":  # fill bytes
            marker = file.read(1)
        if not marker or marker in (b"\xda", b"\xd9"):  # start of scan, end of image: no more metadata
            return False
        if marker == b"\x01" or b"\xd0" <= marker <= b"\xd7":  # markers without a length
            continue
        (length,) = struct.unpack(">H", file.read(2))
        if marker == b"\xfe":
            if file.read(length - 2).startswith(_JPEG_PREFIX):
                return True
        else:
            file.seek(length - 2, 1)
    return False


def _webp_marked(file: BinaryIO) -> bool:
    """An XMP chunk declaring the unetsr namespace with its output property."""
    file.seek(12)
    for _ in range(_MAX_SEGMENTS):
        head = file.read(8)
        if len(head) < 8:
            return False
        kind, length = head[:4], struct.unpack("<I", head[4:])[0]
        if kind == b"XMP " and length <= _MAX_MARKER_READ:
            data = file.read(length)
            return f'xmlns:unetsr="{_XMP_NAMESPACE}"'.encode() in data and b"unetsr:output=" in data
        file.seek(length + (length & 1), 1)  # chunks are padded to an even size
    return False


def orientation_and_exif(im: Image.Image) -> tuple[int, bytes | None]:
    """The EXIF orientation (1 when absent or invalid) and the EXIF block to keep, with Orientation set to 1.

    EXIF is optional: a damaged block costs the metadata, never the picture.
    """
    try:
        orientation = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser fails in many ways on damaged blocks
        orientation = 1
    exif = im.info.get("exif")
    return (orientation if orientation in range(1, 9) else 1), (reset_orientation(exif) if exif else None)


def reset_orientation(exif: bytes) -> bytes | None:
    """EXIF bytes ("Exif\\0\\0" + TIFF data) whose Orientation tag says 1, edited in place so that every other
    tag and offset stays byte-for-byte; None if the block cannot be parsed.

    Whatever type the tag was stored as (SHORT as the standard says, LONG, BYTE, ...), it is rewritten as
    SHORT 1, the value inside the entry itself: readers that accept the one accept the other."""
    data = bytearray(exif.removeprefix(EXIF_PREFIX))
    order = {b"II": "<", b"MM": ">"}.get(bytes(data[:2]))
    if order is None:
        return None
    try:
        (ifd0,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd0)
        for i in range(count):
            entry = ifd0 + 2 + 12 * i  # each entry: tag, type, count, value (2 + 2 + 4 + 4 bytes)
            (tag,) = struct.unpack_from(order + "H", data, entry)
            if tag == ORIENTATION_TAG:  # type 3 (SHORT), count 1, value 1 and two bytes of padding
                struct.pack_into(order + "HIHH", data, entry + 2, 3, 1, 1, 0)
    except struct.error:
        return None
    return EXIF_PREFIX + bytes(data)


def exif_for_jpeg(exif: bytes, note: Callable[[str], None]) -> bytes | None:
    """EXIF that fits one JPEG segment (64 KB): `exif` itself when it does; else rebuilt without its maker
    note, thumbnail and largest values; else None. Whatever is dropped is said through `note`."""
    if len(exif) <= JPEG_SEGMENT_BYTES:
        return exif
    size = f"{len(exif) / 1e6:.1f} MB" if len(exif) >= 1e6 else f"{len(exif) // 1000} KB"
    try:
        smaller, dropped = _without_big_tags(exif)
    except Exception:  # noqa: BLE001 - a block Pillow cannot parse or rebuild, however it fails: dropped whole
        smaller, dropped = None, []
    if smaller is not None and len(smaller) <= JPEG_SEGMENT_BYTES:
        names = ", ".join(dropped) if dropped else "its thumbnail"
        note(f"the EXIF ({size}) is more than a JPEG holds (64 KB): kept it without {names}")
        return smaller
    note(f"the EXIF ({size}) is more than a JPEG holds (64 KB) and could not be trimmed to fit: left out")
    return None


def _without_big_tags(exif: bytes) -> tuple[bytes, list[str]]:
    """The EXIF rebuilt by Pillow (IFD0, Exif and GPS sub-IFDs; no thumbnail) without the maker note and
    values over 4 KB; and the names of the tags left out."""
    from PIL import ExifTags

    parsed = Image.Exif()
    parsed.load(exif)
    dropped = []
    for ifd in (parsed, parsed.get_ifd(_EXIF_IFD), parsed.get_ifd(_GPS_IFD)):
        for tag in list(ifd):
            value = ifd[tag]
            if isinstance(value, dict) or tag in (_EXIF_IFD, _GPS_IFD):
                continue
            if tag == _MAKER_NOTE or len(value if isinstance(value, (bytes, str)) else repr(value)) > _EXIF_BIG_TAG:
                del ifd[tag]
                dropped.append(ExifTags.TAGS.get(tag, f"tag {tag:#06x}"))
    return parsed.tobytes(), dropped
