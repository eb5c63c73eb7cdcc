"""The web page's job queue: uploaded photos wait in line, a few worker threads upscale them through the
same `upscale_file` the command line uses, and every change (queued, tiles done, finished, failed)
is reported as a plain dict to a listener, which the server pushes to the browser.

Files live only in the queue's own temporary folder, named by random job ids: nothing the browser
sends is ever used as a file name. No HTTP here; `serve.py` is the web front over this module.
"""

from __future__ import annotations

import collections
import os
import re
import sys
import threading
import time
import traceback
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from unetsr.batch.one_file import check_size, header_size, upscale_file
from unetsr.batch.plan import Job, Source, output_suffix
from unetsr.core.errors import (
    UnetsrError,
    debug_requested,
    first_line,
    one_line,
)
from unetsr.imaging.photos import read_image, write_image
from unetsr.web.models import Models

MAX_WAITING = 100  # photos queued at once; one more is refused ("the queue is full") rather than piling up
MAX_KEPT = 100  # finished jobs kept (their files too); beyond this the oldest finished ones are removed
PROGRESS_EVERY_S = 0.1  # at most this often a running job reports its tiles (and always on the last one)
DEFAULT_JOB_TIMEOUT_S = 3600.0  # one photo's upscaling is stopped after this (at its next tile): --job-timeout


class Cancelled(Exception):
    """Raised inside a running job whose photo was removed from the page, to stop it at the next tile."""


class QueueFull(UnetsrError):
    """More photos are waiting than the queue takes, or the server is stopping."""


class JobTimeout(UnetsrError):
    """A photo took longer than the queue's time limit for one job; raised at its next tile."""


@dataclass(frozen=True)
class Settings:
    """What the page asked for one photo: the factor, the model's name, the output format and quality, and
    whether to run the x8 self-ensemble (8 times the time, for a slightly better result)."""

    scale: float
    model: str = "auto"
    format: str = "png"
    quality: int = 95
    ensemble: bool = False


@dataclass
class WebJob:
    """One uploaded photo: its display name (never a file name), its files in the work folder, its state."""

    id: str
    client: str
    name: str
    settings: Settings
    folder: Path
    state: str = "queued"
    position: int = 0  # photos ahead of it in the queue
    done: int = 0
    total: int = 0
    error: str | None = None
    notes: tuple[str, ...] = ()
    model_used: str | None = None  # which model ran and why, e.g. "shipped x2_jpeg model: JPEG q≈75"
    input_size: tuple[int, int] | None = None  # (width, height)
    output_size: tuple[int, int] | None = None
    seconds: float | None = None
    has_before: bool = False
    seq: int = 0  # bumped at every change, so the page can drop stale updates
    cancelled: bool = field(default=False, repr=False)
    deadline: float = field(default=float("inf"), repr=False)  # time.monotonic() past which it is stopped
    _last_report: float = field(default=0.0, repr=False)

    @property
    def input(self) -> Path:
        return self.folder / f"{self.id}.input"

    @property
    def before(self) -> Path:
        return self.folder / f"{self.id}.before.png"

    @property
    def output(self) -> Path:
        return self.folder / f"{self.id}.result{Path(output_suffix(1, self.settings.format)).suffix}"

    @property
    def download_name(self) -> str:
        """The name offered for the result: the original's stem, made safe, plus `_x2.png` and the like."""
        return safe_stem(self.name) + output_suffix(self.settings.scale, self.settings.format)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def files(self) -> tuple[Path, ...]:
        return self.input, self.before, self.output

    def snapshot(self) -> dict[str, object]:
        """The job as JSON-ready values, for the page."""
        done = self.state == "done"
        return {
            "id": self.id, "name": self.name, "seq": self.seq, "state": self.state, "position": self.position,
            "done": self.done, "total": self.total, "error": self.error, "notes": list(self.notes),
            "scale": self.settings.scale, "model": self.settings.model, "model_used": self.model_used,
            "format": self.settings.format, "ensemble": self.settings.ensemble,
            "input_size": self.input_size, "output_size": self.output_size, "seconds": self.seconds,
            "bytes": self.output.stat().st_size if done and self.output.exists() else None,
            "before": self.has_before, "download": self.download_name if done else None,
        }


def display_name(name: str) -> str:
    """A browser-sent file name as shown on the page: its last path component, on one line, at most 200
    characters; 'photo' when nothing is left."""
    base = re.split(r"[\\/]", name)[-1].strip()
    return one_line(base)[:200] or "photo"


def safe_stem(name: str) -> str:
    """The stem of a file name, kept to letters, digits, '-', '_' and '.' (others become '_'): for the name
    offered in Content-Disposition, never for a file on disk."""
    stem = unicodedata.normalize("NFC", display_name(name))
    stem = stem.rsplit(".", 1)[0] if "." in stem.lstrip(".") else stem
    stem = re.sub(r"[^\w.-]+", "_", stem, flags=re.UNICODE).strip("._")
    return stem[:100] or "photo"


class JobQueue:
    """Photos wait in line and `workers` threads upscale them, one photo each at a time, each for at most
    `job_timeout` seconds (checked after every tile).

    `listener(snapshot)` is called, from any thread, whenever a job changes.
    """

    def __init__(self, models: Models, folder: Path, *, workers: int = 1, max_pixels: int,
                 job_timeout: float = DEFAULT_JOB_TIMEOUT_S,
                 listener: Callable[[dict[str, object]], None] = lambda snapshot: None) -> None:
        self.models, self.folder, self.max_pixels, self.listener = models, Path(folder), max_pixels, listener
        self.job_timeout = job_timeout
        self._jobs: dict[str, WebJob] = {}
        self._waiting: collections.deque[WebJob] = collections.deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._report_lock = threading.Lock()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"unetsr-job-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def new_job(self, client: str, name: str, settings: Settings) -> WebJob:
        """A job with a fresh random id and its files' places in the work folder; not queued yet."""
        return WebJob(uuid.uuid4().hex, client, display_name(name), settings, self.folder)

    def submit(self, job: WebJob) -> None:
        """Queue a job whose input file is written; QueueFull (and its files removed) when too many wait."""
        with self._lock:
            if self._closed or len(self._waiting) >= MAX_WAITING:
                self._remove_files(job)
                raise QueueFull("the server is stopping" if self._closed else
                                f"the queue is full ({MAX_WAITING} photos waiting); try again when some are done")
            job.position = len(self._waiting)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._forget_old()
            self._ready.notify()
        self._report(job)

    def get(self, job_id: str) -> WebJob | None:
        """The job with this id, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def jobs_of(self, client: str) -> list[WebJob]:
        """A page's jobs, oldest first."""
        with self._lock:
            return [job for job in self._jobs.values() if job.client == client]

    def remove(self, job_id: str) -> bool:
        """Cancel a job (a running one stops at its next tile) and delete its files; False if unknown."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return False
            job.cancelled = True
            moved = []
            if job in self._waiting:
                self._waiting.remove(job)
                moved = self._renumber()
            if job.state != "running":  # a running job's worker removes its files when it stops
                self._remove_files(job)
        for other in moved:
            self._report(other)
        return True

    def cancel_all(self) -> None:
        """Take no more photos and cancel every job (a running one stops at its next tile); returns at once."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancelled = True
            self._waiting.clear()
            self._ready.notify_all()

    def close(self, timeout: float = 5.0) -> bool:
        """`cancel_all`, wait up to `timeout` seconds for the workers, and delete every job's files. True when
        every worker has stopped; False when one is still inside the model, which Python cannot interrupt."""
        self.cancel_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for job in self._jobs.values():
                self._remove_files(job)
        return not any(thread.is_alive() for thread in self._threads)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                job = self._waiting.popleft()
                job.state, job.position = "running", 0
                moved = self._renumber()
            self._report(job)
            for other in moved:
                self._report(other)
            self._run(job)

    def _run(self, job: WebJob) -> None:
        """Read, preview, upscale and write one photo; whatever goes wrong becomes the job's one-line error."""
        start = time.perf_counter()
        job.deadline = time.monotonic() + self.job_timeout
        try:
            upscaler, job.model_used = self.models.get(job.settings.model, job.input, job.settings.scale,
                                                          job.settings.ensemble)
            if (size := header_size(job.input)) is not None:  # refused from the header: no preview is decoded
                check_size(upscaler, job.input, *size, job.settings.scale, self.max_pixels)
            picture = read_image(job.input, max_pixels=self.max_pixels)
            h, w = picture.rgb.shape[:2]
            job.input_size = (w, h)
            job.total = upscaler.tile_count(h, w, job.settings.scale) * (1 + (picture.alpha is not None))
            self._check(job)
            write_image(job.before, picture, format="png")
            job.has_before = True
            self._report(job)
            del picture
            self._check(job)
            with upscaler.reporting(lambda: self._tick(job)):
                _, size, notes = upscale_file(
                    upscaler, Job(Source(job.input, Path(job.input.name)), job.output), job.settings.scale,
                    max_pixels=self.max_pixels, fmt=job.settings.format, quality=job.settings.quality,
                    overwrite=False, progress=False)
            job.output_size, job.notes = size, tuple(self._clean(job, note) for note in notes)
            job.state, job.done = "done", job.total
        except Cancelled:
            job.state = "cancelled"
        except Exception as exc:  # one line for the page; the traceback too, on the server, if unexpected
            job.state, job.error = ("cancelled", None) if job.cancelled else ("failed", self._reason(job, exc))
        finally:
            job.seconds = round(time.perf_counter() - start, 3)
            job.input.unlink(missing_ok=True)  # not needed any more: the before image is what the page shows
            if job.cancelled:
                self._remove_files(job)
        self._report(job)

    def _check(self, job: WebJob) -> None:
        """Stop a job whose photo was removed (Cancelled) or that is over its time limit (JobTimeout)."""
        if job.cancelled:
            raise Cancelled
        if time.monotonic() > job.deadline:
            limit = f"{self.job_timeout / 60:g} min" if self.job_timeout >= 60 else f"{self.job_timeout:g} s"
            raise JobTimeout(f"{job.name}: stopped after the time limit for one photo ({limit}, --job-timeout)")

    def _tick(self, job: WebJob) -> None:
        self._check(job)
        job.done = min(job.done + 1, job.total)
        now = time.monotonic()
        if now - job._last_report >= PROGRESS_EVERY_S or job.done == job.total:
            job._last_report = now
            self._report(job)

    def _reason(self, job: WebJob, exc: Exception) -> str:
        """The one line the page shows: the library's own message, with our file names swapped for the
        photo's; unexpected errors are named, in one line on the server's stderr too, with their traceback
        when UNETSR_DEBUG asks for it (as `infer --debug`)."""
        if isinstance(exc, (UnetsrError, OSError, ValueError)):
            return self._clean(job, str(exc) if isinstance(exc, UnetsrError) else first_line(exc))
        if debug_requested():
            traceback.print_exception(exc, file=sys.stderr)
        else:
            print(f"unetsr.serve: internal error on {job.name!r}: {type(exc).__name__}: {one_line(first_line(exc))} "
                  "(UNETSR_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
        return self._clean(job, f"internal error: {type(exc).__name__}: {first_line(exc)}")

    def _clean(self, job: WebJob, text: str) -> str:
        text = text.replace(str(job.input), job.name).replace(str(job.output), job.download_name)
        for model in self.models.files():  # a damaged model file is named, never its folder on this server
            text = text.replace(str(model), model.name)
        return one_line(text.replace(str(self.folder) + os.sep, "").replace(str(self.folder), "the work folder"))

    def _report(self, job: WebJob) -> None:
        with self._report_lock:  # seq and snapshot together; the listener may be slow, so outside the lock
            job.seq += 1
            snapshot = {"client": job.client, **job.snapshot()}
        self.listener(snapshot)

    def _renumber(self) -> list[WebJob]:
        """Give each waiting job its place in line (call with the lock held); returns those that moved."""
        moved = []
        for place, job in enumerate(self._waiting):
            if job.position != place:
                job.position = place
                moved.append(job)
        return moved

    def _forget_old(self) -> None:
        """Remove the oldest finished jobs beyond MAX_KEPT (call with the lock held)."""
        finished = [job for job in self._jobs.values() if job.finished]
        for job in finished[:max(0, len(finished) - MAX_KEPT)]:
            del self._jobs[job.id]
            self._remove_files(job)

    @staticmethod
    def _remove_files(job: WebJob) -> None:
        for path in job.files():
            path.unlink(missing_ok=True)
