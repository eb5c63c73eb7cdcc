"""An overall deadline for one HTTP request, headers and body together, that no server can stretch.

A per-read timeout does not stop a server that sends a byte every few seconds. `Deadline` does: the
connections of a session made by `watch_deadlines` hand their socket to the thread's current
Deadline just before they wait for an answer, and when the time is up a timer shuts that socket down,
so the blocked read returns at once and the caller sees `expired`.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class Deadline:
    """Shuts down the socket of this thread's request once `seconds` have passed, so no read can outlast it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _current.deadline = None
        with self._lock:
            self._sock = None

    def watch(self, sock: socket.socket | None) -> None:
        """Called by the connection just before it waits for the answer: this is the socket to cut."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
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
