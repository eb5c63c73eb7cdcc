"""A polite HTTP client that no server can stretch: retries with backoff, a deadline and a size cap on every body.

Each request has a per-read timeout *and* an overall deadline (`unetsr.commons.deadline`) that covers the
body too, so even a reply dripped one byte a second ends on time: a file earns more time than an API
reply only by arriving at `Limits.min_rate` or faster. Bodies are decoded here, in
chunks (gzip included), and cut off at a byte limit, so a gzip bomb or an endless stream is never held
whole, in memory or on disk. Every problem becomes a one-line `DownloadError`.
"""

from __future__ import annotations

import email.utils
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import requests
import urllib3

from unetsr.commons.deadline import Deadline, watch_deadlines
from unetsr.core.errors import DownloadError
from unetsr.core.version import __version__

T = TypeVar("T")

# (connect, read) seconds: generous for slow thumbnail rendering, short enough to notice a dead link.
TIMEOUT = (10, 60)
CHUNK = 1 << 16
# What a connection lost in the middle of a body looks like, from requests or from urllib3 underneath.
_BODY_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


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


@dataclass(frozen=True)
class Limits:
    """How long one request may take and how large a body may grow, whatever the server sends."""

    seconds: float = 120.0  # deadline of one request, headers and body together
    min_rate: float = 50_000.0  # a file download earns one second more for every min_rate bytes it receives
    api_bytes: int = 32 << 20  # decoded size of one API reply (Commons sends a few hundred kB)
    file_margin: int = 1 << 20  # bytes a file may exceed the size it was listed with


DEFAULT_RETRY = RetryPolicy()
DEFAULT_LIMITS = Limits()


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


def describe_error(exc: BaseException) -> str:
    """The useful end of a requests error ("Connection refused"), not its nested repr."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    if found:
        return found.group(1).strip()
    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return "timed out"
    return type(exc).__name__


def make_session(agent: str) -> requests.Session:
    """A requests session that sends `agent`, asks for gzip and obeys deadlines; one per thread."""
    session = requests.Session()
    session.headers.update({"User-Agent": agent, "Accept-Encoding": "gzip"})
    watch_deadlines(session)
    return session


# --- bodies ----------------------------------------------------------------------------------------


class _Retryable(Exception):
    """A failure worth another try: no connection, 5xx or 429, or a connection lost mid-body."""

    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def body_chunks(response: requests.Response, limit: int, url: str = "",
                on_raw: Callable[[int], Any] | None = None) -> Iterator[bytes]:
    """The decoded body in chunks of at most CHUNK bytes; DownloadError once it passes `limit` bytes.

    Decoding happens here, a bounded step at a time, so a small gzip reply that inflates to gigabytes
    is stopped at the limit rather than inflated whole. `url` names the body in messages; `on_raw` is
    told the size of every piece read from the connection (a Deadline's `got`).
    """
    url = url or response.url
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise DownloadError(f"{url} answered with an unsupported Content-Encoding {encoding!r}")
    inflate = None if encoding in ("", "identity") else zlib.decompressobj(zlib.MAX_WBITS | 32)
    length = response.headers.get("Content-Length", "")
    if inflate is None and length.isdigit() and int(length) > limit:
        raise DownloadError(f"{url} announced {int(length):,} bytes, more than the {limit:,} allowed")
    total = 0
    try:
        for raw in response.raw.stream(CHUNK, decode_content=False):
            if on_raw is not None:
                on_raw(len(raw))
            for piece in [raw] if inflate is None else _inflated(inflate, raw):
                total += len(piece)
                if total > limit:
                    raise DownloadError(f"{url} sent more than the {limit:,} bytes allowed; stopped reading")
                yield piece
    except _BODY_ERRORS as exc:
        raise _Retryable(f"connection lost while downloading {url}: {describe_error(exc)}") from None
    except zlib.error:
        raise DownloadError(f"{url} sent a damaged gzip body") from None
    if inflate is not None and not inflate.eof:
        raise _Retryable(f"connection lost while downloading {url}: the gzip body ended early")


def _inflated(inflate: Any, data: bytes) -> Iterator[bytes]:
    """Decompress `data` at most CHUNK output bytes at a time (never all of a bomb at once)."""
    while data and not inflate.eof:
        piece = inflate.decompress(data, CHUNK)
        data = inflate.unconsumed_tail
        if piece:
            yield piece


def fetch(
    session: requests.Session,
    url: str,
    consume: Callable[[requests.Response, Iterator[bytes]], T],
    *,
    limit: int,
    seconds: float,
    min_rate: float = 0.0,
    params: dict[str, Any] | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """GET `url` and return `consume(response, chunks)`, the chunks being its body cut off at `limit` bytes.

    Each try must end within `seconds`, plus one second for every `min_rate` bytes of body received (0:
    none), so a slow drip is cut at `seconds` while a large file that keeps arriving is not. Timeouts,
    connection errors (before or during the body), 5xx and 429 are retried with backoff (Retry-After
    honoured); other 4xx, a body over the limit and a missed deadline fail at once. `consume` is called
    once per try that gets a 2xx answer.
    """
    for attempt in range(retry.retries + 1):
        failure: Exception | None = None
        with Deadline(seconds, min_rate) as deadline:
            try:
                result = _get_once(session, url, consume, limit, params, deadline)
            except (_Retryable, DownloadError) as exc:
                failure = exc
        if deadline.expired:  # checked even on success: a cut connection can look like a body that just ended
            earned = f" ({deadline.received:,} bytes received, under {min_rate:,.0f} bytes/s)" if min_rate > 0 else ""
            raise DownloadError(f"{url} took longer than {deadline.allowed():.3g} s{earned}; "
                                "the server is too slow or stalled")
        if failure is None:
            return result
        if isinstance(failure, DownloadError):
            raise failure
        if attempt == retry.retries:
            raise DownloadError(str(failure)) from None
        sleep(retry.delay(attempt, failure.retry_after))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _get_once(
    session: requests.Session,
    url: str,
    consume: Callable[[requests.Response, Iterator[bytes]], T],
    limit: int,
    params: dict[str, Any] | None,
    deadline: Deadline | None = None,
) -> T:
    """One try of `fetch`: raises _Retryable for what another try may cure, DownloadError for the rest."""
    try:
        response = session.get(url, params=params, stream=True, timeout=TIMEOUT)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retryable(f"cannot reach {url}: {describe_error(exc)}") from None
    except requests.RequestException as exc:
        raise DownloadError(f"cannot request {url}: {describe_error(exc)}") from None
    with response:
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status} {response.reason} from {url}", response.headers.get("Retry-After"))
        if status >= 400:
            raise DownloadError(f"HTTP {status} {response.reason} from {url}")
        return consume(response, body_chunks(response, limit, url, None if deadline is None else deadline.got))
