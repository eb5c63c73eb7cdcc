"""A stand-in for the Commons Action API and upload server, on 127.0.0.1, for the downloader's tests.

It answers `generator=categorymembers` + `prop=imageinfo` queries in the formatversion=2 shape of the
real API (continuation, box-fitted thumbnails that never upscale, extmetadata), serves the files and
their renditions, and records every request. Knobs make it misbehave: scripted error statuses per
path, a stalled download, broken API answers, and hostile ones (deep JSON, gzip bombs, replies
dripped a byte at a time, endless files, a `continue` that never changes). Every misbehaviour is
bounded by the server itself (bytes sent, seconds spent), so a test of broken client code still ends.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from PIL import Image

CATEGORY = "Category:Valued images"
PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/tiff": "TIFF", "image/webp": "WEBP",
               "image/gif": "GIF"}
# Bounds on every misbehaviour: bytes of an endless or inflated body, seconds of a drip, looping API answers.
BOMB_BYTES = 32 << 20
DRIP_SECONDS = 4.0
DRIP_INTERVAL = 0.05
MAX_LOOPS = 200
EMPTY_ANSWER = b'{"batchcomplete": true, "query": {"pages": []}}'
REQUIRED_PARAMS = {
    "action": "query",
    "format": "json",
    "formatversion": "2",
    "generator": "categorymembers",
    "gcmtype": "file",
    "prop": "imageinfo",
}


def make_image(mime: str, size: tuple[int, int], seed: int = 0) -> bytes:
    """Bytes of a small picture with some structure (so JPEG has something to encode) in the format of `mime`."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata([((x * 7 + seed * 31) % 256, (y * 5 + seed) % 256, (x * y + seed) % 256)
                   for y in range(height) for x in range(width)])
    out = io.BytesIO()
    image.save(out, PIL_FORMATS[mime])
    return out.getvalue()


@dataclass
class FakeFile:
    """One file of the fake category; `data` is what the upload server serves as the original."""

    name: str
    mime: str
    data: bytes
    width: int = 0
    height: int = 0
    license: str = "CC BY-SA 4.0"
    artist: str = '<a href="//commons.invalid/wiki/User:Jane" title="User:Jane">Jane <b>Doe</b></a>'
    credit: str = "<span>Own work</span>"
    thumb_mime: str | None = None  # the rendition's MIME type, when not the server's usual choice
    wrong_sha1: bool = False

    @property
    def title(self) -> str:
        return f"File:{self.name}"

    @property
    def sha1(self) -> str:
        digest = hashlib.sha1(self.data).hexdigest()
        return "0" * 40 if self.wrong_sha1 else digest


@dataclass
class Seen:
    """One request as the server saw it."""

    path: str
    query: dict[str, str]
    user_agent: str
    host: str
    when: float


@dataclass
class FakeCommons:
    """The fake servers: start(), use `api_url`, read `requests`, stop()."""

    files: list[FakeFile]
    page_size: int = 4
    api_mode: str = "ok"
    # File name -> statuses to answer (one per request) before serving its original or rendition normally.
    scripts: dict[str, list[int]] = field(default_factory=dict)
    always_404: set[str] = field(default_factory=set)
    stall_name: str | None = None
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    # File name -> how its body is sent: "gzip", "gzip_bomb", "endless", "drip" or "drip_open" (no length).
    hostile: dict[str, str] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)

    def start(self) -> "FakeCommons":
        self.lock = threading.Lock()
        for f in self.files:
            self.bodies[self.original_path(f)] = f.data
            if self.hostile.get(f.name) == "gzip_bomb":
                gzip_bomb(f.data)  # built now, not while a client waits
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/w/api.php"

    def original_path(self, f: FakeFile) -> str:
        return f"/upload/{quote(f.name)}"

    @staticmethod
    def name_of(path: str) -> str | None:
        """The file name an upload path serves ('/upload/thumb/A.jpg/32px-A.jpg' -> 'A.jpg'), else None."""
        parts = path.split("/")
        if parts[1:2] != ["upload"]:
            return None
        return unquote(parts[3] if parts[2:3] == ["thumb"] and len(parts) > 3 else parts[-1])

    def file_requests(self, name: str | None = None) -> list[Seen]:
        """Requests to the upload server, optionally for one file name."""
        return [r for r in self.requests if self.name_of(r.path) and (name is None or self.name_of(r.path) == name)]

    def api_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path == "/w/api.php"]

    # --- the API -------------------------------------------------------------------------------------

    def api_answer(self, query: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, content type, body) for one api.php request."""
        if self.api_mode == "invalid_json":
            return 200, "application/json; charset=utf-8", b'{"batchcomplete": tru'
        if self.api_mode == "html":
            return 200, "text/html; charset=utf-8", b"<!DOCTYPE html><html><body><h1>Wikimedia Error</h1></body></html>"
        if self.api_mode == "deep_json":
            return 200, "application/json", b'{"query": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
        if self.api_mode == "same_continue" and len(self.api_requests()) > MAX_LOOPS:
            return 200, "application/json", b'{"error": {"code": "loop", "info": "the fake server gave up"}}'
        if self.api_mode == "api_error":
            body = {"error": {"code": "badvalue", "info": 'Unrecognized value for parameter "gcmtype".'},
                    "servedby": "mw-fake"}
            return 200, "application/json; charset=utf-8", json.dumps(body).encode()
        wrong = {k: v for k, v in REQUIRED_PARAMS.items() if query.get(k) != v}
        props = set(query.get("iiprop", "").split("|"))
        if wrong or not {"url", "size", "sha1", "mime", "extmetadata"} <= props:
            body = {"error": {"code": "badparams", "info": f"unexpected parameters {sorted(wrong)} {sorted(props)}"}}
            return 200, "application/json; charset=utf-8", json.dumps(body).encode()
        if query.get("gcmtitle") != CATEGORY:
            return 200, "application/json; charset=utf-8", b'{"batchcomplete": true}'

        limit = min(int(query.get("gcmlimit", "10")), self.page_size)
        start = int(query.get("gcmcontinue", "file|0").split("|")[1])
        box = (int(query.get("iiurlwidth", "-1")), int(query.get("iiurlheight", "-1")))
        pages = [self.page(i, f, box) for i, f in enumerate(self.files[start:start + limit], start)]
        body: dict = {"batchcomplete": True, "query": {"pages": pages}}
        if start + limit < len(self.files):
            body["continue"] = {"gcmcontinue": f"file|{start + limit}", "continue": "gcmcontinue||"}
        if self.api_mode == "same_continue":
            body["continue"] = {"gcmcontinue": "file|0", "continue": "gcmcontinue||"}
        if self.api_mode == "missing_field":
            del pages[0]["imageinfo"][0]["sha1"]
        return 200, "application/json; charset=utf-8", json.dumps(body).encode()

    def page(self, index: int, f: FakeFile, box: tuple[int, int]) -> dict:
        """One formatversion=2 page with its imageinfo, as the real API shapes it."""
        info: dict = {
            "size": len(f.data),
            "width": f.width,
            "height": f.height,
            "url": self.base + self.original_path(f),
            "descriptionurl": f"{self.base}/wiki/{quote(f.title)}",
            "sha1": f.sha1,
            "mime": f.mime,
            "extmetadata": {
                "LicenseShortName": {"value": f.license, "source": "commons-desc-page", "hidden": ""},
                "LicenseUrl": {"value": "https://creativecommons.invalid/licenses/by-sa/4.0", "source": "commons"},
                "Artist": {"value": f.artist, "source": "commons-desc-page"},
                "Credit": {"value": f.credit, "source": "commons-desc-page"},
            },
        }
        if f.width and box[0] > 0:
            info.update(self.thumb(f, box))
        return {"pageid": 1000 + index, "ns": 6, "title": f.title, "imagerepository": "local", "imageinfo": [info]}

    def thumb(self, f: FakeFile, box: tuple[int, int]) -> dict:
        """thumburl/thumbwidth/thumbheight fitted in `box` like MediaWiki: never larger than the original."""
        box_w, box_h = box[0], box[1] if box[1] > 0 else f.height
        if f.width <= box_w and f.height <= box_h:
            return {"thumburl": self.base + self.original_path(f), "thumbwidth": f.width,
                    "thumbheight": f.height, "thumbmime": f.mime}
        scale = min(box_w / f.width, box_h / f.height)
        size = (max(1, round(f.width * scale)), max(1, round(f.height * scale)))
        thumb_mime = f.thumb_mime or ("image/jpeg" if f.mime == "image/tiff" else f.mime)
        suffix = ".jpg" if f.mime == "image/tiff" else ""
        path = f"/upload/thumb/{quote(f.name)}/{size[0]}px-{quote(f.name)}{suffix}"
        if f.mime in PIL_FORMATS and path not in self.bodies:
            try:
                with Image.open(io.BytesIO(f.data)) as image:
                    out = io.BytesIO()
                    image.convert("RGB").resize(size).save(out, PIL_FORMATS[thumb_mime])
                    self.bodies[path] = out.getvalue()
            except OSError:
                self.bodies[path] = f.data  # a corrupt original gives a corrupt rendition
        return {"thumburl": self.base + path, "thumbwidth": size[0], "thumbheight": size[1], "thumbmime": thumb_mime}


def _handler_for(fake: FakeCommons) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one FakeCommons."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            with fake.lock:
                agent, host = self.headers.get("User-Agent", ""), self.headers.get("Host", "")
                fake.requests.append(Seen(path, query, agent, host, time.monotonic()))
                name = fake.name_of(path)
                script = fake.scripts.get(name) if name else None
                scripted = script.pop(0) if script else None
            if path == "/w/api.php" and fake.api_mode in ("gzip_bomb", "drip", "drip_headers"):
                self.hostile(fake.api_mode, EMPTY_ANSWER, "application/json")
            elif path == "/w/api.php":
                self.reply(*fake.api_answer(query))
            elif scripted is not None:
                headers = {"Retry-After": "1"} if scripted == 429 else {}
                self.reply(scripted, "text/html", b"<html><body>error</body></html>", headers)
            elif name in fake.always_404:
                self.reply(404, "text/html", b"<html><body>Not Found</body></html>")
            elif name in fake.hostile and path in fake.bodies:
                self.hostile(fake.hostile[name], fake.bodies[path], "application/octet-stream")
            elif name is not None and name == fake.stall_name:
                self.stall(fake.bodies[path])
            elif path in fake.bodies:
                self.reply(200, "application/octet-stream", fake.bodies[path])
            else:
                self.reply(404, "text/html", b"<html><body>Not Found</body></html>")

        def reply(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def hostile(self, how: str, body: bytes, content_type: str) -> None:
            """Send `body` gzipped, or as an attack: gzip-inflating to BOMB_BYTES, padded without end, dripped."""
            try:
                if how == "drip_headers":
                    self.drip(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"x" * 10_000)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                if how in ("gzip", "gzip_bomb"):
                    packed = gzip_bomb(body) if how == "gzip_bomb" else gzip.compress(body)
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(packed)))
                elif how == "drip":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()  # "endless": no length, the body ends when the connection does
                if how in ("gzip", "gzip_bomb"):
                    self.wfile.write(packed)
                elif how in ("drip", "drip_open"):
                    self.drip(body)
                else:
                    self.wfile.write(body)
                    for _ in range(BOMB_BYTES // (1 << 16)):
                        self.wfile.write(bytes(1 << 16))
            except OSError:
                pass  # the client hung up, as it should

        def drip(self, data: bytes) -> None:
            """Send `data` a byte every DRIP_INTERVAL seconds, for at most DRIP_SECONDS."""
            end = time.monotonic() + DRIP_SECONDS
            for i in range(len(data)):
                if time.monotonic() > end:
                    return
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(DRIP_INTERVAL)

        def stall(self, body: bytes) -> None:
            """Send half the body, then wait for `release` before sending the rest."""
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            fake.stalled.set()
            fake.release.wait(10)
            try:
                self.wfile.write(body[len(body) // 2:])
            except OSError:
                pass

    return Handler



@functools.lru_cache(maxsize=4)
def gzip_bomb(body: bytes) -> bytes:
    """`body` followed by zeros up to BOMB_BYTES, gzip-compressed (about a thousandth of that)."""
    return gzip.compress(body + bytes(BOMB_BYTES - len(body)), compresslevel=9)
