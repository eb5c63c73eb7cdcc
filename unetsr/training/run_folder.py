"""A training run's folder: one run at a time (a lock), no leftovers of a killed save, and a log that a
resumed run continues instead of repeating."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, TextIO

from unetsr.core.errors import UnetsrError

LOCK_NAME = ".lock"
LOG_NAME = "log.jsonl"


class RunFolder:
    """Holds OUT's lock while a run writes there; `log` appends one JSON line per record."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._lock: TextIO | None = None
        self._log: TextIO | None = None

    def open(self, step: int) -> "RunFolder":
        """Take the lock (refusing a second run into OUT), remove temp files a killed save left, and cut the
        log back to `step`, the step the run starts from, so that no step is logged twice."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.out / LOCK_NAME, "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise UnetsrError(f"{self.out} is in use by another training run; wait for it, or choose another --out") \
                from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()
        for leftover in self.out.glob(".*.pt.*.tmp"):  # fileio's temporary names: a save that was killed
            leftover.unlink(missing_ok=True)
        trim_log(self.out / LOG_NAME, step)
        self._log = open(self.out / LOG_NAME, "a")
        return self

    def log(self, record: dict[str, Any]) -> None:
        """Append one record and flush, so the log is current if the run is killed."""
        assert self._log is not None
        self._log.write(json.dumps(record) + "\n")
        self._log.flush()

    def close(self) -> None:
        """Close the log and release the lock."""
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trim_log(path: Path, step: int) -> None:
    """Drop the log's records after `step` (those of steps a killed run did after its last checkpoint)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and _step_of(line) <= step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))


def _step_of(line: str) -> float:
    """A log line's step; a damaged line (a write cut short) counts as past every step, so it is dropped."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")
