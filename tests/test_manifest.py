"""Tests of the manifest CSV: exact round trips, spreadsheet-safe cells, rows that cannot be kept, atomic writes."""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import pytest

from unetsr.commons.manifest import (
    MANIFEST_FIELDS,
    ManifestRow,
    escape_cell,
    file_name,
    read_manifest,
    unescape_cell,
    write_manifest,
)
from unetsr.core.errors import DownloadError

ROW = ManifestRow("File:A, \"quoted\".jpg", "d", "o", "r", 64, 40, 1234, "ab" * 20, "image/jpeg", 32, 20,
                  "image/jpeg", "CC BY-SA 4.0", "l", "Jane, Doe", "Own work")
TRICKY = ["=1+1", "+cmd|' /C calc'!A0", "-2", "@SUM(A1)", "\tx", "\rx", "'", "''", "'=x", "''=x", "'abc", "''a",
          "", "plain", "a=b", "it's", "line\nbreak", "=" * 3]


def raw_cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [cell for record in csv.reader(fh) for cell in record]


def test_round_trip_is_exact_atomic_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "manifest.csv"
    write_manifest([ROW, ROW], path)
    assert read_manifest(path) == [ROW, ROW]
    assert [p.name for p in path.parent.iterdir()] == ["manifest.csv"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not a private temp file
    assert raw_cells(path)[:3] == ["title", "description_url", "original_url"]
    path.write_text("title,width\nFile:A.jpg,3\n", encoding="utf-8")
    with pytest.raises(DownloadError, match="--refresh"):
        read_manifest(path)


def test_cells_are_escaped_against_formulas_and_read_back_exactly(tmp_path: Path) -> None:
    for value in TRICKY:
        assert unescape_cell(escape_cell(value)) == value
        assert not escape_cell(value).startswith(("=", "+", "-", "@", "\t", "\r"))
    assert escape_cell("=1+1") == "'=1+1" and escape_cell("plain") == "plain" and escape_cell("'abc") == "'abc"
    rows = [dataclasses.replace(ROW, title=f"File:{i}.jpg", author=value, credit=value, license=value)
            for i, value in enumerate(TRICKY)]
    rows.append(dataclasses.replace(ROW, width=-5))  # numbers are cells too
    path = tmp_path / "m.csv"
    write_manifest(rows, path)
    assert not [c for c in raw_cells(path) if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert read_manifest(path) == rows


def test_a_manifest_from_before_escaping_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_FIELDS)
        writer.writerow(dataclasses.astuple(dataclasses.replace(ROW, author="'t Hooft", credit="a'b")))
    assert read_manifest(path)[0].author == "'t Hooft"


def test_rows_of_formats_not_kept_are_left_out_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    gif = dataclasses.replace(ROW, title="File:Moving.jpg", download_mime="image/gif")
    svg = dataclasses.replace(ROW, title="File:Drawing.svg", mime="image/svg+xml")
    write_manifest([ROW, gif, svg], path)
    warnings: list[str] = []
    assert read_manifest(path, warn=warnings.append) == [ROW]
    assert len(warnings) == 2 and "line 3: 'File:Moving.jpg' left out: image/gif is not a raster" in warnings[0]
    assert read_manifest(path) == [ROW]
    with pytest.raises(DownloadError, match="image/gif is not a raster format"):
        file_name(gif.title, gif.download_mime)


def test_unreadable_or_unwritable_manifest_is_a_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="is a folder"):
        read_manifest(tmp_path)
    with pytest.raises(DownloadError, match="cannot read"):
        read_manifest(tmp_path / "missing.csv")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DownloadError, match="cannot write the manifest"):
        write_manifest([ROW], tmp_path / "file" / "m.csv")
    (tmp_path / "bad.csv").write_bytes(b"\xff\xfe\x00title")
    with pytest.raises(DownloadError, match="not a readable CSV"):
        read_manifest(tmp_path / "bad.csv")
