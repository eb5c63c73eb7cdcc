"""Download the files of a manifest with a few threads: verified before they are kept, resumable, interruptible.

Each file goes to a hidden temporary file beside its final name (`fileio.temporary_path`), capped at
its listed size plus a margin and within a deadline, then is checked (decoded by Pillow at the listed
size, or the original's SHA-1) and only then renamed into place. A rerun skips files already there;
Ctrl-C removes every temporary file.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

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
from unetsr.commons.image_check import check_image, over_pixel_limit
from unetsr.commons.manifest import ManifestRow, file_name
from unetsr.core.errors import DownloadError
from unetsr.core.fileio import file_digest, pending, temporary_path

MAX_WORKERS = 4
# Seconds a Ctrl-C waits for downloads in flight to notice it before their temp files are removed anyway.
STOP_GRACE = 2.0
# Temporary files of this module (fileio's names) and of older versions (.part), removed before a run.
_TEMP_NAME = re.compile(r"\..+(\.[0-9a-f]{8}\.tmp|\.part)")


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


def byte_limit(row: ManifestRow, whole: bool, limits: Limits = DEFAULT_LIMITS) -> int:
    """The most bytes a download of `row` may bring: its listed size (for a rendition, at most 4 bytes a
    pixel if that is more) plus the margin."""
    listed = row.size if whole else max(row.size, 4 * row.download_width * row.download_height)
    return listed + limits.file_margin


class _Cancelled(Exception):
    """Raised inside a worker once the run is interrupted."""


class _Downloader:
    """The state the download threads share: options, the stop flag, and the temp files still on disk."""

    def __init__(self, out_dir: Path, original: bool, retry: RetryPolicy, limits: Limits) -> None:
        self.out_dir = out_dir
        self.original = original
        self.retry = retry
        self.limits = limits
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
                    done.put(self.fetch_row(session, row))
                except _Cancelled:
                    return
                except Exception as exc:  # an unforeseen error fails this one file, not the whole run
                    done.put(FileResult(row.title, "failed", reason=f"unexpected error: {exc!r}"))

    def fetch_row(self, session: requests.Session, row: ManifestRow) -> FileResult:
        """Skip, download or fail one row; the final path only ever receives a verified file."""
        url = row.original_url if self.original else row.download_url
        whole = url == row.original_url
        try:
            path = self.out_dir / file_name(row.title, row.mime if self.original else row.download_mime)
        except DownloadError as exc:
            return FileResult(row.title, "failed", reason=str(exc))
        if path.exists():
            if self._is_complete(path, row, whole):
                return FileResult(row.title, "skipped", path)
            path.unlink(missing_ok=True)
        too_large = over_pixel_limit(row.width, row.height) if whole else None
        if too_large:
            return FileResult(row.title, "failed", reason=too_large)
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
                return file_digest(path, "sha1") == row.sha1
            check_image(path, (row.download_width, row.download_height), full=False)
            return True
        except (DownloadError, OSError):
            return False

    def _download(self, session: requests.Session, row: ManifestRow, url: str, whole: bool, path: Path) -> int:
        """Fetch `url` into a temp file, verify it, rename it to `path`; returns the byte count."""
        limit = byte_limit(row, whole, self.limits)
        with self._temp(path) as (tmp, out):

            def save(response: requests.Response, chunks: Iterator[bytes]) -> int:
                out.seek(0)
                out.truncate()  # a retry after a lost connection starts the file again
                nbytes = 0
                for chunk in chunks:
                    if self.stop.is_set():
                        raise _Cancelled
                    out.write(chunk)
                    nbytes += len(chunk)
                return nbytes

            nbytes = fetch(session, url, save, limit=limit, seconds=self.limits.seconds,
                           min_rate=self.limits.min_rate, retry=self.retry, sleep=self._sleep)
            out.flush()
            os.fsync(out.fileno())
            if whole:
                digest = file_digest(tmp, "sha1")
                if digest != row.sha1:
                    raise DownloadError(f"SHA-1 mismatch (got {digest}, expected {row.sha1}); file deleted")
            check_image(tmp, None if whole else (row.download_width, row.download_height))
            self._publish(tmp, path)
            return nbytes

    def _sleep(self, seconds: float) -> None:
        """A backoff wait that ends early, with _Cancelled, when the run stops."""
        if self.stop.wait(seconds):
            raise _Cancelled

    @contextmanager
    def _temp(self, path: Path) -> Iterator[tuple[Path, BinaryIO]]:
        """A new temp file beside `path`, open for writing, removed on the way out unless it was published.

        None is made once the run has stopped, so the cleanup in `cancel` cannot miss one.
        """
        with self.lock:
            if self.stop.is_set():
                raise _Cancelled
            tmp = temporary_path(path)
            out = open(tmp, "xb")
            self.temps.add(tmp)
        try:
            with pending(tmp), out:
                yield tmp, out
        finally:
            with self.lock:
                tmp.unlink(missing_ok=True)
                self.temps.discard(tmp)

    def _publish(self, tmp: Path, path: Path) -> None:
        """Give a verified temp file its final name, unless the run has stopped."""
        with self.lock:
            if self.stop.is_set():
                raise _Cancelled
            os.replace(tmp, path)
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


def prepare_folder(out_dir: Path) -> None:
    """Create `out_dir` if needed; DownloadError (one line) unless it is a folder we can write in."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DownloadError(f"{out_dir} is a file, not a folder") from None
    except OSError as exc:
        raise DownloadError(f"cannot create the folder {out_dir}: {exc.strerror or exc}") from None
    try:
        with pending(temporary_path(out_dir / "write-test")) as probe:  # (pending also arms SIGTERM cleanup)
            probe.open("xb").close()  # the only sure test: modes, read-only mounts and root all answer it
            probe.unlink()
    except OSError as exc:
        raise DownloadError(f"cannot write in {out_dir}: {exc.strerror or exc}") from None


def remove_partial_files(out_dir: Path) -> int:
    """Delete temp files a killed earlier run may have left in `out_dir`; returns how many."""
    stale = [path for path in out_dir.glob(".*") if _TEMP_NAME.fullmatch(path.name)]
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
    limits: Limits = DEFAULT_LIMITS,
    progress: bool | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> Summary:
    """Download every row into `out_dir` with a few threads (at most MAX_WORKERS); returns the totals.

    `agent` is the User-Agent; `progress` None shows a bar only on a terminal; `on_result` is called
    in the calling thread after each file. On KeyboardInterrupt no temp file is left behind.
    """
    rows = list(rows)
    prepare_folder(out_dir)
    remove_partial_files(out_dir)
    downloader = _Downloader(out_dir, original, retry, limits)
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
