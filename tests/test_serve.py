"""`python -m unetsr.serve`: the job queue in-process, then a real server on 127.0.0.1 (a subprocess on a free
port, stopped at the end) driven over HTTP and from headless Chromium (Debian's, through Playwright)."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
import torch
from helpers import photo_like
from PIL import Image

from unetsr.core.errors import CheckpointError
from unetsr.imaging.formats import READ_NAMES
from unetsr.infer import main as infer_main
from unetsr.inference.choice import installed
from unetsr.model import checkpoint
from unetsr.model.checkpoint import save_checkpoint
from unetsr.serve import main as serve_main
from unetsr.web import queue as webqueue
from unetsr.web.app import (
    MAX_CONNECTIONS,
    MAX_STREAMS,
    Hub,
    content_disposition,
    is_loopback,
)
from unetsr.web.models import Models, TrackedUpscaler
from unetsr.web.queue import JobQueue, Settings, display_name, safe_stem

SHIPPED_NAMES = sorted(installed())  # the shipped models the page offers beside "auto"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_FLAGS = ["--tile", "16", "--tile-overlap", "0", "--jobs", "2", "--max-pixels", "0.01", "--max-upload", "0.05",
                "--client-timeout", "2"]
CLIENT = "testpage0123456789"
JOB_FILE = re.compile(r"^[0-9a-f]{32}\.(input|before\.png|result\.(png|jpg|webp))$")
DEADLINE_S = 60


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread here: on a machine already busy, two threads only wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_photo(path: Path, h: int = 40, w: int = 56, seed: int = 0) -> Path:
    Image.fromarray((photo_like(h, w, seed) * 255 + 0.5).astype(np.uint8)).save(path, format="PNG")
    return path


# --- the library side: tiles, names, the queue ---------------------------------------------------------

@pytest.mark.parametrize("h, w, scale, tile, alpha", [(40, 56, 2, 16, False), (20, 12, 4, 16, False),
                                                      (17, 9, 2.5, 8, True), (40, 56, 2, None, False),
                                                      (3, 200, 2, 16, False)])
def test_tile_count_is_the_number_of_tiles_computed(tiny_model, h, w, scale, tile, alpha) -> None:
    upscaler = TrackedUpscaler(tiny_model, device="cpu", tile=tile, tile_overlap=0)
    ticks = []
    image = photo_like(h, w)
    if alpha:
        image = np.concatenate([image, np.full((h, w, 1), 0.5, np.float32)], axis=2)
    with upscaler.reporting(lambda: ticks.append(1)):
        out = upscaler.upscale_array(image, scale)
    assert out.shape[:2] == (round(h * scale), round(w * scale))
    assert len(ticks) == upscaler.tile_count(h, w, scale) * (2 if alpha else 1) > 0
    upscaler.upscale_array(image, scale)  # outside the block nothing is counted
    assert len(ticks) == upscaler.tile_count(h, w, scale) * (2 if alpha else 1)


@pytest.mark.parametrize("sent, shown, stem", [
    ("photo.jpg", "photo.jpg", "photo"),
    ("../../etc/passwd", "passwd", "passwd"),
    ("C:\\Users\\me\\Été à Nice.JPG", "Été à Nice.JPG", "Été_à_Nice"),
    ("a\nb\x00c.png", "a\\nb\\x00c.png", "a_nb_x00c"),
    (".hidden.png", ".hidden.png", "hidden"),
    ("...", "...", "photo"),
    ("", "photo", "photo"),
])
def test_browser_names_are_only_shown_and_made_safe(sent: str, shown: str, stem: str) -> None:
    assert display_name(sent) == shown
    assert safe_stem(sent) == stem
    header = content_disposition(stem + "_x2.png")
    assert header.isascii() and "\n" not in header and header.startswith('attachment; filename="')


def test_loopback_detection() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.3.2.1"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.2", "example.org"]))


def test_queue_runs_photos_in_order_reports_progress_and_cleans_up(tmp_path: Path, tiny_checkpoint: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    gate, first_running = threading.Event(), threading.Event()
    seen: list[dict] = []

    def listener(snapshot: dict) -> None:
        seen.append(snapshot)
        if snapshot["name"] == "first.png" and snapshot["state"] == "running" and not first_running.is_set():
            first_running.set()
            assert gate.wait(30)  # hold the only worker until the others are queued

    jobs = JobQueue(Models(tiny_checkpoint, device="cpu", tile=16, tile_overlap=0), work, workers=1, max_pixels=10_000,
                    listener=listener)
    try:
        made = []
        for name, data in [("first.png", None), ("second.png", None), ("gone.png", None), ("bad.png", b"not an image")]:
            job = jobs.new_job(CLIENT, name, Settings(2.0))
            if data is None:
                save_photo(job.input, seed=len(made))
            else:
                job.input.write_bytes(data)
            jobs.submit(job)
            made.append(job)
            if name == "first.png":
                assert first_running.wait(30)
        first, second, gone, bad = made
        assert (second.position, gone.position, bad.position) == (0, 1, 2)
        assert jobs.remove(gone.id) and not gone.input.exists()
        assert bad.position == 1
        gate.set()
        deadline = time.monotonic() + DEADLINE_S
        while not (first.finished and second.finished and bad.finished) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (first.state, second.state, bad.state, gone.state) == ("done", "done", "failed", "queued")
        assert bad.error == f"bad.png: not a supported image (unetsr reads {READ_NAMES})"
        starts = [s["name"] for s in seen if s["state"] == "running" and s["done"] == 0 and not s["before"]]
        assert starts == ["first.png", "second.png", "bad.png"]  # in order; the removed one never ran
        progress = [s["done"] for s in seen if s["id"] == first.id and s["state"] == "running" and s["total"]]
        assert progress == sorted(progress) and progress[-1] == first.total == 12  # 3×4 tiles of 16 px
        with Image.open(first.output) as im:
            assert im.size == (112, 80)
        assert first.snapshot()["download"] == "first_x2.png" and first.snapshot()["bytes"] > 0
        assert first.snapshot()["model_used"] == tiny_checkpoint.name  # the page says which model ran
        assert sorted(p.name for p in work.iterdir()) == sorted(
            [first.before.name, first.output.name, second.before.name, second.output.name])  # inputs gone
        assert jobs.remove(first.id) and not first.output.exists() and not first.before.exists()
    finally:
        gate.set()
        jobs.close()
    assert list(work.iterdir()) == []


def submit(jobs: JobQueue, name: str, image: Image.Image, **settings: object) -> webqueue.WebJob:
    """Queue `image`, saved as a PNG, as if the page had uploaded it as `name`."""
    job = jobs.new_job(CLIENT, name, Settings(**{"scale": 2.0, **settings}))
    image.save(job.input, format="PNG")
    jobs.submit(job)
    return job


def finish(jobs: JobQueue, *made: webqueue.WebJob) -> None:
    """Wait (bounded) until the jobs are finished, then stop the queue."""
    deadline = time.monotonic() + DEADLINE_S
    while not all(job.finished for job in made) and time.monotonic() < deadline:
        time.sleep(0.02)
    jobs.close()


def test_photos_whose_work_is_too_big_are_refused_from_their_header(tmp_path: Path, tiny_checkpoint: Path,
                                                                    monkeypatch) -> None:
    decoded: list[Path] = []
    for module in (webqueue, sys.modules["unetsr.batch.one_file"]):
        read = module.read_image
        monkeypatch.setattr(module, "read_image",
                            lambda path, read=read, **kw: decoded.append(path) or read(path, **kw))
    (work := tmp_path / "work").mkdir()
    jobs = JobQueue(Models(tiny_checkpoint, device="cpu", tile=16, tile_overlap=0), work, max_pixels=2_000_000)
    huge = submit(jobs, "huge.png", Image.new("RGB", (1300, 1300), (90, 120, 150)), scale=16.0)  # a 5 KB file
    thin = submit(jobs, "thin.png", Image.new("L", (300_000, 1), 128))  # 0.3 MP, one pixel tall
    finish(jobs, huge, thin)
    assert (huge.state, huge.error) == ("failed", ("huge.png: the x16 output would be 433 MP, over the 400 MP "
                                                   "output limit; use a smaller --scale"))  # infer's words
    assert (thin.state, thin.error) == ("failed", ("thin.png is 300000×1, computed as 2.4 MP once padded to the "
                                                   "model's 8-pixel grid: over the 2 MP limit (--max-pixels)"))
    assert decoded == [] and not huge.has_before and not thin.has_before  # no pixel decoded, no preview written
    assert list(work.iterdir()) == []


def test_a_photo_over_the_time_limit_is_stopped_at_its_next_tile(tmp_path: Path, tiny_checkpoint: Path) -> None:
    (work := tmp_path / "work").mkdir()
    jobs = JobQueue(Models(tiny_checkpoint, device="cpu", tile=16, tile_overlap=0), work, max_pixels=10_000,
                    job_timeout=0.001)
    job = submit(jobs, "slow.png", Image.fromarray((photo_like(40, 56) * 255).astype(np.uint8)))
    finish(jobs, job)
    assert (job.state, job.error) == ("failed", ("slow.png: stopped after the time limit for one photo "
                                                 "(0.001 s, --job-timeout)"))
    assert job.done < job.total and not job.output.exists()


def test_the_page_offers_only_the_shipped_models_and_checks_their_sha256(tmp_path: Path, tiny_model,
                                                                        photo_png: Path, monkeypatch) -> None:
    (weights := tmp_path / "weights").mkdir()
    for name in ("x2", "x2_jpeg"):
        (weights / f"unetsr_{name}.pt").symlink_to(checkpoint.WEIGHTS_DIR / f"unetsr_{name}.pt")
    save_checkpoint(weights / "unetsr_x4.pt", tiny_model)  # a shipped name, but not the shipped bytes
    save_checkpoint(weights / "unetsr_x9.pt", tiny_model)  # a stray file beside the shipped ones
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", weights / "unetsr_x2.pt")
    for name in ("WEIGHTS_DIR", "DEFAULT_CHECKPOINT"):  # where the page's own loader used to look
        monkeypatch.setattr(webqueue, name, getattr(checkpoint, name), raising=False)
    models = Models(device="cpu")
    assert list(models.labels()) == ["auto", "x2", "x2_jpeg", "x4"]  # never x9
    with pytest.raises(CheckpointError, match="is damaged: SHA-256"):
        models.get("x4")
    (work := tmp_path / "work").mkdir()
    jobs = JobQueue(models, work, max_pixels=10_000)
    job = submit(jobs, "photo.png", Image.open(photo_png), scale=4.0, model="x4")
    finish(jobs, job)
    assert job.state == "failed" and job.error.startswith("checkpoint unetsr_x4.pt is damaged: SHA-256 ")
    assert str(tmp_path) not in job.error  # the page never sees this server's folders


def test_the_hub_forgets_a_page_when_its_last_stream_closes_and_caps_streams() -> None:
    hub = Hub()
    first, second = hub.subscribe(CLIENT), hub.subscribe(CLIENT)
    hub.unsubscribe(CLIENT, first)
    assert hub.streams == {CLIENT: {second}}
    hub.unsubscribe(CLIENT, second)
    assert hub.streams == {}  # nothing kept for a page whose streams are closed
    streams = [hub.subscribe(f"page{i:08d}") for i in range(MAX_STREAMS)]
    assert None not in streams and hub.subscribe("onemorepage") is None


# --- a real server ----------------------------------------------------------------------------------------

class Server:
    """`python -m unetsr.serve` (or `launcher`, a command that runs its main) in a subprocess on a free port,
    with its own TMPDIR."""

    def __init__(self, checkpoint: Path, tmp: Path, launcher: tuple[str, ...] = ("-m", "unetsr.serve")) -> None:
        self.tmp = tmp
        env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, *launcher, "--port", "0", "--checkpoint",
                                      str(checkpoint), *SERVER_FLAGS], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        try:
            first = lines.get(timeout=DEADLINE_S)
        except queue.Empty:
            self.stop()
            raise AssertionError("the server printed no URL in time") from None
        match = re.search(r"serving (http://127\.0\.0\.1:(\d+)/)", first)
        assert match, first
        self.url, self.port = match.group(1), int(match.group(2))

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def upload(self, data: bytes, name: str, **settings: object) -> tuple[int, dict]:
        query = urlencode({"client": CLIENT, "name": name, **settings})
        status, _, body = self.request("POST", f"/api/jobs?{query}", data,
                                       {"Content-Type": "application/octet-stream"})
        return status, json.loads(body)

    def follow(self, job_id: str, conn: http.client.HTTPConnection | None = None,
               until=lambda snap: snap["state"] in ("done", "failed")) -> list[dict]:
        """The job's snapshots from the event stream, until one is finished (or satisfies `until`); on `conn`,
        left open, when given."""
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE_S)
        snapshots: list[dict] = []
        try:
            conn.request("GET", f"/api/events?client={CLIENT}")
            response = conn.getresponse()
            assert response.headers["Content-Type"].startswith("text/event-stream")
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                line = response.fp.readline().decode()
                if line.startswith("data: ") and (snap := json.loads(line[6:]))["id"] == job_id:
                    snapshots.append(snap)
                    if until(snap):
                        return snapshots
            raise AssertionError(f"job not finished in time: {snapshots[-1:]}")
        finally:
            if own:
                conn.close()

    def connect(self) -> socket.socket:
        """A raw connection to the server, for clients that misbehave."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE_S)

    def work_folders(self) -> list[Path]:
        return list(self.tmp.glob("unetsr-serve-*"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tiny_checkpoint, tmp_path_factory.mktemp("serve-tmp"))
    try:
        yield srv
    finally:
        srv.stop()


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys; from unetsr import serve; serve.build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'starlette', 'uvicorn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_a_port_in_use_or_a_bad_checkpoint_is_one_line_before_any_url(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a work folder would be made
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_main(["--port", str(port)]) == 1
    assert capsys.readouterr().err == f"python -m unetsr.serve: error: cannot listen on 127.0.0.1:{port}: " \
                                      "Address already in use\n"
    assert serve_main(["--port", "0", "--jobs", "2", "--checkpoint", str(tmp_path / "none.pt")]) == 1
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", f"python -m unetsr.serve: error: checkpoint {tmp_path / 'none.pt'}: no such file\n")
    assert list(tmp_path.iterdir()) == []


def test_served_result_has_the_pixels_infer_gives(server: Server, tmp_path: Path, tiny_checkpoint: Path) -> None:
    photo = save_photo(tmp_path / "photo.png")
    status, job = server.upload(photo.read_bytes(), "my photo.png")
    assert status == 201 and job["state"] in ("queued", "running")
    snapshots = server.follow(job["id"])
    final = snapshots[-1]
    assert final["state"] == "done", final
    assert (final["input_size"], final["output_size"], final["download"]) == ([56, 40], [112, 80], "my_photo_x2.png")
    running = [s for s in snapshots if s["state"] == "running" and s["total"]]
    assert running and {s["total"] for s in running} == {12}  # progress is pushed: tiles done / all
    assert [s["done"] for s in running] == sorted(s["done"] for s in running)
    assert all(JOB_FILE.match(p.name) for folder in server.work_folders() for p in folder.iterdir())

    status, headers, body = server.request("GET", f"/api/jobs/{job['id']}/result")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == content_disposition("my_photo_x2.png")
    (tmp_path / "served.png").write_bytes(body)
    assert infer_main([str(photo), "-o", str(tmp_path / "cli.png"), "--checkpoint", str(tiny_checkpoint),
                       "--tile", "16", "--tile-overlap", "0", "--quiet"]) == 0
    served, cli = np.asarray(Image.open(tmp_path / "served.png")), np.asarray(Image.open(tmp_path / "cli.png"))
    assert served.shape == (80, 112, 3) and np.array_equal(served, cli)

    status, _, before = server.request("GET", f"/api/jobs/{job['id']}/before")
    (tmp_path / "before.png").write_bytes(before)
    assert status == 200 and np.array_equal(np.asarray(Image.open(tmp_path / "before.png")),
                                            np.asarray(Image.open(photo)))

    assert server.request("DELETE", f"/api/jobs/{job['id']}")[0] == 204
    assert server.request("GET", f"/api/jobs/{job['id']}/result")[0] == 404


def test_the_ensemble_checkbox_runs_infers_ensemble(server: Server, tmp_path: Path, tiny_checkpoint: Path) -> None:
    photo = save_photo(tmp_path / "photo.png", seed=3)
    status, job = server.upload(photo.read_bytes(), "photo.png", ensemble="1")
    assert status == 201 and job["ensemble"] is True
    final = server.follow(job["id"])[-1]
    assert final["state"] == "done", final
    assert final["model_used"] == f"{tiny_checkpoint.name} (x8 self-ensemble)" and final["total"] == 12
    (tmp_path / "served.png").write_bytes(server.request("GET", f"/api/jobs/{job['id']}/result")[2])
    served = np.asarray(Image.open(tmp_path / "served.png"))
    for flag, same in (("--ensemble", True), (None, False)):
        cli = tmp_path / f"cli{flag}.png"
        assert infer_main([str(photo), "-o", str(cli), "--checkpoint", str(tiny_checkpoint), "--tile", "16",
                           "--tile-overlap", "0", "--quiet", *([flag] if flag else [])]) == 0
        assert np.array_equal(served, np.asarray(Image.open(cli))) is same


def test_errors_are_the_clis_one_line_messages(server: Server, tmp_path: Path, tiny_checkpoint: Path,
                                               capsys) -> None:
    big = save_photo(tmp_path / "big.png", 100, 120)  # 12,000 pixels, over --max-pixels 0.01
    status, job = server.upload(big.read_bytes(), "big.png")
    assert status == 201
    error = server.follow(job["id"])[-1]["error"]
    assert infer_main([str(big), "--checkpoint", str(tiny_checkpoint), "--max-pixels", "0.01"]) == 1
    cli_line = next(line for line in capsys.readouterr().err.splitlines() if "failed" in line)
    assert error == cli_line.split(f"failed {big}: ", 1)[1].replace(str(big), "big.png")
    assert error == "big.png is 120×100 = 0.012 MP, over the 0.01 MP limit (--max-pixels)"


@pytest.mark.parametrize("settings, status, message", [
    ({"scale": "1"}, 400, "scale: must be greater than 1 and at most 16, got 1"),
    ({"scale": "x"}, 400, "scale: not a number: 'x'"),
    ({"quality": "0"}, 400, "quality: must be from 1 to 100, got 0"),
    ({"format": "gif"}, 400, "format: choose from png, jpg, webp, got 'gif'"),
    ({"ensemble": "yes"}, 400, "ensemble: must be 0 or 1, got 'yes'"),
    ({"model": "x9\n"}, 400, "model: no model named 'x9\\\\n'; choose from " + ", ".join(["auto", *SHIPPED_NAMES])),
])
def test_bad_settings_are_refused_in_one_line(server: Server, settings, status, message) -> None:
    got, body = server.upload(b"\x89PNG", "a.png", **settings)
    assert (got, body) == (status, {"error": message})


def test_uploads_over_the_limit_empty_or_not_bytes_are_refused(server: Server) -> None:
    assert server.upload(b"x" * 60_000, "huge.png") == (
        413, {"error": "huge.png is over the 0.05 MB upload limit (--max-upload)"})
    assert server.upload(b"", "empty.png") == (400, {"error": "empty.png is empty (0 bytes)"})
    status, _, body = server.request("POST", f"/api/jobs?client={CLIENT}&name=a.png", b"abc",
                                     {"Content-Type": "text/plain"})  # a form another site could send
    assert status == 415
    status, _, _ = server.request("GET", "/api/info", headers={"Host": "attacker.example"})  # DNS rebinding
    assert status == 400
    assert all(JOB_FILE.match(p.name) for folder in server.work_folders() for p in folder.iterdir())


@pytest.mark.parametrize("client", ["", "short", "x" * 65, "é" * 10, "a" * 5000])
def test_event_streams_need_a_page_id(server: Server, client: str) -> None:
    status, _, body = server.request("GET", f"/api/events?{urlencode({'client': client})}")
    assert (status, json.loads(body)) == (400, {"error": "client: a page id of 8 to 64 letters and digits is needed"})


def test_the_favicon_is_served_and_linked(server: Server) -> None:
    status, headers, body = server.request("GET", "/favicon.ico")
    assert (status, headers["Content-Type"]) == (200, "image/svg+xml") and body.startswith(b"<svg")
    assert b'<link rel="icon" href="/favicon.ico"' in server.request("GET", "/")[2]


def test_a_half_sent_header_or_a_stalled_upload_is_cut_off(server: Server) -> None:
    with server.connect() as half:  # --client-timeout 2
        half.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        start = time.monotonic()
        assert half.recv(1024) == b""  # closed by the server, long before this socket's own time-out
        assert 1 < time.monotonic() - start < 10
    query = urlencode({"client": CLIENT, "name": "stalled.png"})
    with server.connect() as stalled:
        stalled.sendall(f"POST /api/jobs?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream"
                        "\r\nContent-Length: 1000\r\n\r\n\x89PNG".encode())
        time.sleep(0.5)
        assert [p for folder in server.work_folders() for p in folder.glob("*.input")]  # being stored...
        start = time.monotonic()
        head, _, body = stalled.makefile("rb").read().partition(b"\r\n\r\n")  # until the server closes
        assert time.monotonic() - start < 10 and head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body) == {"error": "stalled.png: the upload stalled or was too slow (under 100 KB/s, or 2 s "
                                         "without a byte); try again"}
    assert not [p for folder in server.work_folders() for p in folder.glob("*.input")]  # ...and removed


def test_connections_beyond_the_cap_are_answered_503_at_once(server: Server) -> None:
    idle = [server.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        assert server.request("GET", "/api/info")[::2] == (503, b"Service Unavailable")
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + DEADLINE_S
    while server.request("GET", "/api/info")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.request("GET", "/api/info")[0] == 200


SLOW_TILE_SERVER = """
import sys, torch
from unetsr.web import models
def slow_tile(self, patch):  # keeps its worker inside torch for minutes, as a large tile on a slow CPU does
    a = torch.rand(400, 400)
    for _ in range(1_000_000):
        a = torch.mm(a, a).clamp_(0, 1)
models.TrackedUpscaler._run_model = slow_tile
from unetsr.serve import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_a_long_tile_stops_at_once_without_an_abort(tiny_checkpoint: Path, tmp_path: Path) -> None:
    srv = Server(tiny_checkpoint, tmp_path, launcher=("-c", SLOW_TILE_SERVER))
    events = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=DEADLINE_S)
    try:
        status, job = srv.upload(save_photo(tmp_path / "photo.png").read_bytes(), "photo.png")
        assert status == 201
        srv.follow(job["id"], events, until=lambda snap: snap["state"] == "running" and snap["before"])
        time.sleep(0.3)  # its first tile has begun; the event stream stays open
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGINT)
        code = srv.proc.wait(DEADLINE_S)
        took = time.monotonic() - start
    finally:
        events.close()
        srv.stop()
    errors = srv.proc.stderr.read()
    assert (code, "terminate called" in errors, "Traceback" in errors) == (0, False, False), errors
    assert took < 4  # used to be 7 s: 2 s for the open event stream, 5 for the tile, then an abort (134)
    assert srv.work_folders() == []


# --- the page, in a real browser --------------------------------------------------------------------------

def browser_or_skip():
    """Playwright's sync_playwright, or a skip saying what is missing (a failure in CI, which installs both)."""
    missing = None
    if not Path(CHROMIUM).exists():
        missing = "Debian's chromium is not installed (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "Playwright is not installed (pip install playwright)"
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)
    return sync_playwright


def test_page_upscales_dropped_photos_and_compares(server: Server, tmp_path: Path) -> None:
    sync_playwright = browser_or_skip()
    photo = save_photo(tmp_path / "red panda.png", seed=3)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760}, accept_downloads=True)
            page.set_default_timeout(30_000)
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(server.url)
            page.wait_for_selector("#model option[value=auto]", state="attached")
            page.evaluate("""() => {  // every status line the page shows, to see the progress it showed
                window.statuses = [];
                new MutationObserver(() => document.querySelectorAll(".job-status").forEach(
                    (e) => window.statuses.push(e.textContent))).observe(
                    document.getElementById("jobs"), {subtree: true, childList: true, characterData: true});
            }""")
            page.set_input_files("#files", str(photo))  # picked with the file chooser
            page.evaluate("""() => {  // and one dropped on the page
                const data = new DataTransfer();
                data.items.add(new File(["this is not a photo"], "notes.png", {type: "image/png"}));
                document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
            }""")
            done = page.locator(".job[data-state=done]")
            done.wait_for()
            failed = page.locator(".job[data-state=failed]")
            failed.wait_for()
            assert failed.locator(".job-error").inner_text() == (
                f"notes.png: not a supported image (unetsr reads {READ_NAMES})")
            assert done.locator(".job-status").inner_text().startswith("56×40 → 112×80 · ")
            shown = page.evaluate("window.statuses")
            assert any(re.fullmatch(r"upscaling ×2, PNG \(tiny\.pt\): tile \d+ of 12", text) for text in shown), shown

            page.wait_for_selector("#compare[data-ready=yes]")
            assert page.locator("#viewer-name").inner_text() == "red panda.png"
            assert page.locator("#viewer-info").inner_text().endswith(", tiny.pt")  # which model made it
            box = page.locator("#compare").bounding_box()
            assert box["width"] > 112 * 4  # fit to the window: the small result is shown enlarged
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
            page.mouse.up()
            split = float(page.eval_on_selector("#compare", "e => e.style.getPropertyValue('--split')")[:-1])
            assert split == pytest.approx(25, abs=1)
            assert page.eval_on_selector("#split", "e => +e.value") == pytest.approx(split)
            page.eval_on_selector("#split", "e => { e.value = 30; e.dispatchEvent(new Event('input')); }")
            assert page.eval_on_selector("#before-img", "e => getComputedStyle(e).clipPath") == "inset(0px 70% 0px 0px)"
            page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

            page.click("#zoom-1")
            box = page.locator("#compare").bounding_box()
            assert (box["width"], box["height"]) == (112, 80)  # 1:1 (the device pixel ratio is 1)

            with page.expect_download() as download:
                page.click(".job[data-state=done] .job-download")
            assert download.value.suggested_filename == "red_panda_x2.png"
            saved = tmp_path / "download.png"
            download.value.save_as(saved)
            with Image.open(saved) as im:
                assert im.size == (112, 80)

            page.check("#ensemble")  # the next photo with the x8 self-ensemble
            page.set_input_files("#files", str(save_photo(tmp_path / "again.png", seed=4)))
            page.locator(".job[data-state=done]").nth(1).wait_for()
            shown = page.evaluate("window.statuses")
            assert any(re.fullmatch(r"upscaling ×2, PNG \(tiny\.pt \(x8 self-ensemble\)\): tile \d+ of 12", text)
                       for text in shown), shown
            assert problems == []
        finally:
            browser.close()


def test_stopping_the_server_removes_its_files(server: Server) -> None:
    assert server.work_folders()
    assert server.stop() == 128 + signal.SIGTERM
    assert server.work_folders() == []
    assert "Traceback" not in server.proc.stderr.read()


def test_auto_on_the_page_picks_the_shipped_model_per_photo_as_infer_does(monkeypatch, tmp_path: Path,
                                                                         photo_png: Path) -> None:
    from unetsr.inference import choice as models_module

    picked: list[str] = []
    from unetsr.web import models as web_models

    monkeypatch.setattr(web_models, "choose", lambda path, scale: picked.append((Path(path).name, scale))
                        or models_module.Choice("x4" if scale >= 3 else "x2", "test"))
    monkeypatch.setattr(web_models, "installed", lambda: ["x2", "x4"])
    page_models = Models(device="cpu")
    loads: list[tuple[str, bool]] = []

    class Loaded(TrackedUpscaler):  # what was loaded, without loading anything
        def __init__(self, name, ensemble):
            self.name, self.ensemble = f"shipped {name} model", ensemble
            loads.append((name, ensemble))

    monkeypatch.setattr(TrackedUpscaler, "from_shipped",
                        classmethod(lambda cls, name, **kw: Loaded(name, kw["ensemble"])))

    def get(*args):
        upscaler, used = page_models.get(*args)
        return upscaler.name, upscaler.ensemble, used

    assert get("auto", photo_png, 4.0) == ("shipped x4 model", False, "shipped x4 model: test")
    assert get("auto", photo_png, 2.0) == ("shipped x2 model", False, "shipped x2 model: test")
    assert picked == [("photo.png", 4.0), ("photo.png", 2.0)]
    assert get("x4") == ("shipped x4 model", False, "shipped x4 model (chosen on the page)")
    assert picked == [("photo.png", 4.0), ("photo.png", 2.0)]  # a model named on the page is not re-chosen
    assert get("auto", photo_png, 4.0, True) == ("shipped x4 model", True, "shipped x4 model (x8 self-ensemble): test")
    assert get("x4", None, 2.0, True) == ("shipped x4 model", True, "shipped x4 model (x8 self-ensemble) (chosen on the page)")
    assert loads == [("x4", False), ("x2", False), ("x4", True)]  # each loaded once
    assert "JPEG quality" in page_models.labels()["auto"]


@pytest.mark.parametrize("debug", ["", "1"])
def test_a_library_bug_is_one_line_unless_unetsr_debug_asks_for_the_traceback(
        tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        debug: str) -> None:
    """The web queue follows infer's rule: one line for an unexpected error, its traceback with UNETSR_DEBUG."""
    from unetsr.web import queue as queue_module

    def buggy(*args, **kwargs):
        raise KeyError("a bug in the library")

    monkeypatch.setenv("UNETSR_DEBUG", debug)
    monkeypatch.setattr(queue_module, "upscale_file", buggy)
    work = tmp_path / "work"
    work.mkdir()
    jobs = JobQueue(Models(tiny_checkpoint, device="cpu", tile=16, tile_overlap=0), work, workers=1, max_pixels=10_000)
    try:
        job = jobs.new_job(CLIENT, "photo.png", Settings(2.0))
        save_photo(job.input)
        jobs.submit(job)
        deadline = time.monotonic() + DEADLINE_S
        while not job.finished and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        jobs.close()
    assert job.state == "failed" and job.error == "internal error: KeyError: 'a bug in the library'"
    err = capsys.readouterr().err
    assert ("Traceback (most recent call last)" in err) == bool(debug)
    if not debug:
        assert err.strip().splitlines() == [
            "unetsr.serve: internal error on 'photo.png': KeyError: 'a bug in the library' "
            "(UNETSR_DEBUG=1 shows the traceback)"]
