"""Build the training photo set from Wikimedia Commons (by default its Valued images), politely and resumably.

    python -m unetsr.download --contact you@example.org --limit 200

Lists the categories with the Commons API (`unetsr.commons.listing`), writes a manifest recording each file's
licence and author (`unetsr.commons.manifest`), then fetches a rendition of at most --max-side pixels (or, with
--original, the SHA-1-checked original) with a few threads (`unetsr.commons.fetcher`). Every file is verified
before it takes its final name, so the output folder only ever holds whole images and a rerun skips
what is already there. This module is only the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from unetsr.cli import fail, int_in, one_line, positive_int, prog_name
from unetsr.core.errors import DownloadError, UnetsrError

DEFAULT_OUT = Path("data/valued/images")
DEFAULT_MANIFEST = Path("data/valued/manifest.csv")
DEFAULT_CONTACT = "no contact given"
# Shown in --help without importing the HTTP stack; tests check they match the library's values.
HELP_MAX_WORKERS = 4
HELP_RETRIES = 4


def build_parser() -> argparse.ArgumentParser:
    """The command-line options; data/valued/README.md documents each with examples."""
    p = argparse.ArgumentParser(
        prog=prog_name("download"),
        description="Download Wikimedia Commons photographs (default: Valued images) with a licence manifest.",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the images (default: %(default)s)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="manifest CSV (default: %(default)s)")
    p.add_argument("--category", action="append", help="category to list, repeatable (default: categories.txt)")
    p.add_argument("--limit", type=positive_int, help="at most this many files")
    p.add_argument("--max-side", type=positive_int, default=2048, help="longest side to fetch (default: %(default)s)")
    p.add_argument("--original", action="store_true", help="download originals and check their SHA-1")
    p.add_argument("--workers", type=positive_int, default=2,
                   help=f"parallel downloads, at most {HELP_MAX_WORKERS} (default: %(default)s)")
    p.add_argument("--retries", type=int_in(0, 100), default=None,
                   help=f"retries per request (default: {HELP_RETRIES})")
    p.add_argument("--refresh", action="store_true", help="list the categories again even if the manifest exists")
    p.add_argument("--dry-run", action="store_true", help="list and write the manifest, download nothing")
    p.add_argument("--api", default=None, help="MediaWiki api.php URL (default: Wikimedia Commons')")
    p.add_argument("--contact", help="e-mail or URL for the User-Agent (default: $UNETSR_CONTACT)")
    return p


def check_manifest_path(manifest: Path) -> None:
    """DownloadError (one line) unless a manifest can be written at `manifest`: checked before any listing."""
    from unetsr.commons.fetcher import prepare_folder

    if manifest.is_dir():
        raise DownloadError(f"--manifest {manifest} is a folder; name a .csv file")
    prepare_folder(manifest.parent)


def skipped_note(skipped: Counter[str]) -> str:
    """'3 skipped (image/svg+xml 1, rendition in image/gif 2)', or '0 skipped'."""
    reasons = [f"{one_line(reason)[:60]} {count}" for reason, count in skipped.most_common(6)]
    if len(skipped) > 6:
        reasons[-1] = "..."
    return f"{skipped.total()} skipped" + (f" ({', '.join(reasons)})" if reasons else "")


def _warn(message: str) -> None:
    """A one-line warning on stderr."""
    print(f"warning: {one_line(message)}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    """The CLI's work, raising UnetsrError for anything the user must fix."""
    from unetsr.commons import fetcher, http_client
    from unetsr.commons import listing as commons
    from unetsr.commons.categories import category_title, default_categories
    from unetsr.commons.manifest import check_renditions, read_manifest, write_manifest

    contact = (args.contact or os.environ.get("UNETSR_CONTACT", "")).strip()
    if not contact:
        _warn("no --contact or UNETSR_CONTACT; Wikimedia asks for one in the User-Agent")
    agent = http_client.user_agent(contact or DEFAULT_CONTACT)
    retry = http_client.DEFAULT_RETRY
    retry = retry if args.retries is None else replace(retry, retries=args.retries)
    limits = http_client.DEFAULT_LIMITS
    if args.workers > fetcher.MAX_WORKERS:
        print(f"note: --workers capped at {fetcher.MAX_WORKERS} to be gentle on the servers", file=sys.stderr)
    if not args.dry_run:
        fetcher.prepare_folder(args.out)  # before listing, so a bad --out costs no requests

    non_raster: int | None = None
    if args.manifest.exists() and not args.refresh:
        rows = read_manifest(args.manifest, warn=_warn)
        print(f"using {args.manifest} ({len(rows)} files); --refresh lists the categories again", file=sys.stderr)
    else:
        check_manifest_path(args.manifest)
        categories = [category_title(c) for c in args.category] if args.category else default_categories()
        rows, skipped = commons.list_categories(
            args.api or commons.DEFAULT_API, categories, agent=agent, max_side=args.max_side, limit=args.limit,
            retry=retry, limits=limits, warn=_warn,
        )
        write_manifest(rows, args.manifest)
        non_raster = skipped.total()
        print(one_line(f"wrote {args.manifest}: {len(rows)} raster files, {skipped_note(skipped)}"), file=sys.stderr)
    if args.limit is not None:
        rows = rows[: args.limit]
    if args.dry_run:
        print(f"dry run: {len(rows)} files listed in {args.manifest}, nothing downloaded")
        return 0
    if not args.original:
        check_renditions(rows, args.max_side, args.manifest)

    summary = fetcher.download_all(
        rows, args.out, agent=agent, original=args.original, workers=args.workers, retry=retry, limits=limits
    )
    summary = replace(summary, non_raster=non_raster)
    for failure in summary.failed:
        print(f"failed: {one_line(failure.title)}: {one_line(failure.reason)}", file=sys.stderr)
    print(summary.report())
    return 1 if summary.failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m unetsr.download`; returns 0, 1 (an error or failed files) or 130 (interrupted)."""
    args = build_parser().parse_args(argv)
    prog = prog_name("download")
    try:
        return _run(args)
    except UnetsrError as exc:
        return fail(prog, exc)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no partial files left, run again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
