"""A small client for the Wikimedia Commons Action API: polite HTTP with retries, and category listing.

Only what the downloader needs: list the files of a category with their size, hash, licence and
author, in batches, following the API's `continue` protocol. Every answer is checked, and every
problem becomes a one-line `DownloadError`.
"""

from __future__ import annotations

import email.utils
import html.parser
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

import requests

from unetsr import __version__
from unetsr.errors import DownloadError

DEFAULT_API = "https://commons.wikimedia.org/w/api.php"

# Raster formats worth training on, and the file extension each is saved with.
RASTER_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/tiff": ".tif", "image/webp": ".webp"}

# The extmetadata entries the manifest records; asking only for these keeps the answers small.
EXTMETADATA_KEYS = ("LicenseShortName", "LicenseUrl", "Artist", "Credit")
# (connect, read) seconds: generous for slow thumbnail rendering, short enough to notice a dead link.
TIMEOUT = (10, 60)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry: `retries` extra tries, waits of `base * 2**n` up to `cap` seconds."""

    retries: int = 4
    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based); a server's Retry-After wins, capped."""
        wait = self.base * 2**attempt
        if retry_after:
            wait = parse_retry_after(retry_after, default=wait)
        return max(0.0, min(wait, self.cap))


def parse_retry_after(value: str, default: float) -> float:
    """Seconds from a Retry-After header, either delay-seconds or an HTTP date; `default` if unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def user_agent(contact: str) -> str:
    """The descriptive User-Agent Wikimedia's policy asks for: tool/version (contact) library/version."""
    if any(ch in contact for ch in "\r\n()") or not contact.isprintable():
        raise DownloadError("--contact must be one printable line without parentheses")
    return f"unetsr-download/{__version__} ({contact}) requests/{requests.__version__}"


def make_session(agent: str) -> requests.Session:
    """A requests session that sends `agent` and asks for gzip; one per thread, as sessions are not thread-safe."""
    session = requests.Session()
    session.headers.update({"User-Agent": agent, "Accept-Encoding": "gzip"})
    return session


def describe_error(exc: requests.RequestException) -> str:
    """The useful end of a requests error ("Connection refused"), not its nested repr."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    if found:
        return found.group(1).strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__


def get_with_retries(
    session: requests.Session,
    url: str,
    *,
    params: dict[str, Any] | None = None,
    stream: bool = False,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], Any] = time.sleep,
) -> requests.Response:
    """GET `url`, retrying timeouts, connection errors, 5xx and 429 with backoff; other 4xx fail at once.

    Returns a 2xx response (the caller closes it); raises DownloadError with a one-line reason otherwise.
    """
    for attempt in range(retry.retries + 1):
        last = attempt == retry.retries
        try:
            response = session.get(url, params=params, stream=stream, timeout=TIMEOUT)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if last:
                raise DownloadError(f"cannot reach {url}: {describe_error(exc)}") from None
            sleep(retry.delay(attempt))
            continue
        except requests.RequestException as exc:
            raise DownloadError(f"cannot request {url}: {describe_error(exc)}") from None
        status = response.status_code
        if (status == 429 or status >= 500) and not last:
            wait = retry.delay(attempt, response.headers.get("Retry-After"))
            response.close()
            sleep(wait)
            continue
        if status >= 400:
            response.close()
            raise DownloadError(f"HTTP {status} {response.reason} from {url}")
        return response
    raise AssertionError("unreachable: the last attempt returns or raises")


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
    session: requests.Session, api: str, params: dict[str, Any], retry: RetryPolicy = RetryPolicy()
) -> dict[str, Any]:
    """One Action API request; returns the decoded JSON object or raises DownloadError saying what was wrong."""
    response = get_with_retries(session, api, params=params, retry=retry)
    with response:
        content_type = response.headers.get("Content-Type", "")
        if "json" not in content_type:
            kind = "an HTML page" if "html" in content_type else repr(content_type or "no content type")
            raise DownloadError(f"{api} answered with {kind} instead of JSON; is --api an api.php URL?")
        try:
            data = response.json()
        except ValueError:
            raise DownloadError(f"{api} answered with invalid JSON") from None
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
    retry: RetryPolicy = RetryPolicy(),
) -> Iterator[ManifestRow]:
    """Yield a ManifestRow for each raster file in `category`, `batch` files per API request, up to `limit`.

    Non-raster files (SVG, audio, video, PDF...) are not yielded; their MIME types are counted in `skipped`.
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
    yielded = 0
    cont: dict[str, Any] = {}
    while True:
        data = api_query(session, api, {**params, **cont}, retry)
        query = data.get("query", {})
        pages = query.get("pages", []) if isinstance(query, dict) else None
        if not isinstance(pages, list):
            raise DownloadError(f"{api} answered without a formatversion=2 page list")
        cont = data.get("continue", {})
        if not isinstance(cont, dict):
            raise DownloadError(f"{api} answered with a malformed 'continue' field")
        more_info_follows = "iicontinue" in cont
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
            yield row_from_page(page, max_side)
            yielded += 1
            if limit is not None and yielded >= limit:
                return
        if not cont:
            return
