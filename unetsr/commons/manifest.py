"""The manifest: one CSV row per file of the photo set, saying where it came from and whom to credit.

Written atomically and read back exactly. Text from Commons is stored safely for spreadsheets: a cell
that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or carriage return first) gets a
leading single quote (OWASP's rule for CSV injection), which `read_manifest` removes again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import BinaryIO

from unetsr.commons.image_check import SIZE_TOLERANCE
from unetsr.core.errors import DownloadError
from unetsr.core.fileio import atomic_write

# Raster formats worth training on, and the file extension each is saved with.
RASTER_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/tiff": ".tif", "image/webp": ".webp"}
# First characters that make a spreadsheet treat a cell as a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ManifestRow:
    """One file of the data set: where it lives, what it is, and who must be credited under which licence.

    `download_*` describe the rendition fetched by default (at most max-side pixels on the long side,
    or the original itself when that is already small enough).
    """

    title: str
    description_url: str
    original_url: str
    download_url: str
    width: int
    height: int
    size: int
    sha1: str
    mime: str
    download_width: int
    download_height: int
    download_mime: str
    license: str
    license_url: str
    author: str
    credit: str


MANIFEST_FIELDS = tuple(f.name for f in fields(ManifestRow))
_INT_FIELDS = frozenset(f.name for f in fields(ManifestRow) if f.type == "int")


def unknown_format(row: ManifestRow) -> str | None:
    """Why a row cannot be kept (its original or its rendition is not a raster format we save), or None."""
    for mime in (row.mime, row.download_mime):
        if mime not in RASTER_EXTENSIONS:
            return f"{mime or 'no MIME type'} is not a raster format that is kept"
    return None


def file_name(title: str, mime: str) -> str:
    """A safe, stable and unique file name for a Commons title: ASCII stem, short hash of the title, MIME extension.

    The stem keeps only letters, digits, '_' and '-', so no title can climb out of the folder or hide as a
    dotfile; the hash keeps titles apart that sanitise to the same stem. DownloadError for other MIME types.
    """
    if mime not in RASTER_EXTENSIONS:
        raise DownloadError(f"{mime or 'no MIME type'} is not a raster format that is kept")
    name = title.split(":", 1)[1] if title.lower().startswith("file:") else title
    stem = name.rsplit(".", 1)[0] if "." in name else name
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_stem).strip("_-")[:80] or "file"
    digest = hashlib.sha1(title.encode("utf-8")).hexdigest()[:10]
    return f"{safe}-{digest}{RASTER_EXTENSIONS[mime]}"


def escape_cell(value: object) -> str:
    """A cell as stored: a leading quote before text a spreadsheet would run as a formula (and before a
    quote that `unescape_cell` would otherwise remove), so every value reads back exactly."""
    text = str(value)
    if text.startswith(FORMULA_START) or (text.startswith("'") and text[1:2] in (*FORMULA_START, "'")):
        return "'" + text
    return text


def unescape_cell(text: str) -> str:
    """The value of a stored cell: `escape_cell` undone (cells it did not touch come back unchanged)."""
    if text.startswith("'") and text[1:2] in (*FORMULA_START, "'"):
        return text[1:]
    return text


def write_manifest(rows: Iterable[ManifestRow], path: Path) -> None:
    """Write the manifest CSV atomically (see `fileio.atomic_write`); DownloadError if it cannot be written."""
    rows = list(rows)

    def save(file: BinaryIO) -> None:
        text = io.TextIOWrapper(file, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(MANIFEST_FIELDS)
        writer.writerows([escape_cell(value) for value in astuple(row)] for row in rows)
        text.flush()
        text.detach()

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, save)
    except OSError as exc:
        raise DownloadError(f"cannot write the manifest {path}: {exc.strerror or exc}") from None


def read_manifest(path: Path, warn: Callable[[str], None] | None = None) -> list[ManifestRow]:
    """Rows of a manifest written by `write_manifest`; DownloadError if it is unreadable or of another layout.

    A row whose file is of a format that is not kept (as older versions could write) is left out, and
    `warn` is told why, so one odd row never blocks a run.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = set(MANIFEST_FIELDS) - set(reader.fieldnames or ())
            if missing:
                raise DownloadError(f"{path} lacks columns {sorted(missing)}; rebuild it with --refresh")
            rows = []
            for record in reader:
                row = _row(record, f"{path} line {reader.line_num}")
                reason = unknown_format(row)
                if reason is None:
                    rows.append(row)
                elif warn is not None:
                    warn(f"{path} line {reader.line_num}: {row.title!r} left out: {reason}")
            return rows
    except IsADirectoryError:
        raise DownloadError(f"{path} is a folder, not a manifest file") from None
    except OSError as exc:
        raise DownloadError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DownloadError(f"{path} is not a readable CSV manifest: {exc}") from None


def _row(record: dict[str, str | None], where: str) -> ManifestRow:
    """One ManifestRow from a CSV record, cells unescaped and numbers parsed."""
    values = {name: unescape_cell(record[name] or "") for name in MANIFEST_FIELDS}
    try:
        return ManifestRow(**{k: int(v) if k in _INT_FIELDS else v for k, v in values.items()})
    except ValueError:
        raise DownloadError(f"{where}: a number column is not a number") from None


def check_renditions(rows: Iterable[ManifestRow], max_side: int, manifest: Path) -> None:
    """Raise DownloadError if a reused manifest was listed for another --max-side than the one asked for now."""
    for row in rows:
        wanted = min(max_side, max(row.width, row.height))
        if abs(max(row.download_width, row.download_height) - wanted) > SIZE_TOLERANCE:
            raise DownloadError(f"{manifest} was listed for another --max-side than {max_side}; add --refresh")
