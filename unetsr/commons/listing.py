"""The Wikimedia Commons Action API, as the downloader needs it: the raster files of some categories.

Lists each category's files with their size, hash, licence and author, in batches, following the API's
`continue` protocol (and stopping if it goes round in circles). Every answer is checked, and every
problem becomes a one-line `DownloadError`; the HTTP itself is `unetsr.commons.http_client`'s.
"""

from __future__ import annotations

import html.parser
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import requests
from tqdm import tqdm

from unetsr.commons.http_client import (
    DEFAULT_LIMITS,
    DEFAULT_RETRY,
    Limits,
    RetryPolicy,
    fetch,
    make_session,
)
from unetsr.commons.manifest import RASTER_EXTENSIONS, ManifestRow, unknown_format
from unetsr.core.errors import DownloadError

DEFAULT_API = "https://commons.wikimedia.org/w/api.php"

# The extmetadata entries the manifest records; asking only for these keeps the answers small.
EXTMETADATA_KEYS = ("LicenseShortName", "LicenseUrl", "Artist", "Credit")
# Answers in a row that bring no new file before a listing is declared stuck.
MAX_IDLE_ANSWERS = 10


class _TextOnly(html.parser.HTMLParser):
    """Collects the text of an HTML fragment, entities decoded, tags dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def strip_html(fragment: str) -> str:
    """Plain text of an extmetadata HTML value ('<a href=..>Jane</a>' -> 'Jane'), whitespace collapsed."""
    parser = _TextOnly()
    parser.feed(fragment)
    parser.close()
    return " ".join("".join(parser.parts).split())


def api_query(
    session: requests.Session,
    api: str,
    params: dict[str, Any],
    retry: RetryPolicy = DEFAULT_RETRY,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """One Action API request; returns the decoded JSON object or raises DownloadError saying what was wrong."""

    def parse(response: requests.Response, chunks: Iterator[bytes]) -> Any:
        content_type = response.headers.get("Content-Type", "")
        if "json" not in content_type:
            kind = "an HTML page" if "html" in content_type else repr(content_type or "no content type")
            raise DownloadError(f"{api} answered with {kind} instead of JSON; is --api an api.php URL?")
        body = b"".join(chunks)
        try:
            return json.loads(body)
        except RecursionError:
            raise DownloadError(f"{api} answered with JSON nested too deeply to be an API answer") from None
        except ValueError:
            raise DownloadError(f"{api} answered with invalid JSON") from None

    data = fetch(session, api, parse, params=params, limit=limits.api_bytes, seconds=limits.seconds, retry=retry)
    if not isinstance(data, dict):
        raise DownloadError(f"{api} answered with JSON that is not an object")
    error = data.get("error")
    if error is not None:
        code = error.get("code", "?") if isinstance(error, dict) else "?"
        info = error.get("info", "") if isinstance(error, dict) else str(error)
        raise DownloadError(f"API error {code}: {' '.join(str(info).split())}")
    return data


def _field(info: dict[str, Any], name: str, kind: type, title: str) -> Any:
    """info[name] checked to be of `kind`, or a DownloadError naming the file and the field."""
    value = info.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DownloadError(f"API answer for {title!r} lacks a valid {name!r} field")
    return value


def _meta(info: dict[str, Any], key: str) -> str:
    """Plain text of one extmetadata value, '' when absent."""
    meta = info.get("extmetadata")
    entry = meta.get(key) if isinstance(meta, dict) else None
    value = entry.get("value") if isinstance(entry, dict) else None
    return strip_html(str(value)) if value is not None else ""


def row_from_page(page: dict[str, Any], max_side: int) -> ManifestRow:
    """A ManifestRow from one formatversion=2 page with imageinfo; the rendition never upscales."""
    title = page.get("title")
    if not isinstance(title, str):
        raise DownloadError("API answer has a page without a title")
    info = page["imageinfo"][0]
    width = _field(info, "width", int, title)
    height = _field(info, "height", int, title)
    mime = _field(info, "mime", str, title)
    original_url = _field(info, "url", str, title)
    if max(width, height) <= max_side:
        download = (original_url, width, height, mime)
    else:
        thumb = (
            _field(info, "thumburl", str, title),
            _field(info, "thumbwidth", int, title),
            _field(info, "thumbheight", int, title),
        )
        if max(thumb[1], thumb[2]) > max_side:
            raise DownloadError(f"API gave a {thumb[1]}x{thumb[2]} rendition of {title!r} for max side {max_side}")
        download = (*thumb, info.get("thumbmime") or mime)
    return ManifestRow(
        title=title,
        description_url=str(info.get("descriptionurl", "")),
        original_url=original_url,
        download_url=download[0],
        width=width,
        height=height,
        size=_field(info, "size", int, title),
        sha1=_field(info, "sha1", str, title).lower(),
        mime=mime,
        download_width=download[1],
        download_height=download[2],
        download_mime=download[3],
        license=_meta(info, "LicenseShortName"),
        license_url=_meta(info, "LicenseUrl"),
        author=_meta(info, "Artist") or _meta(info, "Credit"),
        credit=_meta(info, "Credit"),
    )


def list_category(
    session: requests.Session,
    api: str,
    category: str,
    *,
    max_side: int = 2048,
    batch: int = 50,
    limit: int | None = None,
    skipped: Counter[str] | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    limits: Limits = DEFAULT_LIMITS,
) -> Iterator[ManifestRow]:
    """Yield a ManifestRow for each raster file in `category`, `batch` files per API request, up to `limit`.

    Files that are not kept (SVG, audio, video, PDF..., or a rendition in another format such as GIF)
    are not yielded; `skipped` counts them by reason. An API that sends the same `continue` twice, or
    answer after answer with no new file, stops the listing with a DownloadError instead of looping.
    """
    params = {
        "action": "query",
        "format": "json",
        "formatversion": "2",
        "generator": "categorymembers",
        "gcmtitle": category,
        "gcmtype": "file",
        "gcmlimit": str(batch),
        "prop": "imageinfo",
        "iiprop": "url|size|sha1|mime|thumbmime|extmetadata",
        "iiextmetadatafilter": "|".join(EXTMETADATA_KEYS),
        # Width and height together make a bounding box, so portrait images get max_side on the long side too.
        "iiurlwidth": str(max_side),
        "iiurlheight": str(max_side),
    }
    skipped = Counter() if skipped is None else skipped
    seen: set[str] = set()
    tokens: set[str] = set()
    idle = yielded = 0
    cont: dict[str, Any] = {}
    while True:
        data = api_query(session, api, {**params, **cont}, retry, limits)
        query = data.get("query", {})
        pages = query.get("pages", []) if isinstance(query, dict) else None
        if not isinstance(pages, list):
            raise DownloadError(f"{api} answered without a formatversion=2 page list")
        cont = data.get("continue", {})
        if not isinstance(cont, dict):
            raise DownloadError(f"{api} answered with a malformed 'continue' field")
        seen_before = len(seen)
        for row in _rows(pages, max_side, seen, skipped, more_info_follows="iicontinue" in cont):
            yield row
            yielded += 1
            if limit is not None and yielded >= limit:
                return
        if not cont:
            return
        token = json.dumps(cont, sort_keys=True)
        if token in tokens:
            raise DownloadError(f"{api} sent the same 'continue' twice ({token[:120]}); stopped listing {category}")
        tokens.add(token)
        idle = idle + 1 if len(seen) == seen_before else 0
        if idle >= MAX_IDLE_ANSWERS:
            raise DownloadError(f"{api} sent {idle} answers in a row without a new file; stopped listing {category}")


def _rows(
    pages: list[Any], max_side: int, seen: set[str], skipped: Counter[str], more_info_follows: bool
) -> Iterator[ManifestRow]:
    """The rows of one answer's pages not seen before; what is not kept is counted in `skipped`."""
    for page in pages:
        title = page.get("title") if isinstance(page, dict) else None
        if title in seen:
            continue
        infos = page.get("imageinfo") if isinstance(page, dict) else None
        if not infos and more_info_follows:
            continue
        if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict):
            raise DownloadError(f"API answer for {title!r} lacks a valid 'imageinfo' field")
        seen.add(title)
        info = infos[0]
        if info.get("filemissing"):
            skipped["(file missing)"] += 1
            continue
        mime = _field(info, "mime", str, str(title))
        if mime not in RASTER_EXTENSIONS:
            skipped[mime] += 1
            continue
        row = row_from_page(page, max_side)
        if unknown_format(row) is not None:
            skipped[f"rendition in {row.download_mime or 'no MIME type'}"] += 1
            continue
        yield row


def list_categories(
    api: str,
    categories: list[str],
    *,
    agent: str,
    max_side: int,
    limit: int | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    limits: Limits = DEFAULT_LIMITS,
    progress: bool | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[list[ManifestRow], Counter[str]]:
    """List the kept files of all `categories` (a file in several is kept once); returns (rows, skipped by reason).

    `progress` None shows a bar only on a terminal; `warn` is told of a category without any file.
    """
    rows: dict[str, ManifestRow] = {}
    skipped: Counter[str] = Counter()
    disable = None if progress is None else not progress
    with make_session(agent) as session, tqdm(desc="listing", unit="file", disable=disable) as bar:
        for category in categories:
            remaining = None if limit is None else limit - len(rows)
            if remaining == 0:
                break
            skipped_before = skipped.total()
            found = 0
            for row in list_category(
                session, api, category, max_side=max_side, limit=remaining, skipped=skipped, retry=retry, limits=limits
            ):
                found += 1
                if row.title not in rows:
                    rows[row.title] = row
                    bar.update()
            if found == 0 and skipped.total() == skipped_before and warn is not None:
                warn(f"{category} has no files; check its name")
    return list(rows.values()), skipped
