"""An overall deadline for one HTTP request, headers and body together, that no server can stretch.

A per-read timeout does not stop a server that sends a byte every few seconds. `Deadline` does: the
connections of a session made by `watch_deadlines` hand their socket to the thread's current
Deadline just before they wait for an answer, and when the time is up a timer shuts that socket down,
so the blocked read returns at once and the caller sees `expired`. A large file earns more time only by
arriving: `min_rate` adds a second for every `min_rate` bytes received, so a body dripped a byte a
second is cut at `seconds`, while one arriving at `min_rate` or faster is never cut.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class Deadline:
    """Shuts down the socket of this thread's request once it has run `seconds`, plus one second for every
    `min_rate` bytes `got` (0: no extension), so no read can outlast it."""

    def __init__(self, seconds: float, min_rate: float = 0.0) -> None:
        self.seconds = seconds
        self.min_rate = min_rate
        self.received = 0
        self.expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._start = 0.0
        self._done = False
        self._timer: threading.Timer | None = None

    def __enter__(self) -> "Deadline":
        _current.deadline = self
        self._start = time.monotonic()
        with self._lock:
            self._arm(self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()
            self._sock = None
        _current.deadline = None

    def allowed(self) -> float:
        """The seconds this request may run so far: `seconds`, plus what the bytes received have earned."""
        return self.seconds + (self.received / self.min_rate if self.min_rate > 0 else 0.0)

    def got(self, nbytes: int) -> None:
        """Count `nbytes` more of the body as received (each earns 1/min_rate seconds)."""
        with self._lock:
            self.received += nbytes

    def watch(self, sock: socket.socket | None) -> None:
        """Called by the connection just before it waits for the answer: this is the socket to cut."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def _arm(self, delay: float) -> None:
        """Start the timer that checks the deadline again in `delay` seconds (the lock is held)."""
        self._timer = threading.Timer(delay, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            left = self.allowed() - (time.monotonic() - self._start)
            if left > 0:  # the body has earned more time since the timer was set
                self._arm(left)
                return
            self.expired = True
            _shut(self._sock)


def _shut(sock: socket.socket | None) -> None:
    """Make every blocked read on `sock` return at once (the plain socket's shutdown, below any TLS layer)."""
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _Watched:
    """Mixin for urllib3 connections: hand the socket to this thread's Deadline before reading the answer."""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.watch(self.sock)  # type: ignore[attr-defined]
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections that a Deadline can cut (directly or through an HTTP proxy)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


def watch_deadlines(session: requests.Session) -> None:
    """Make every request of `session` obey the Deadline its thread has entered, if any."""
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
