"""Tests of the bounded HTTP client against the fake Commons on 127.0.0.1: size caps, deadlines, gzip."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.commons_server import FakeCommons, FakeFile, make_image
from unetsr.commons.deadline import Deadline
from unetsr.commons.http_client import RetryPolicy, fetch, make_session
from unetsr.core.errors import DownloadError

NO_RETRY = RetryPolicy(retries=0)
JPEG = make_image("image/jpeg", (20, 16))


def read_all(response: requests.Response, chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


@pytest.fixture
def server() -> FakeCommons:
    hows = ("gzip", "gzip_bomb", "drip_open", "drip")
    files = [FakeFile(f"{how}.jpg", "image/jpeg", JPEG, 20, 16) for how in ("plain", *hows)]
    fake = FakeCommons(files, hostile={f"{how}.jpg": how for how in hows}).start()
    yield fake
    fake.stop()


def url(server: FakeCommons, name: str) -> str:
    return f"{server.base}/upload/{name}"


def test_body_at_the_limit_passes_and_one_byte_over_is_refused_before_reading(server: FakeCommons) -> None:
    with make_session("t") as session:
        assert fetch(session, url(server, "plain.jpg"), read_all, limit=len(JPEG), seconds=5) == JPEG
        with pytest.raises(DownloadError, match=f"announced {len(JPEG):,} bytes, more than the {len(JPEG) - 1:,}"):
            fetch(session, url(server, "plain.jpg"), read_all, limit=len(JPEG) - 1, seconds=5, retry=NO_RETRY)
    assert len(server.file_requests("plain.jpg")) == 2  # refused, not retried


def test_gzip_body_is_decoded_exactly_and_cut_at_the_limit(server: FakeCommons) -> None:
    with make_session("t") as session:
        assert fetch(session, url(server, "gzip.jpg"), read_all, limit=len(JPEG), seconds=5) == JPEG
        with pytest.raises(DownloadError, match=f"sent more than the {len(JPEG) - 1:,} bytes"):
            fetch(session, url(server, "gzip.jpg"), read_all, limit=len(JPEG) - 1, seconds=5)
        start = time.monotonic()
        with pytest.raises(DownloadError, match="sent more than the 100,000 bytes allowed"):
            fetch(session, url(server, "gzip_bomb.jpg"), read_all, limit=100_000, seconds=10)
        assert time.monotonic() - start < 2  # stopped early: the 32 MB were never inflated


def test_body_without_length_cut_by_the_deadline_is_not_taken_as_complete(server: FakeCommons) -> None:
    start = time.monotonic()
    with make_session("t") as session, pytest.raises(DownloadError, match="took longer than 0.5 s"):
        fetch(session, url(server, "drip_open.jpg"), read_all, limit=1 << 20, seconds=0.5, retry=NO_RETRY)
    assert time.monotonic() - start < 2


def test_a_dripped_body_earns_no_time_beyond_the_deadline(server: FakeCommons) -> None:
    # A file download gets one more second per `min_rate` bytes received; a byte every 50 ms earns ~nothing,
    # so the drip is cut at `seconds`, not at seconds + limit / min_rate (66 s here).
    start = time.monotonic()
    with make_session("t") as session, pytest.raises(DownloadError, match=r"took longer than 0\.5\d* s \(\d+ bytes received"):
        fetch(session, url(server, "drip.jpg"), read_all, limit=1 << 16, seconds=0.5, min_rate=1000, retry=NO_RETRY)
    assert time.monotonic() - start < 1.5


def test_a_deadline_is_extended_by_the_bytes_received_and_only_by_them() -> None:
    a, b = socket.socketpair()
    with a, b:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(a.recv(10)))
        start = time.monotonic()
        with Deadline(0.2, min_rate=100) as deadline:
            deadline.watch(a)
            deadline.got(50)  # earns 0.5 s: the socket is cut at 0.7 s, not 0.2 s
            reader.start()
            time.sleep(0.45)
            assert not deadline.expired and reader.is_alive()
            reader.join(3)
        assert got == [b""] and deadline.expired and deadline.allowed() == pytest.approx(0.7)
        assert 0.65 < time.monotonic() - start < 2


def test_deadline_unblocks_a_read_and_leaves_no_timer_behind() -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(a.recv(10)))
        with Deadline(0.2) as deadline:
            deadline.watch(a)
            reader.start()
            reader.join(3)
        assert got == [b""] and deadline.expired
        with Deadline(0.1) as finished_early:
            finished_early.watch(c)
        time.sleep(0.2)
        assert not finished_early.expired  # cancelled on exit: the socket lives on
        d.sendall(b"ok")
        assert c.recv(2) == b"ok"
