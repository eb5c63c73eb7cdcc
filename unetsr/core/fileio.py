"""Files written safely: the one atomic-write helper and the one file hash of the project.

Every output (images, checkpoints, manifests, downloads) goes to a hidden temporary file beside its
destination, is flushed to disk, and is renamed into place: readers never see half a file, an existing
file is untouched if anything fails, and the temporary file is removed on any error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_PENDING: set[Path] = set()
_LOCK = threading.Lock()
_previous_sigterm: object = None


def temporary_path(path: str | Path) -> Path:
    """A fresh hidden name beside `path`, so the final rename stays on one file system."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


@contextmanager
def pending(temporary: Path) -> Iterator[Path]:
    """Registers `temporary` for removal if the process is ended by SIGTERM while it exists."""
    _install_sigterm_handler()
    with _LOCK:
        _PENDING.add(temporary)
    try:
        yield temporary
    finally:
        with _LOCK:
            _PENDING.discard(temporary)


def atomic_write(path: str | Path, save: Callable[[BinaryIO], None]) -> Path:
    """Call `save(file)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    The file gets the usual permissions (0666 less the umask), like any file the user creates.
    Raises OSError (or whatever `save` raises) with nothing left behind.
    """
    path = Path(path)
    temporary = temporary_path(path)
    with pending(temporary):
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as file:
                save(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    return path


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    return file_digest(path, "sha256")


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file with any hashlib algorithm (SHA-1 is what Commons lists), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _install_sigterm_handler() -> None:
    """On SIGTERM, remove pending temporary files, then hand the signal on to the handler installed before
    ours (or end as SIGTERM would); installed once, from the main thread only."""
    global _previous_sigterm
    if _previous_sigterm is not None or threading.current_thread() is not threading.main_thread():
        return
    _previous_sigterm = signal.getsignal(signal.SIGTERM)
    if _previous_sigterm == signal.SIG_IGN:  # the process is not to end on SIGTERM: nothing to clean up then
        return

    previous = _previous_sigterm

    def on_sigterm(signum: int, frame: object) -> None:
        """Remove pending temporary files, then do what was there before: its handler, nothing, or exit."""
        with _LOCK:
            for temporary in list(_PENDING):
                temporary.unlink(missing_ok=True)
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main interpreter
        _previous_sigterm = None
