"""`python -m unetsr.serve`: a local web page to upscale photos by drag and drop, with a before/after slider.

Runs offline on this machine: photos go only to this server (on 127.0.0.1 unless --host says otherwise),
are upscaled by the same library and pipeline as `python -m unetsr.infer`, and are deleted when removed
from the page or when the server stops. Needs the web extra: pip install 'unetsr[web]'."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import webbrowser
from pathlib import Path

from unetsr.cli import add_tiling_arguments, fail, float_in, int_in, prog_name
from unetsr.imaging.photos import DEFAULT_MAX_PIXELS
from unetsr.web.app import (
    CLIENT_TIMEOUT_S,
    LOOPBACK_NAMES,
    Hub,
    cpu_cores,
    create_app,
    default_jobs,
    is_loopback,
    listen,
    make_server,
    url_of,
)

EXTRA_HINT = "the web page needs Starlette and uvicorn: pip install 'unetsr[web]'"
STOP_GRACE_S = 1.0
"""On a stop, how long a photo being upscaled has to reach the end of its tile before the process leaves without it."""


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
    p.add_argument("--client-timeout", type=float_in(0, 3600, inclusive=False), default=CLIENT_TIMEOUT_S,
                   metavar="S", help="close a connection whose request header takes over S seconds, and refuse an "
                                     f"upload that pauses for S seconds (default {CLIENT_TIMEOUT_S:g})")
    p.add_argument("--job-timeout", type=float_in(0, 10_000, inclusive=False), default=60, metavar="MIN",
                   help="stop upscaling a photo after MIN minutes, at its next tile (default 60)")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: serves until Ctrl-C (exit 0) or SIGTERM (143); 1 when it cannot start, 2 for bad
    arguments, 130 for Ctrl-C before the page is served."""
    args = build_parser().parse_args(argv)
    prog = prog_name("serve")
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return fail(prog, EXTRA_HINT)
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        return fail(prog, f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    try:
        with sock:
            return serve(args, sock, prog)
    except KeyboardInterrupt:  # while the model loads
        return 130


def serve(args: argparse.Namespace, sock: socket.socket, prog: str) -> int:
    """Load the model, start the workers and run the server on `sock` until it is stopped; then cancel the jobs,
    give a running tile STOP_GRACE_S to end and delete the work folder. A worker still inside the model after
    that cannot be stopped from Python, and the interpreter's exit under it would abort (exit 134): the process
    then leaves at once with its exit code (`leave_now`), nothing left on disk."""
    import torch

    from unetsr.core.errors import UnetsrError
    from unetsr.inference.upscaler import pick_device
    from unetsr.web.models import Models
    from unetsr.web.queue import JobQueue

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
    loopback = is_loopback(args.host)
    allowed = sorted({*LOOPBACK_NAMES, args.host.lower()}) if loopback else None  # against DNS rebinding
    in_main = threading.current_thread() is threading.main_thread()  # signals can only be handled there
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    if in_main:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    code, folder, jobs, idle = 0, None, None, True
    try:
        folder = Path(tempfile.mkdtemp(prefix="unetsr-serve-"))
        hub = Hub()
        jobs = JobQueue(models, folder, workers=workers, max_pixels=max_pixels, job_timeout=args.job_timeout * 60,
                        listener=hub.publish)
        app = create_app(jobs, models, hub, max_upload=round(args.max_upload * 1e6), max_pixels=max_pixels,
                         allowed_hosts=allowed, on_stop=jobs.cancel_all, client_timeout=args.client_timeout)
        server = make_server(app, hub, client_timeout=args.client_timeout)
        url = url_of(sock)
        if not loopback:
            print(f"{prog}: warning: listening on {args.host}, so other machines can reach this page, upload photos "
                  "and use this machine's processors; use --host 127.0.0.1 to keep it to this machine",
                  file=sys.stderr)
        print(f"unetsr: serving {url} ({workers} photo{'s' * (workers != 1)} at a time on {device}); "
              "Ctrl-C to stop", flush=True)
        if args.open:
            opener = threading.Timer(0.5, webbrowser.open, (url,))
            opener.daemon = True  # a stop within the half second does not wait for it
            opener.start()
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        for sig in handlers:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        if jobs is not None:
            idle = jobs.close(STOP_GRACE_S)
        if folder is not None:
            remove_folder(folder)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if not idle and in_main:
        leave_now(code)
    return code


def remove_folder(folder: Path) -> None:
    """Delete the work folder, again while a worker that is still finishing writes into it (a few tries)."""
    for _ in range(20):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.05)


def leave_now(code: int) -> None:
    """End the process at once with `code`, skipping the interpreter's clean-up, which aborts the process when a
    thread is still inside torch ('terminate called without an active exception', exit 134)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
