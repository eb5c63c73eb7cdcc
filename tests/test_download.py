"""Tests of the Commons downloader against a fake Commons API and upload server on 127.0.0.1."""

from __future__ import annotations

import csv
import dataclasses
import functools
import re
import shutil
import socket
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.commons_server import (
    CATEGORY,
    EMPTY_ANSWER,
    FakeCommons,
    FakeFile,
    gzip_bomb,
    make_image,
)
from unetsr import __version__, download
from unetsr.commons import categories, deadline, fetcher, http_client, manifest
from unetsr.commons import listing as commons
from unetsr.commons.http_client import (
    Limits,
    RetryPolicy,
    make_session,
    parse_retry_after,
)
from unetsr.commons.listing import DEFAULT_API, list_category, strip_html
from unetsr.commons.manifest import (
    ManifestRow,
    file_name,
    read_manifest,
    write_manifest,
)
from unetsr.core.errors import DownloadError
from unetsr.download import main

REPO = Path(__file__).resolve().parents[1]
CONTACT = "tests@example.org"
AGENT = f"unetsr-download/{__version__} ({CONTACT}) requests/{requests.__version__}"
FAST = RetryPolicy(retries=3, base=0.01, cap=0.3)
LIMITS = Limits(seconds=10.0, api_bytes=1 << 20, file_margin=1 << 16)
MAX_SIDE = 32

GOOD = ["Landscape.jpg", "Portrait.png", "Small.jpg", "Scan.tif", "Rate limited.jpg", "Flaky.jpg",
        "Ünïcode ..name (1).jpg", "Wrong hash.jpg"]
BAD = ["Gone.jpg", "Corrupt.jpg"]
NON_RASTER = ["Drawing.svg", "Sound.ogg", "Paper.pdf"]


def fake_files() -> list[FakeFile]:
    """Thirteen files in four API pages: good photos, a 404, a corrupt one, a wrong hash and non-raster media."""
    def photo(name: str, mime: str, size: tuple[int, int], seed: int, **kw) -> FakeFile:
        return FakeFile(name, mime, make_image(mime, size, seed), *size, **kw)

    return [
        photo("Landscape.jpg", "image/jpeg", (64, 40), 1),
        photo("Portrait.png", "image/png", (24, 60), 2, license="CC BY 4.0"),
        FakeFile("Drawing.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>", 100, 100),
        photo("Small.jpg", "image/jpeg", (20, 16), 3),
        photo("Scan.tif", "image/tiff", (48, 48), 4, artist="Anonymous &amp; friends"),
        FakeFile("Sound.ogg", "application/ogg", b"OggS" + b"\0" * 60),
        photo("Rate limited.jpg", "image/jpeg", (40, 40), 5),
        photo("Gone.jpg", "image/jpeg", (50, 40), 6),
        photo("Flaky.jpg", "image/jpeg", (36, 48), 7),
        FakeFile("Corrupt.jpg", "image/jpeg", b"this is not a JPEG at all " * 8, 64, 64),
        FakeFile("Paper.pdf", "application/pdf", b"%PDF-1.4 fake", 600, 800),
        photo("Ünïcode ..name (1).jpg", "image/jpeg", (48, 30), 8),
        photo("Wrong hash.jpg", "image/jpeg", (64, 48), 9, wrong_sha1=True),
    ]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test whose code opens a connection anywhere but 127.0.0.1; ignore proxy settings; fast retries."""
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: object) -> object:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            assert address[0] in ("127.0.0.1", "::1"), f"test tried to reach {address}"  # type: ignore[index]
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "UNETSR_CONTACT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(http_client, "DEFAULT_RETRY", FAST)
    monkeypatch.setattr(http_client, "DEFAULT_LIMITS", LIMITS)
    monkeypatch.setattr(fetcher, "STOP_GRACE", 0.2)


@pytest.fixture
def fake() -> FakeCommons:
    """The fake Commons with the mixed files, a 429 then success, a 500 then success and a permanent 404."""
    server = FakeCommons(fake_files(), scripts={"Rate limited.jpg": [429], "Flaky.jpg": [500]},
                         always_404={"Gone.jpg"}).start()
    yield server
    server.stop()


def run(fake: FakeCommons, tmp_path: Path, *extra: str) -> int:
    """main() against the fake server, writing into tmp_path."""
    return main(["--api", fake.api_url, "--out", str(tmp_path / "images"), "--manifest", str(tmp_path / "m.csv"),
                 "--max-side", str(MAX_SIDE), "--contact", CONTACT, *extra])


def on_disk(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


def by_title(rows: list[ManifestRow]) -> dict[str, ManifestRow]:
    return {row.title: row for row in rows}


def test_full_run_writes_manifest_and_verified_renditions(fake: FakeCommons, tmp_path: Path, capsys) -> None:
    assert run(fake, tmp_path) == 1  # two files fail, so the exit status says so
    out, err = capsys.readouterr()

    rows = by_title(read_manifest(tmp_path / "m.csv"))
    assert set(rows) == {f"File:{n}" for n in GOOD + BAD}
    served = {f.title: f for f in fake.files}
    for title, row in rows.items():
        f = served[title]
        assert (row.width, row.height, row.size, row.mime) == (f.width, f.height, len(f.data), f.mime)
        assert row.sha1 == f.sha1 and row.original_url == fake.base + fake.original_path(f)
    assert rows["File:Landscape.jpg"].license == "CC BY-SA 4.0"
    assert rows["File:Portrait.png"].license == "CC BY 4.0"
    assert rows["File:Landscape.jpg"].author == "Jane Doe"
    assert rows["File:Scan.tif"].author == "Anonymous & friends"
    assert rows["File:Landscape.jpg"].credit == "Own work"
    # The long side is max-side for landscape and portrait alike; small originals are never upscaled.
    assert (rows["File:Landscape.jpg"].download_width, rows["File:Landscape.jpg"].download_height) == (32, 20)
    assert (rows["File:Portrait.png"].download_width, rows["File:Portrait.png"].download_height) == (13, 32)
    assert rows["File:Small.jpg"].download_url == rows["File:Small.jpg"].original_url
    assert rows["File:Scan.tif"].download_mime == "image/jpeg"

    images = tmp_path / "images"
    names = [p.name for p in on_disk(images)]
    assert len(names) == len(GOOD) and all(re.fullmatch(r"[A-Za-z0-9_-]+-[0-9a-f]{10}\.(jpg|png)", n) for n in names)
    for name in GOOD:
        row = rows[f"File:{name}"]
        path = images / file_name(row.title, row.download_mime)
        assert path.read_bytes() == fake.bodies[row.download_url.removeprefix(fake.base)]
        with Image.open(path) as image:
            assert image.size == (row.download_width, row.download_height)
    for name in BAD:
        assert not (images / file_name(f"File:{name}", "image/jpeg")).exists()
    assert "failed: File:Gone.jpg: HTTP 404" in err
    assert "failed: File:Corrupt.jpg: the bytes are not an image" in err
    assert "Traceback" not in err
    assert "downloaded 8, skipped 0 already present, failed 2" in out
    assert "non-raster files skipped while listing 3" in out

    # 429 then success, waiting for Retry-After (capped by the policy), and 500 then success.
    limited = fake.file_requests("Rate limited.jpg")
    assert len(limited) == 2 and limited[1].when - limited[0].when >= FAST.cap * 0.9
    assert len(fake.file_requests("Flaky.jpg")) == 2
    # Listing: batched with continuation (13 files, 4 per answer), never one request per file.
    api = fake.api_requests()
    assert len(api) == 4
    assert api[0].query["gcmtitle"] == CATEGORY and api[0].query["iiurlwidth"] == api[0].query["iiurlheight"] == "32"
    assert [r.query.get("gcmcontinue") for r in api] == [None, "file|4", "file|8", "file|12"]
    # Every request reached this server, with the descriptive User-Agent.
    port = fake.server.server_address[1]
    assert fake.requests and all(r.user_agent == AGENT and r.host == f"127.0.0.1:{port}" for r in fake.requests)


def test_second_run_downloads_nothing(fake: FakeCommons, tmp_path: Path, capsys) -> None:
    run(fake, tmp_path)
    counts = Counter(fake.name_of(r.path) for r in fake.file_requests())
    api_before = len(fake.api_requests())
    capsys.readouterr()

    assert run(fake, tmp_path) == 1
    out, _ = capsys.readouterr()
    again = Counter(fake.name_of(r.path) for r in fake.file_requests())
    assert all(again[name] == counts[name] for name in GOOD)  # verified files are not fetched again
    assert again["Gone.jpg"] > counts["Gone.jpg"]  # failed ones are retried on a rerun
    assert len(fake.api_requests()) == api_before  # the manifest is reused, not listed again
    assert "downloaded 0, skipped 8 already present, failed 2" in out


def test_damaged_file_on_disk_is_fetched_again(tmp_path: Path) -> None:
    server = FakeCommons([f for f in fake_files() if f.name in ("Landscape.jpg", "Small.jpg")]).start()
    try:
        assert run(server, tmp_path) == 0
        landscape = read_manifest(tmp_path / "m.csv")[0]
        path = tmp_path / "images" / file_name(landscape.title, landscape.download_mime)
        path.write_bytes(path.read_bytes()[:40])  # truncated, as by a disk error or an editor
        before = len(server.file_requests())
        assert run(server, tmp_path) == 0
        assert len(server.file_requests()) == before + 1
        with Image.open(path) as image:
            image.load()
    finally:
        server.stop()


def test_clean_second_run_makes_no_file_requests(tmp_path: Path, capsys) -> None:
    server = FakeCommons([f for f in fake_files() if f.name in GOOD[:4]]).start()
    try:
        assert run(server, tmp_path) == 0
        before = len(server.requests)
        assert run(server, tmp_path) == 0
        assert len(server.requests) == before
        assert "downloaded 0, skipped 4 already present, failed 0" in capsys.readouterr().out
    finally:
        server.stop()


def test_original_checks_sha1(fake: FakeCommons, tmp_path: Path, capsys) -> None:
    assert run(fake, tmp_path, "--original") == 1
    out, err = capsys.readouterr()
    images = tmp_path / "images"
    for f in fake.files:
        path = images / file_name(f.title, f.mime) if f.mime in manifest.RASTER_EXTENSIONS else None
        if f.name in GOOD and f.name != "Wrong hash.jpg":
            assert path.read_bytes() == f.data
        elif path is not None:
            assert not path.exists()
    assert re.search(r"failed: File:Wrong hash\.jpg: SHA-1 mismatch .*; file deleted", err)
    assert "downloaded 7, skipped 0 already present, failed 3" in out
    assert len(on_disk(images)) == 7


def test_interrupted_download_leaves_no_partial_file_and_resumes(fake: FakeCommons, tmp_path: Path) -> None:
    rows = [row for row in list_category(make_session(AGENT), fake.api_url, CATEGORY, max_side=MAX_SIDE)
            if row.title.removeprefix("File:") in GOOD]
    fake.stall_name = "Portrait.png"
    images = tmp_path / "images"

    def interrupt_once_stalled(result: fetcher.FileResult) -> None:
        assert fake.stalled.wait(5), "the stalled download never started"
        assert any(p.name.startswith(".") and p.name.endswith(".tmp") for p in images.iterdir())  # half-written now
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetcher.download_all(rows, images, agent=AGENT, retry=FAST, progress=False, on_result=interrupt_once_stalled)
    left = on_disk(images)
    assert not [p for p in left if p.name.startswith(".") or p.name.endswith((".part", ".tmp"))]
    assert 1 <= len(left) < len(GOOD)
    for path in left:
        with Image.open(path) as image:
            image.load()

    fake.stall_name = None
    fake.release.set()
    stale = images / ".Killed-0123456789.jpg.0badf00d.tmp"  # as left by a run killed with SIGKILL
    older = images / ".Killed-0123456789.jpg.dead.part"  # as left by an older version
    stale.write_bytes(b"half")
    older.write_bytes(b"half")
    summary = fetcher.download_all(rows, images, agent=AGENT, retry=FAST, progress=False)
    assert (summary.downloaded, summary.skipped, summary.failed) == (len(GOOD) - len(left), len(left), ())
    assert len(on_disk(images)) == len(GOOD) and not stale.exists() and not older.exists()


def test_ctrl_c_in_cli_exits_130_and_rerun_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    server = FakeCommons([f for f in fake_files() if f.name in GOOD[:4]]).start()
    try:
        def interrupt(result: fetcher.FileResult) -> None:
            raise KeyboardInterrupt

        real = fetcher.download_all
        monkeypatch.setattr(fetcher, "download_all", functools.partial(real, on_result=interrupt))
        assert run(server, tmp_path) == 130
        assert "interrupted" in capsys.readouterr().err
        assert not [p for p in on_disk(tmp_path / "images") if p.name.startswith(".")]
        monkeypatch.setattr(fetcher, "download_all", real)
        assert run(server, tmp_path) == 0
        assert len(on_disk(tmp_path / "images")) == 4
    finally:
        server.stop()


def test_sigterm_in_cli_leaves_no_partial_file(fake: FakeCommons, tmp_path: Path) -> None:
    rows = [row for row in list_category(make_session(AGENT), fake.api_url, CATEGORY, max_side=MAX_SIDE)
            if row.title == "File:Portrait.png"]
    write_manifest(rows, tmp_path / "m.csv")  # reused: the run writes nothing before downloading
    fake.stall_name = "Portrait.png"
    images = tmp_path / "images"
    process = subprocess.Popen(
        [sys.executable, "-m", "unetsr.download", "--api", fake.api_url, "--out", str(images),
         "--manifest", str(tmp_path / "m.csv"), "--max-side", str(MAX_SIDE), "--contact", CONTACT],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    try:
        assert fake.stalled.wait(30), "the stalled download never started"
        assert [p for p in images.iterdir() if p.name.endswith(".tmp")]  # half-written right now
        process.terminate()
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 128 + 15 and "Traceback" not in err
    assert not list(images.iterdir())


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("invalid_json", "answered with invalid JSON"),
        ("html", "answered with an HTML page instead of JSON"),
        ("api_error", 'API error badvalue: Unrecognized value for parameter "gcmtype".'),
        ("missing_field", "lacks a valid 'sha1' field"),
        ("deep_json", "answered with JSON nested too deeply"),
    ],
)
def test_bad_api_answer_is_one_clear_line(fake: FakeCommons, tmp_path: Path, capsys, mode: str, message: str) -> None:
    fake.api_mode = mode
    assert run(fake, tmp_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m unetsr.download: error: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "m.csv").exists() and not fake.file_requests()


def free_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dead_network_is_one_clear_line(tmp_path: Path, capsys) -> None:
    api = f"http://127.0.0.1:{free_port()}/w/api.php"
    code = main(["--api", api, "--out", str(tmp_path / "i"), "--manifest", str(tmp_path / "m.csv"), "--contact", "x"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"unetsr.download: error: cannot reach {api}" in err and "Connection refused" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("problem", ["html", "dead"])
def test_cli_subprocess_reports_without_traceback(fake: FakeCommons, tmp_path: Path, problem: str) -> None:
    fake.api_mode = "html"
    api = fake.api_url if problem == "html" else f"http://127.0.0.1:{free_port()}/w/api.php"
    result = subprocess.run(
        [sys.executable, "-m", "unetsr.download", "--api", api, "--out", str(tmp_path / "i"),
         "--manifest", str(tmp_path / "m.csv"), "--retries", "0", "--contact", CONTACT],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "unetsr.download: error: " in result.stderr
    assert ("HTML page" if problem == "html" else "Connection refused") in result.stderr


def test_dry_run_lists_but_downloads_nothing(fake: FakeCommons, tmp_path: Path, capsys) -> None:
    assert run(fake, tmp_path, "--dry-run", "--limit", "5") == 0
    assert len(read_manifest(tmp_path / "m.csv")) == 5
    assert not fake.file_requests() and not on_disk(tmp_path / "images")
    assert "dry run: 5 files" in capsys.readouterr().out
    assert len(fake.api_requests()) == 2  # 5 raster files need two answers of 4 files, not a third


def test_reused_manifest_must_match_max_side(fake: FakeCommons, tmp_path: Path, capsys) -> None:
    assert run(fake, tmp_path, "--dry-run") == 0
    assert main(["--api", fake.api_url, "--out", str(tmp_path / "images"), "--manifest", str(tmp_path / "m.csv"),
                 "--max-side", "16", "--contact", CONTACT, "--dry-run"]) == 0  # dry run: nothing to mismatch
    assert main(["--api", fake.api_url, "--out", str(tmp_path / "images"), "--manifest", str(tmp_path / "m.csv"),
                 "--max-side", "16", "--contact", CONTACT]) == 1
    assert "add --refresh" in capsys.readouterr().err
    listed = len(fake.api_requests())
    main(["--api", fake.api_url, "--out", str(tmp_path / "images"), "--manifest", str(tmp_path / "m.csv"),
          "--max-side", "16", "--contact", CONTACT, "--refresh", "--dry-run"])
    assert len(fake.api_requests()) == listed + 4
    assert by_title(read_manifest(tmp_path / "m.csv"))["File:Landscape.jpg"].download_width == 16


def test_list_category_limit_and_non_raster_count(fake: FakeCommons) -> None:
    skipped: Counter[str] = Counter()
    rows = list(list_category(make_session(AGENT), fake.api_url, CATEGORY, max_side=MAX_SIDE, skipped=skipped))
    assert [r.title for r in rows] == [f.title for f in fake.files if f.name not in NON_RASTER]
    assert skipped == Counter({"image/svg+xml": 1, "application/ogg": 1, "application/pdf": 1})
    fake.requests.clear()
    limited = list(list_category(make_session(AGENT), fake.api_url, CATEGORY, max_side=MAX_SIDE, limit=3))
    assert len(limited) == 3 and len(fake.api_requests()) == 1


def test_file_names_are_safe_stable_and_distinct() -> None:
    hostile = ["File:../../etc/passwd.jpg", "File:..\\..\\win.ini.jpg", "File:.hidden.jpg", "File:-rf.jpg",
               "File:a/b.jpg", "File:a_b.jpg", "File:a b.jpg", "File:" + "x" * 300 + ".jpg", "File:日本.jpg"]
    names = [file_name(title, "image/jpeg") for title in hostile]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*-[0-9a-f]{10}\.jpg", name) and len(name) <= 100
    assert file_name("File:a b.jpg", "image/jpeg") == names[6]  # stable across calls (and runs: no randomness)
    assert file_name("File:Café.tif", "image/tiff").startswith("Cafe-")
    assert file_name("File:x.tif", "image/tiff").endswith(".tif")
    assert file_name("File:x.webp", "image/webp").endswith(".webp")


def test_strip_html_and_retry_policy() -> None:
    assert strip_html('<a href="//x">Jane <b>Doe</b></a>\n <span>&amp; co</span>') == "Jane Doe & co"
    assert strip_html("Plain") == "Plain"
    policy = RetryPolicy(retries=3, base=0.5, cap=10)
    assert [policy.delay(n) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.delay(0, "7") == 7 and policy.delay(0, "3600") == 10  # Retry-After wins, capped
    assert policy.delay(2, "soon") == 2.0  # unreadable: ordinary backoff
    in_5s = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=5), usegmt=True)
    assert 3 <= parse_retry_after(in_5s, default=0) <= 5


def test_defaults_and_hosts() -> None:
    assert categories.default_categories() == ["Category:Valued images"]
    assert download.DEFAULT_OUT == Path("data/valued/images")
    assert download.DEFAULT_MANIFEST == Path("data/valued/manifest.csv")
    # No host is wired into the code except the default --api.
    for module in (download, commons, http_client, deadline, fetcher, manifest, categories):
        urls = re.findall(r"https?://[^\s\"')]+", Path(module.__file__).read_text(encoding="utf-8"))
        assert set(urls) <= {DEFAULT_API}
    assert http_client.user_agent(CONTACT) == AGENT
    with pytest.raises(DownloadError):
        http_client.user_agent("evil\r\nX-Injected: 1")


# --- hostile servers and hostile places: one line, a non-zero exit, within seconds, nothing left behind ---


def error_line(err: str) -> str:
    """The one error line of a failed run, checked to be the last line and free of tracebacks."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("python -m unetsr.download: error: ")
    return lines[-1]


def test_gzip_bomb_api_reply_is_cut_off_without_being_inflated(fake: FakeCommons, tmp_path: Path, capsys) -> None:
    fake.api_mode = "gzip_bomb"
    gzip_bomb(EMPTY_ANSWER)  # built (32 MB inflated) before memory is traced
    tracemalloc.start()
    try:
        code = run(fake, tmp_path, "--dry-run")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 1
    assert f"sent more than the {LIMITS.api_bytes:,} bytes allowed" in error_line(capsys.readouterr().err)
    assert peak < 16 << 20, f"{peak / 1e6:.0f} MB held for a reply capped at 1 MB"
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("mode", ["drip", "drip_headers"])
def test_dripped_api_reply_ends_at_the_deadline(
    fake: FakeCommons, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, mode: str
) -> None:
    monkeypatch.setattr(http_client, "DEFAULT_LIMITS", dataclasses.replace(LIMITS, seconds=1.0))
    fake.api_mode = mode
    start = time.monotonic()
    code = run(fake, tmp_path, "--dry-run", "--retries", "0")
    assert code == 1 and time.monotonic() - start < 2.5
    assert "took longer than 1 s" in error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("how", "message"),
    [("endless", "sent more than the"), ("gzip_bomb", "sent more than the"), ("drip", "took longer than")],
)
def test_hostile_file_body_fails_that_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, how: str, message: str
) -> None:
    monkeypatch.setattr(http_client, "DEFAULT_LIMITS", dataclasses.replace(LIMITS, seconds=1.0, min_rate=1e9))
    server = FakeCommons([f for f in fake_files() if f.name in ("Landscape.jpg", "Small.jpg")],
                         hostile={"Small.jpg": how}).start()
    try:
        start = time.monotonic()
        assert run(server, tmp_path, "--retries", "0") == 1
        assert time.monotonic() - start < 4
    finally:
        server.stop()
    out, err = capsys.readouterr()
    assert re.search(rf"failed: File:Small\.jpg: .*{message}", err) and "Traceback" not in err
    assert "downloaded 1, skipped 0 already present, failed 1" in out
    names = [p.name for p in on_disk(tmp_path / "images")]
    assert names == [file_name("File:Landscape.jpg", "image/jpeg")]  # nothing partial, nothing hidden


def test_a_file_dripped_a_byte_at_a_time_is_cut_at_the_deadline_not_after_its_size_allowance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # min_rate 1000 B/s: a file's old deadline, seconds + limit / min_rate, was over 60 s for this 64 kB limit,
    # so a drip ran until the server gave up; now the body must earn its time by arriving.
    monkeypatch.setattr(http_client, "DEFAULT_LIMITS", dataclasses.replace(LIMITS, seconds=1.0, min_rate=1000.0))
    server = FakeCommons([f for f in fake_files() if f.name == "Small.jpg"], hostile={"Small.jpg": "drip"}).start()
    try:
        start = time.monotonic()
        assert run(server, tmp_path, "--retries", "0") == 1
        assert time.monotonic() - start < 2.5
    finally:
        server.stop()
    _, err = capsys.readouterr()
    assert re.search(r"failed: File:Small\.jpg: .*took longer than 1\.?\d* s \(\d+ bytes received", err)
    assert on_disk(tmp_path / "images") == []


def test_continue_token_loop_stops_with_a_clear_line(fake: FakeCommons, tmp_path: Path, capsys) -> None:
    fake.api_mode = "same_continue"
    assert run(fake, tmp_path, "--dry-run", "--limit", "5") == 1
    assert "sent the same 'continue' twice" in error_line(capsys.readouterr().err)
    assert len(fake.api_requests()) == 2 and not (tmp_path / "m.csv").exists()
    fake.requests.clear()
    assert run(fake, tmp_path, "--dry-run", "--limit", "3") == 0  # the limit is met before the loop shows
    assert len(fake.api_requests()) == 1 and len(read_manifest(tmp_path / "m.csv")) == 3


FORMULAS = {"artist": '=HYPERLINK("http://evil.invalid","click")', "license": "+cmd|' /C calc'!A0",
            "credit": "@SUM(1+1)"}


def test_manifest_cells_cannot_run_as_spreadsheet_formulas(tmp_path: Path) -> None:
    files = [FakeFile("Evil.jpg", "image/jpeg", make_image("image/jpeg", (20, 16)), 20, 16, **FORMULAS),
             FakeFile("Minus.jpg", "image/jpeg", make_image("image/jpeg", (20, 16), 1), 20, 16, artist="-2+3")]
    server = FakeCommons(files).start()
    try:
        assert run(server, tmp_path, "--dry-run") == 0
    finally:
        server.stop()
    with open(tmp_path / "m.csv", newline="", encoding="utf-8") as fh:
        cells = [cell for record in csv.reader(fh) for cell in record]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    evil, minus = read_manifest(tmp_path / "m.csv")  # read back as Commons gave them
    assert (evil.author, evil.license, evil.credit) == (FORMULAS["artist"], FORMULAS["license"], FORMULAS["credit"])
    assert minus.author == "-2+3"


def test_gif_rendition_is_skipped_and_never_poisons_the_manifest(tmp_path: Path, capsys) -> None:
    files = [f for f in fake_files() if f.name in ("Landscape.jpg", "Small.jpg")]
    files.append(FakeFile("Animated.jpg", "image/jpeg", make_image("image/jpeg", (64, 40), 3), 64, 40,
                          thumb_mime="image/gif"))
    server = FakeCommons(files).start()
    try:
        assert run(server, tmp_path) == 0
        out, err = capsys.readouterr()
        assert "1 skipped (rendition in image/gif 1)" in err and "Traceback" not in err
        assert "downloaded 2, skipped 0 already present, failed 0" in out
        assert [r.title for r in read_manifest(tmp_path / "m.csv")] == ["File:Landscape.jpg", "File:Small.jpg"]
        assert run(server, tmp_path) == 0  # the next run reuses the manifest
        assert "skipped 2 already present, failed 0" in capsys.readouterr().out

        # A manifest that an older version wrote with the GIF row in it: that row is left out, with a warning.
        rows = read_manifest(tmp_path / "m.csv")
        gif = dataclasses.replace(rows[0], title="File:Animated.jpg", download_mime="image/gif")
        with open(tmp_path / "m.csv", "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(dataclasses.astuple(gif))
        assert run(server, tmp_path) == 0
        _, err = capsys.readouterr()
        assert re.search(r"warning: .*m\.csv line 4: 'File:Animated\.jpg' left out: image/gif is not a raster", err)
    finally:
        server.stop()


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Path:
    """A folder in which nothing can be created: mode 0555, or, for root (whom modes do not stop), /sys."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        yield folder
    else:
        (folder / "probe").unlink()
        try:
            (Path("/sys") / "unetsr-probe").touch()
        except OSError:
            yield Path("/sys")
        else:
            pytest.skip("no read-only place to test with")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("case", ["out is a file", "out read-only", "out inside read-only", "manifest read-only",
                                  "manifest is a folder"])
def test_unwritable_out_or_manifest_is_one_line_before_any_request(
    fake: FakeCommons, tmp_path: Path, read_only_dir: Path, capsys, case: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    out, manifest_path = tmp_path / "images", tmp_path / "m.csv"
    out, manifest_path = {
        "out is a file": (tmp_path / "a-file", manifest_path),
        "out read-only": (read_only_dir, manifest_path),
        "out inside read-only": (read_only_dir / "images", manifest_path),
        "manifest read-only": (out, read_only_dir / "m.csv"),
        "manifest is a folder": (out, tmp_path / "a-folder"),
    }[case]
    code = main(["--api", fake.api_url, "--out", str(out), "--manifest", str(manifest_path), "--contact", CONTACT])
    assert code == 1
    assert re.search(r"is a file|is a folder|cannot (create|write)", error_line(capsys.readouterr().err))
    assert not fake.requests  # refused before listing
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_categories_file_is_read_from_an_installed_package(tmp_path: Path) -> None:
    """Built into a wheel as `pip install .` builds it, and imported from the wheel itself (a zip): only a
    file that ships inside the package and is found through it can be read there."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "unetsr", src / "unetsr", ignore=shutil.ignore_patterns("__pycache__", "weights"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    (src / "unetsr" / "commons" / "categories.txt").write_text("# installed copy\nCategory:Installed test\n", encoding="utf-8")
    build = "from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    built = subprocess.run([sys.executable, "-c", f"import sys; {build}", str(tmp_path)], cwd=src,
                           capture_output=True, text=True, timeout=120, check=True)
    wheel = tmp_path / built.stdout.split()[-1]
    code = f"import sys; sys.path.insert(0, {str(wheel)!r}); import unetsr.commons.categories as c; print(c.default_categories())"
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "['Category:Installed test']", result.stderr


def test_help_is_light_and_named_for_the_console_script(monkeypatch: pytest.MonkeyPatch) -> None:
    code = ("import sys; import unetsr.download as d; d.build_parser().format_help(); "
            "print(sorted(m for m in ('requests', 'urllib3', 'PIL', 'tqdm', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
    assert download.HELP_MAX_WORKERS == fetcher.MAX_WORKERS and download.HELP_RETRIES == RetryPolicy().retries
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/unetsr-download"])
    assert download.build_parser().prog == "unetsr-download"
    monkeypatch.setattr(sys, "argv", ["/x/download.py"])
    assert download.build_parser().prog == "python -m unetsr.download"


def test_empty_category_is_warned_about(fake: FakeCommons, tmp_path: Path, capsys) -> None:
    assert run(fake, tmp_path, "--dry-run", "--category", "Nothing here") == 0
    assert "warning: Category:Nothing here has no files; check its name" in capsys.readouterr().err
    assert read_manifest(tmp_path / "m.csv") == []
