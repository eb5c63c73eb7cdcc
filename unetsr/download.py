"""Build the training photo set from Wikimedia Commons (by default its Valued images), politely and resumably.

    python -m unetsr.download --contact you@example.org --limit 200

Lists the categories with the Commons API (see `unetsr.commons`), writes a manifest recording each
file's licence and author, then fetches a rendition of at most --max-side pixels (or, with
--original, the SHA-1-checked original). Every file is verified before it takes its final name, so
the output folder only ever holds whole images and a rerun skips what is already there.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import queue
import re
import secrets
import sys
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import BinaryIO, Literal

import requests
from PIL import Image
from tqdm import tqdm

from unetsr.commons import (
    DEFAULT_API,
    MANIFEST_FIELDS,
    RASTER_EXTENSIONS,
    ManifestRow,
    RetryPolicy,
    describe_error,
    get_with_retries,
    list_category,
    make_session,
    user_agent,
)
from unetsr.errors import DownloadError, UnetsrError

__all__ = [
    "DEFAULT_API",
    "DEFAULT_CATEGORY",
    "FileResult",
    "ManifestRow",
    "RetryPolicy",
    "Summary",
    "check_image",
    "default_categories",
    "download_all",
    "file_name",
    "list_category",
    "main",
    "read_manifest",
    "write_manifest",
]

DEFAULT_CATEGORY = "Category:Valued images"
CATEGORIES_FILE = Path(__file__).resolve().parents[1] / "data" / "valued" / "categories.txt"
DEFAULT_OUT = Path("data/valued/images")
DEFAULT_MANIFEST = Path("data/valued/manifest.csv")
DEFAULT_CONTACT = "no contact given"
DEFAULT_RETRY = RetryPolicy()
MAX_WORKERS = 4
PART_SUFFIX = ".part"
CHUNK = 1 << 16
# Seconds a Ctrl-C waits for downloads in flight to notice it before their temp files are removed anyway.
STOP_GRACE = 2.0
# Tolerated difference, in pixels, between a rendition's advertised and actual size (rounding of the short side).
SIZE_TOLERANCE = 1
# How a connection lost in the middle of a body shows up in requests.
BODY_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def default_categories() -> list[str]:
    """The categories in data/valued/categories.txt (blank lines and # comments ignored), else DEFAULT_CATEGORY."""
    try:
        lines = CATEGORIES_FILE.read_text(encoding="utf-8").splitlines()
    except OSError:
        return [DEFAULT_CATEGORY]
    categories = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return categories or [DEFAULT_CATEGORY]


def file_name(title: str, mime: str) -> str:
    """A safe, stable and unique file name for a Commons title: ASCII stem, short hash of the title, MIME extension.

    The stem keeps only letters, digits, '_' and '-', so no title can climb out of the folder or hide as a
    dotfile; the hash keeps titles apart that sanitise to the same stem.
    """
    name = title.split(":", 1)[1] if title.lower().startswith("file:") else title
    stem = name.rsplit(".", 1)[0] if "." in name else name
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_stem).strip("_-")[:80] or "file"
    digest = hashlib.sha1(title.encode("utf-8")).hexdigest()[:10]
    return f"{safe}-{digest}{RASTER_EXTENSIONS[mime]}"


def _temp_path(path: Path) -> Path:
    """A fresh hidden name beside `path`, so the final os.replace stays on one file system."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{PART_SUFFIX}")


def write_manifest(rows: Iterable[ManifestRow], path: Path) -> None:
    """Write the manifest CSV atomically: a temp file in the same folder, flushed, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "x", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerows(asdict(row) for row in rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_manifest(path: Path) -> list[ManifestRow]:
    """Rows of a manifest written by `write_manifest`; DownloadError if it is unreadable or of another layout."""
    int_fields = {f.name for f in fields(ManifestRow) if f.type == "int"}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = set(MANIFEST_FIELDS) - set(reader.fieldnames or ())
            if missing:
                raise DownloadError(f"{path} lacks columns {sorted(missing)}; rebuild it with --refresh")
            rows = []
            for record in reader:
                values = {name: record[name] or "" for name in MANIFEST_FIELDS}
                try:
                    row = ManifestRow(**{k: int(v) if k in int_fields else v for k, v in values.items()})
                except ValueError:
                    raise DownloadError(f"{path} line {reader.line_num}: a number column is not a number") from None
                if row.mime not in RASTER_EXTENSIONS or row.download_mime not in RASTER_EXTENSIONS:
                    raise DownloadError(f"{path} line {reader.line_num}: {row.title!r} is not a raster image")
                rows.append(row)
            return rows
    except OSError as exc:
        raise DownloadError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DownloadError(f"{path} is not a readable CSV manifest: {exc}") from None


def check_image(path: Path, expected: tuple[int, int] | None = None, *, full: bool = True) -> None:
    """Raise DownloadError unless `path` is an image (of `expected` size, either orientation) that Pillow decodes.

    `full=False` stops after verify(), a cheap check for files already verified once.
    """
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as image:
            width, height = image.size
            if limit and width * height > limit:
                raise DownloadError(f"{width}x{height} pixels is over the decompression-bomb limit of {limit}")
            image.verify()
        if full:
            with Image.open(path) as image:
                image.load()
    except DownloadError:
        raise
    except Image.UnidentifiedImageError:
        raise DownloadError("the bytes are not an image") from None
    except Exception as exc:  # Pillow reports damaged data with many exception types
        raise DownloadError(f"damaged image ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if expected is not None and not (_near((width, height), expected) or _near((height, width), expected)):
        raise DownloadError(f"image is {width}x{height}, expected {expected[0]}x{expected[1]}")


def _near(size: tuple[int, int], expected: tuple[int, int]) -> bool:
    """True if two (width, height) pairs differ by at most SIZE_TOLERANCE pixels on each side."""
    return all(abs(a - b) <= SIZE_TOLERANCE for a, b in zip(size, expected))


def _sha1_of(path: Path) -> str:
    """Hex SHA-1 of a file, read in chunks."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileResult:
    """What became of one manifest row: downloaded, skipped (already there and verified) or failed, and why."""

    title: str
    status: Literal["downloaded", "skipped", "failed"]
    path: Path | None = None
    nbytes: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Summary:
    """Totals of a run, for the closing report and the exit status."""

    downloaded: int = 0
    skipped: int = 0
    failed: tuple[FileResult, ...] = ()
    nbytes: int = 0
    non_raster: int | None = None

    @classmethod
    def of(cls, results: Iterable[FileResult]) -> "Summary":
        """Add up per-file results."""
        results = list(results)
        count = Counter(r.status for r in results)
        failed = tuple(r for r in results if r.status == "failed")
        return cls(count["downloaded"], count["skipped"], failed, sum(r.nbytes for r in results))

    def report(self) -> str:
        """One line of totals."""
        text = (
            f"downloaded {self.downloaded}, skipped {self.skipped} already present, failed {len(self.failed)}, "
            f"{self.nbytes / 1e6:.1f} MB"
        )
        if self.non_raster is not None:
            text += f", non-raster files skipped while listing {self.non_raster}"
        return text


class _Cancelled(Exception):
    """Raised inside a worker once the run is interrupted."""


class _Downloader:
    """The state the download threads share: options, the stop flag, and the temp files still on disk."""

    def __init__(self, out_dir: Path, original: bool, retry: RetryPolicy) -> None:
        self.out_dir = out_dir
        self.original = original
        self.retry = retry
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.temps: set[Path] = set()

    def work(self, agent: str, todo: queue.SimpleQueue, done: queue.SimpleQueue) -> None:
        """Thread body: take rows until none are left or the run stops, putting one FileResult per row."""
        with make_session(agent) as session:
            while not self.stop.is_set():
                try:
                    row = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put(self.fetch(session, row))
                except _Cancelled:
                    return
                except Exception as exc:  # an unforeseen error fails this one file, not the whole run
                    done.put(FileResult(row.title, "failed", reason=f"unexpected error: {exc!r}"))

    def fetch(self, session: requests.Session, row: ManifestRow) -> FileResult:
        """Skip, download or fail one row; the final path only ever receives a verified file."""
        url = row.original_url if self.original else row.download_url
        whole = url == row.original_url
        path = self.out_dir / file_name(row.title, row.mime if self.original else row.download_mime)
        if path.exists():
            if self._is_complete(path, row, whole):
                return FileResult(row.title, "skipped", path)
            path.unlink(missing_ok=True)
        pixels_limit = Image.MAX_IMAGE_PIXELS
        if whole and pixels_limit and row.width * row.height > pixels_limit:
            reason = f"{row.width}x{row.height} pixels is over the decompression-bomb limit of {pixels_limit}"
            return FileResult(row.title, "failed", reason=reason)
        try:
            nbytes = self._download(session, row, url, whole, path)
        except DownloadError as exc:
            return FileResult(row.title, "failed", reason=str(exc))
        except OSError as exc:
            return FileResult(row.title, "failed", reason=f"cannot write {path}: {exc.strerror or exc}")
        return FileResult(row.title, "downloaded", path, nbytes)

    def _is_complete(self, path: Path, row: ManifestRow, whole: bool) -> bool:
        """True if `path` already holds this row's file: originals by SHA-1, renditions by size and a decode check."""
        try:
            if whole:
                return _sha1_of(path) == row.sha1
            check_image(path, (row.download_width, row.download_height), full=False)
            return True
        except (DownloadError, OSError):
            return False

    def _download(self, session: requests.Session, row: ManifestRow, url: str, whole: bool, path: Path) -> int:
        """Fetch `url` into a temp file, verify it, rename it to `path`; returns the byte count.

        A connection lost mid-body is retried like one lost before the answer.
        """
        for attempt in range(self.retry.retries + 1):
            tmp, out = self._new_temp(path)
            try:
                with out:
                    response = get_with_retries(session, url, stream=True, retry=self.retry, sleep=self._sleep)
                    try:
                        nbytes, digest = self._save(response, out)
                    except BODY_ERRORS as exc:
                        if attempt == self.retry.retries:
                            reason = describe_error(exc)
                            raise DownloadError(f"connection lost while downloading {url}: {reason}") from None
                        self._sleep(self.retry.delay(attempt))
                        continue
                if whole and digest != row.sha1:
                    raise DownloadError(f"SHA-1 mismatch (got {digest}, expected {row.sha1}); file deleted")
                check_image(tmp, None if whole else (row.download_width, row.download_height))
                self._publish(tmp, path)
                return nbytes
            finally:
                self._discard(tmp)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _save(self, response: requests.Response, out: BinaryIO) -> tuple[int, str]:
        """Stream the body into `out`; returns (bytes written, hex SHA-1)."""
        digest = hashlib.sha1()
        nbytes = 0
        with response:
            for chunk in response.iter_content(CHUNK):
                if self.stop.is_set():
                    raise _Cancelled
                out.write(chunk)
                digest.update(chunk)
                nbytes += len(chunk)
        return nbytes, digest.hexdigest()

    def _sleep(self, seconds: float) -> None:
        """A backoff wait that ends early, with _Cancelled, when the run stops."""
        if self.stop.wait(seconds):
            raise _Cancelled

    def _new_temp(self, path: Path) -> tuple[Path, BinaryIO]:
        """Create and open a temp file beside `path`, unless the run has stopped (so cleanup cannot miss one)."""
        with self.lock:
            if self.stop.is_set():
                raise _Cancelled
            tmp = _temp_path(path)
            out = open(tmp, "xb")
            self.temps.add(tmp)
            return tmp, out

    def _publish(self, tmp: Path, path: Path) -> None:
        """Give a verified temp file its final name, unless the run has stopped."""
        with self.lock:
            if self.stop.is_set():
                raise _Cancelled
            os.replace(tmp, path)
            self.temps.discard(tmp)

    def _discard(self, tmp: Path) -> None:
        """Remove a temp file that did not become a final file."""
        with self.lock:
            tmp.unlink(missing_ok=True)
            self.temps.discard(tmp)

    def cancel(self, threads: list[threading.Thread]) -> None:
        """Stop the workers, give them a moment, then delete every temp file still on disk."""
        self.stop.set()
        deadline = time.monotonic() + STOP_GRACE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            for tmp in self.temps:
                tmp.unlink(missing_ok=True)
            self.temps.clear()


def remove_partial_files(out_dir: Path) -> int:
    """Delete temp files a killed earlier run may have left in `out_dir`; returns how many."""
    stale = list(out_dir.glob(f".*{PART_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def download_all(
    rows: Iterable[ManifestRow],
    out_dir: Path,
    *,
    agent: str,
    original: bool = False,
    workers: int = 2,
    retry: RetryPolicy = DEFAULT_RETRY,
    progress: bool | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> Summary:
    """Download every row into `out_dir` with a few threads (at most MAX_WORKERS); returns the totals.

    `agent` is the User-Agent; `progress` None shows a bar only on a terminal; `on_result` is called
    in the calling thread after each file. On KeyboardInterrupt no temp file is left behind.
    """
    rows = list(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_partial_files(out_dir)
    downloader = _Downloader(out_dir, original, retry)
    todo: queue.SimpleQueue[ManifestRow] = queue.SimpleQueue()
    for row in rows:
        todo.put(row)
    done: queue.SimpleQueue[FileResult] = queue.SimpleQueue()
    count = max(1, min(workers, MAX_WORKERS, len(rows)))
    threads = [
        threading.Thread(target=downloader.work, args=(agent, todo, done), name=f"unetsr-download-{i}", daemon=True)
        for i in range(count)
    ]
    results: list[FileResult] = []
    nbytes = failed = 0
    disable = None if progress is None else not progress
    with tqdm(total=len(rows), unit="file", desc="downloading", disable=disable) as bar:
        try:
            for thread in threads:
                thread.start()
            while len(results) < len(rows):
                try:
                    result = done.get(timeout=0.2)
                except queue.Empty:
                    if not any(thread.is_alive() for thread in threads) and done.empty():
                        raise RuntimeError("download threads stopped early") from None
                    continue
                results.append(result)
                nbytes += result.nbytes
                failed += result.status == "failed"
                bar.update()
                bar.set_postfix_str(f"{nbytes / 1e6:.1f} MB, {failed} failed")
                if on_result is not None:
                    on_result(result)
        except BaseException:
            downloader.cancel(threads)
            raise
    return Summary.of(results)


def _category_title(name: str) -> str:
    """'Valued images' -> 'Category:Valued images'; names that already carry the prefix are kept."""
    name = name.strip()
    return name if name.lower().startswith("category:") else f"Category:{name}"


def build_manifest(
    api: str, categories: list[str], *, agent: str, max_side: int, limit: int | None, retry: RetryPolicy
) -> tuple[list[ManifestRow], int]:
    """List the raster files of all `categories` (a file in several is kept once); returns (rows, non-raster count)."""
    rows: dict[str, ManifestRow] = {}
    skipped: Counter[str] = Counter()
    with make_session(agent) as session, tqdm(desc="listing", unit="file", disable=None) as bar:
        for category in map(_category_title, categories):
            remaining = None if limit is None else limit - len(rows)
            if remaining == 0:
                break
            skipped_before = sum(skipped.values())
            found = 0
            for row in list_category(
                session, api, category, max_side=max_side, limit=remaining, skipped=skipped, retry=retry
            ):
                found += 1
                if row.title not in rows:
                    rows[row.title] = row
                    bar.update()
            if found == 0 and sum(skipped.values()) == skipped_before:
                print(f"warning: {category} has no files; check its name", file=sys.stderr)
    return list(rows.values()), sum(skipped.values())


def check_renditions(rows: Iterable[ManifestRow], max_side: int, manifest: Path) -> None:
    """Raise DownloadError if a reused manifest was listed for another --max-side than the one asked for now."""
    for row in rows:
        wanted = min(max_side, max(row.width, row.height))
        if abs(max(row.download_width, row.download_height) - wanted) > SIZE_TOLERANCE:
            raise DownloadError(f"{manifest} was listed for another --max-side than {max_side}; add --refresh")


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line options; data/valued/README.md documents each with examples."""
    p = argparse.ArgumentParser(
        prog="python -m unetsr.download",
        description="Download Wikimedia Commons photographs (default: Valued images) with a licence manifest.",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the images (default: %(default)s)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="manifest CSV (default: %(default)s)")
    p.add_argument("--category", action="append", help="category to list, repeatable (default: categories.txt)")
    p.add_argument("--limit", type=_positive_int, help="at most this many files")
    p.add_argument("--max-side", type=_positive_int, default=2048, help="longest side to fetch (default: %(default)s)")
    p.add_argument("--original", action="store_true", help="download originals and check their SHA-1")
    p.add_argument(
        "--workers", type=_positive_int, default=2, help=f"parallel downloads, at most {MAX_WORKERS} (default: 2)"
    )
    p.add_argument("--retries", type=int, default=None, help=f"retries per request (default: {DEFAULT_RETRY.retries})")
    p.add_argument("--refresh", action="store_true", help="list the categories again even if the manifest exists")
    p.add_argument("--dry-run", action="store_true", help="list and write the manifest, download nothing")
    p.add_argument("--api", default=DEFAULT_API, help="MediaWiki api.php URL (default: %(default)s)")
    p.add_argument("--contact", help="e-mail or URL for the User-Agent (default: $UNETSR_CONTACT)")
    return p


def _run(args: argparse.Namespace) -> int:
    """The CLI's work, raising UnetsrError for anything the user must fix."""
    contact = (args.contact or os.environ.get("UNETSR_CONTACT", "")).strip()
    if not contact:
        print("warning: no --contact or UNETSR_CONTACT; Wikimedia asks for one in the User-Agent", file=sys.stderr)
    agent = user_agent(contact or DEFAULT_CONTACT)
    retries = DEFAULT_RETRY.retries if args.retries is None else max(0, args.retries)
    retry = replace(DEFAULT_RETRY, retries=retries)
    if args.workers > MAX_WORKERS:
        print(f"note: --workers capped at {MAX_WORKERS} to be gentle on the servers", file=sys.stderr)

    non_raster: int | None = None
    if args.manifest.exists() and not args.refresh:
        rows = read_manifest(args.manifest)
        print(f"using {args.manifest} ({len(rows)} files); --refresh lists the categories again", file=sys.stderr)
    else:
        rows, non_raster = build_manifest(
            args.api,
            args.category or default_categories(),
            agent=agent,
            max_side=args.max_side,
            limit=args.limit,
            retry=retry,
        )
        write_manifest(rows, args.manifest)
        print(f"wrote {args.manifest}: {len(rows)} raster files, {non_raster} non-raster skipped", file=sys.stderr)
    if args.limit is not None:
        rows = rows[: args.limit]
    if args.dry_run:
        print(f"dry run: {len(rows)} files listed in {args.manifest}, nothing downloaded")
        return 0
    if not args.original:
        check_renditions(rows, args.max_side, args.manifest)

    summary = download_all(
        rows, args.out, agent=agent, original=args.original, workers=min(args.workers, MAX_WORKERS), retry=retry
    )
    summary = replace(summary, non_raster=non_raster)
    for failure in summary.failed:
        print(f"failed: {failure.title}: {failure.reason}", file=sys.stderr)
    print(summary.report())
    return 1 if summary.failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m unetsr.download`; returns 0, 1 (an error or failed files) or 130 (interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UnetsrError as exc:
        print(f"unetsr.download: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("unetsr.download: interrupted; no partial files left, run again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
