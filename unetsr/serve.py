"""`python -m unetsr.serve`: a local web page to upscale photos by drag and drop, with a before/after slider.

Runs offline on this machine: photos go only to this server (on 127.0.0.1 unless --host says otherwise),
are upscaled by the same library and pipeline as `python -m unetsr.infer`, and are deleted when removed
from the page or when the server stops. Needs the web extra: pip install 'unetsr[web]'."""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import sys
import tempfile
import threading
import webbrowser
from pathlib import Path

from unetsr.cli import add_tiling_arguments, fail, float_in, int_in, prog_name
from unetsr.imaging.photos import DEFAULT_MAX_PIXELS
from unetsr.web.app import (
    LOOPBACK_NAMES,
    Hub,
    cpu_cores,
    create_app,
    default_jobs,
    is_loopback,
    listen,
    url_of,
)

EXTRA_HINT = "the web page needs Starlette and uvicorn: pip install 'unetsr[web]'"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every number is range-checked by argparse (usage error, exit 2)."""
    p = argparse.ArgumentParser(prog=prog_name("serve"), description=__doc__.split("\n\n", 1)[0].split(": ", 1)[1],
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; anything else warns)")
    p.add_argument("--port", type=int_in(0, 65535), default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--checkpoint", metavar="PATH", help="the model 'auto' uses (default: the shipped model)")
    add_tiling_arguments(p)
    p.add_argument("--jobs", type=int_in(1, 256), metavar="N",
                   help="photos upscaled at once, the others wait in line (default: one per CPU core, 1 on a GPU)")
    p.add_argument("--max-pixels", type=float_in(0, 10_000, inclusive=False), default=DEFAULT_MAX_PIXELS / 1e6,
                   metavar="MP", help=f"refuse photos over MP megapixels (default {DEFAULT_MAX_PIXELS / 1e6:g})")
    p.add_argument("--max-upload", type=float_in(0, 100_000, inclusive=False), default=256, metavar="MB",
                   help="refuse uploads over MB megabytes (default 256)")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: serves until Ctrl-C (exit 0) or SIGTERM; 1 when it cannot start, 2 for bad arguments."""
    args = build_parser().parse_args(argv)
    prog = prog_name("serve")
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        return fail(prog, EXTRA_HINT)
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        return fail(prog, f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    with sock:
        return serve(args, sock, prog, uvicorn)


def serve(args: argparse.Namespace, sock: socket.socket, prog: str, uvicorn) -> int:
    """Load the model, start the workers and run the server on `sock` until it is stopped."""
    import torch

    from unetsr.core.errors import UnetsrError
    from unetsr.inference.upscaler import pick_device
    from unetsr.web.queue import JobQueue, Models

    try:
        device = pick_device(args.device)
    except ValueError as exc:
        return fail(prog, exc)
    workers = args.jobs or default_jobs(device.type)
    if device.type == "cpu":  # the cores are shared out between the photos upscaled at once
        torch.set_num_threads(max(1, cpu_cores() // workers))
    models = Models(args.checkpoint, device=str(device), tile=args.tile or None, tile_overlap=args.tile_overlap)
    try:
        models.get("auto")  # a missing or damaged checkpoint stops here, in one line, before the URL is shown
    except (UnetsrError, OSError, ValueError, RuntimeError) as exc:
        return fail(prog, exc)

    max_pixels = max(1, round(args.max_pixels * 1e6))
    folder = Path(tempfile.mkdtemp(prefix="unetsr-serve-"))
    hub = Hub()
    jobs = JobQueue(models, folder, workers=workers, max_pixels=max_pixels, listener=hub.publish)
    stopped = threading.Event()

    def stop() -> None:  # from the server's shutdown, and again on the way out: whichever comes first
        if not stopped.is_set():
            stopped.set()
            jobs.close()
            shutil.rmtree(folder, ignore_errors=True)

    loopback = is_loopback(args.host)
    allowed = sorted({*LOOPBACK_NAMES, args.host.lower()}) if loopback else None  # against DNS rebinding
    app = create_app(jobs, models, hub, max_upload=round(args.max_upload * 1e6), max_pixels=max_pixels,
                     allowed_hosts=allowed, on_stop=stop)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
                            lifespan="on")
    server = uvicorn.Server(config)
    url = url_of(sock)
    if not loopback:
        print(f"{prog}: warning: listening on {args.host}, so other machines can reach this page, upload photos "
              "and use this machine's processors; use --host 127.0.0.1 to keep it to this machine",
              file=sys.stderr)
    print(f"unetsr: serving {url} ({workers} photo{'s' * (workers != 1)} at a time on {device}); "
          "Ctrl-C to stop", flush=True)
    if args.open:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    in_main = threading.current_thread() is threading.main_thread()  # signals can only be handled there
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum)) if in_main else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
