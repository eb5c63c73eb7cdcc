"""The local web page's server: a Starlette app over the job queue, its event hub, and the socket it listens on.

Photos go only to this server and are upscaled by the same pipeline as `python -m unetsr.infer`."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from unetsr.batch.plan import FORMATS, MAX_SCALE, parse_format
from unetsr.core.errors import one_line
from unetsr.core.values import float_in, int_in

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from unetsr.web.models import Models
    from unetsr.web.queue import JobQueue, WebJob

STATIC = Path(__file__).parent / "static"
MIME_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
EVENT_PING_S = 15.0  # an event stream sends a comment this often, so proxies and browsers keep it open
CLIENT_TIMEOUT_S = 20.0
"""Seconds a client may take to send a request's header, or pause while sending a photo (--client-timeout),
as nginx's client_header_timeout and client_body_timeout bound them."""
MIN_UPLOAD_RATE = 100_000
"""Bytes per second an upload must average, after its first --client-timeout seconds (Apache's MinRate)."""
MAX_CONNECTIONS = 64
"""Connections served at once (uvicorn's limit_concurrency); a request beyond them is answered 503 at once."""
MAX_HEADER_BYTES = 16 * 1024
"""The most bytes a request's line and header may take (h11's limit; the page sends under 1 KB)."""
KEEP_ALIVE_S = 5
"""Seconds an idle connection stays open after a response (uvicorn's timeout_keep_alive)."""
MAX_STREAMS = 256
"""Event streams open at once (a page holds one), so that the hub's memory is bounded whatever clients send."""
CLIENT_ID = re.compile(r"[0-9A-Za-z-]{8,64}")
"""A page's id: 8 to 64 ASCII letters, digits and '-' (the page makes 32 hex digits)."""


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (localhost, 127.x.x.x, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; OSError with the reason when it cannot be had."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address for a listening socket (a wildcard address shown as the machine's loopback)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 one (RFC 6266)."""
    fallback = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class Hub:
    """Pushes job snapshots, from any thread, to the event streams of the page that owns each job; holds an
    entry only for a page whose stream is open, and at most MAX_STREAMS streams."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.streams: dict[str, set[asyncio.Queue]] = {}
        self.closing = False

    def subscribe(self, client: str) -> asyncio.Queue | None:
        """A new stream's queue for page `client`; None when MAX_STREAMS are open already (or the hub is closing)."""
        if self.closing or sum(map(len, self.streams.values())) >= MAX_STREAMS:
            return None
        queue: asyncio.Queue = asyncio.Queue()
        self.streams.setdefault(client, set()).add(queue)
        return queue

    def unsubscribe(self, client: str, queue: asyncio.Queue) -> None:
        """Forget a closed stream, and its page when it was the page's last one."""
        queues = self.streams.get(client, set())
        queues.discard(queue)
        if not queues:
            self.streams.pop(client, None)

    def publish(self, snapshot: dict[str, object]) -> None:
        """Deliver a snapshot to its page's streams (thread-safe; dropped before the server has started)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver, snapshot)

    def _deliver(self, snapshot: dict[str, object]) -> None:
        for queue in self.streams.get(str(snapshot["client"]), ()):
            queue.put_nowait(snapshot)

    def close(self) -> None:
        """End every stream, so that the server can stop at once (again: nothing more)."""
        if self.closing:
            return
        self.closing = True
        for queues in self.streams.values():
            for queue in queues:
                queue.put_nowait(None)


def parse_switch(text: str) -> bool:
    """A page's on/off setting: '1' or '0' (what the page sends for a checkbox)."""
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"must be 0 or 1, got {one_line(text)[:40]!r}")
    return text == "1"


def create_app(jobs: JobQueue, models: Models, hub: Hub, *, max_upload: int, max_pixels: int,
               allowed_hosts: list[str] | None, on_stop: Callable[[], None] = lambda: None,
               client_timeout: float = CLIENT_TIMEOUT_S) -> Starlette:
    """The Starlette app: the page, its static files, and the JSON, upload and event-stream API. An upload
    that pauses over `client_timeout` seconds, or averages under MIN_UPLOAD_RATE after them, is refused (408)."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import ClientDisconnect
    from starlette.responses import (
        FileResponse,
        JSONResponse,
        Response,
        StreamingResponse,
    )
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from unetsr.web.queue import QueueFull, Settings

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": one_line(message)}, status_code=status)

    def settings_from(params) -> Settings:
        """The page's choices for one photo, checked with the CLI's own types; ValueError says what is wrong."""
        checks = (("scale", float_in(1, MAX_SCALE, inclusive=False), "2"), ("quality", int_in(1, 100), "95"),
                  ("format", parse_format, "png"), ("ensemble", parse_switch, "0"))
        values = {}
        for name, parse, default in checks:
            try:
                values[name] = parse(params.get(name, default))
            except argparse.ArgumentTypeError as exc:
                raise ValueError(f"{name}: {exc}") from None
        model = params.get("model", "auto")
        if model not in models.names:
            raise ValueError(f"model: no model named {one_line(model)[:40]!r}; choose from {', '.join(models.names)}")
        return Settings(values["scale"], model, values["format"], values["quality"], values["ensemble"])

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
                                       "frame-ancestors 'none'; base-uri 'none'",
            "Cache-Control": "no-cache"})

    async def favicon(request: Request) -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "public, max-age=86400"})

    async def info(request: Request) -> Response:
        return JSONResponse({"models": models.labels(), "formats": list(FORMATS), "max_scale": MAX_SCALE,
                             "max_upload_mb": max_upload / 1e6, "max_pixels_mp": max_pixels / 1e6})

    async def upload(request: Request) -> Response:
        params = request.query_params
        name, client = params.get("name", ""), params.get("client", "")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/octet-stream":
            return error(415, "send the photo's bytes as application/octet-stream")
        if not CLIENT_ID.fullmatch(client):
            return error(400, "client: a page id of 8 to 64 letters and digits is needed")
        try:
            settings = settings_from(params)
        except ValueError as exc:
            return error(400, str(exc))
        job = jobs.new_job(client, name, settings)
        too_big = f"{job.name} is over the {max_upload / 1e6:g} MB upload limit (--max-upload)"
        if int(request.headers.get("content-length") or 0) > max_upload:
            return error(413, too_big)
        size, submitted = 0, False
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            with open(job.input, "xb") as file:  # a random id, never the browser's name
                async with asyncio.timeout(client_timeout) as clock:  # a stalled or trickling upload ends here
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > max_upload:
                            raise OverflowError
                        file.write(chunk)
                        clock.reschedule(min(loop.time(), start + size / MIN_UPLOAD_RATE) + client_timeout)
            if size == 0:
                raise EOFError
            jobs.submit(job)
            submitted = True
        except OverflowError:
            return error(413, too_big)
        except TimeoutError:
            return JSONResponse({"error": one_line(f"{job.name}: the upload stalled or was too slow (under "
                                                   f"{MIN_UPLOAD_RATE / 1e3:g} KB/s, or {client_timeout:g} s "
                                                   "without a byte); try again")},
                                status_code=408, headers={"Connection": "close"})
        except EOFError:
            return error(400, f"{job.name} is empty (0 bytes)")
        except QueueFull as exc:
            return error(503, str(exc))
        except ClientDisconnect:  # the page was closed mid-upload: nobody to answer
            return Response(status_code=400)
        except OSError as exc:
            return error(507, f"cannot store {job.name} for upscaling: {exc.strerror or exc}")
        finally:  # refused, or the browser went away mid-upload: nothing is left behind
            if not submitted:
                job.input.unlink(missing_ok=True)
        return JSONResponse(job.snapshot(), status_code=201)

    async def events(request: Request) -> Response:
        client = request.query_params.get("client", "")
        if not CLIENT_ID.fullmatch(client):
            return error(400, "client: a page id of 8 to 64 letters and digits is needed")
        queue = hub.subscribe(client)
        if queue is None:
            return error(503, f"too many pages are open ({MAX_STREAMS}), or the server is stopping; reload later")

        async def stream() -> AsyncIterator[str]:
            sent: dict[str, int] = {}  # job id -> the last seq sent: older snapshots still queued are dropped
            try:
                yield "retry: 2000\n\n"
                for job in jobs.jobs_of(client):  # a page that reconnects catches up
                    snapshot = job.snapshot()
                    sent[job.id] = int(snapshot["seq"])
                    yield f"data: {json.dumps(snapshot)}\n\n"
                while not hub.closing:
                    try:
                        snapshot = await asyncio.wait_for(queue.get(), EVENT_PING_S)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if snapshot is None:
                        break
                    if int(snapshot["seq"]) > sent.get(str(snapshot["id"]), 0):
                        sent[str(snapshot["id"])] = int(snapshot["seq"])
                        yield f"data: {json.dumps({k: v for k, v in snapshot.items() if k != 'client'})}\n\n"
            finally:
                hub.unsubscribe(client, queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def find(request: Request) -> WebJob | None:
        return jobs.get(request.path_params["job_id"])

    async def before(request: Request) -> Response:
        job = find(request)
        if job is None or not job.has_before or not job.before.exists():
            return error(404, "no such photo (it was removed, or the server restarted)")
        return FileResponse(job.before, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def result(request: Request) -> Response:
        job = find(request)
        if job is None or job.state != "done" or not job.output.exists():
            return error(404, "no such result (not finished, removed, or the server restarted)")
        return FileResponse(job.output, media_type=MIME_TYPES[job.settings.format],
                            headers={"Content-Disposition": content_disposition(job.download_name),
                                     "Cache-Control": "private, max-age=3600"})

    async def remove(request: Request) -> Response:
        if not jobs.remove(request.path_params["job_id"]):
            return error(404, "no such photo")
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.loop = asyncio.get_running_loop()
        yield
        hub.close()
        on_stop()

    routes = [
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/api/info", info),
        Route("/api/jobs", upload, methods=["POST"]),
        Route("/api/events", events),
        Route("/api/jobs/{job_id:str}", remove, methods=["DELETE"]),
        Route("/api/jobs/{job_id:str}/before", before),
        Route("/api/jobs/{job_id:str}/result", result),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def header_deadline_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol plus the one bound uvicorn lacks: each request's header must arrive within
    `seconds` of the connection opening or of the previous response ending, else the connection is closed (as
    nginx's client_header_timeout does), so half-sent headers cannot hold connections open."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._expire, self.cycle)

        def _expire(self, cycle: object) -> None:
            """Close the connection if no new request has begun since the timer was set and none is running."""
            idle = self.cycle is cycle and (cycle is None or self.cycle.response_complete)
            if idle and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineProtocol


def make_server(app: Starlette, hub: Hub, *, client_timeout: float = CLIENT_TIMEOUT_S) -> uvicorn.Server:
    """The page's uvicorn server, bounded as a trusted server is: MAX_CONNECTIONS at once, header and idle time-outs,
    header size; a stop ends the event streams first (uvicorn would wait for them), so it takes well under a second."""
    import uvicorn

    class PageServer(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            hub.close()
            await super().shutdown(sockets)

    return PageServer(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2,
        http=header_deadline_protocol(client_timeout), limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_S, h11_max_incomplete_event_size=MAX_HEADER_BYTES))


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def default_jobs(device: str) -> int:
    """One photo per CPU core at a time on the CPU; one on a GPU, which a single photo keeps busy."""
    return 1 if device in ("cuda", "mps") else cpu_cores()
