"""Pack training and validation photos into a small folder of JPEGs that can travel to a lent GPU machine.

    python tools/pack_photos.py --out .carry/photos --pylib .carry/pylib --budget-mb 56 \\
        --train ../shared/photos/train --val ../shared/photos/val

A lent machine receives a copy of the working tree plus the ignored folders named in its `carry`, 64 MiB in
all, so the photos travel re-encoded: JPEG quality 95 with full-resolution chroma (4:4:4), each shrunk
(LANCZOS, aspect kept, never enlarged) so that its long side is at most L, where L is the largest of SIDES
whose total fits --budget-mb. The folder to pack into is `.carry/photos` at the repository root: git
ignores `/.carry/`, and tools/accelerator_run.sh reads `.carry/photos/train` and `.carry/photos/val`.
`--pylib .carry/pylib` also copies pypng's `png.py` there (pure Python; unetsr reads PNGs with it, and the
lent machine's Python may not have it); accelerator_run.sh uses it when `import png` fails.

Sizes are measured, not guessed: each photo is decoded once and encoded at every side still in the running,
and a side drops out as soon as its running total passes the budget; the photos are then decoded again and
written at the chosen side into a staging folder inside --out, whose total is checked before it replaces
--out's train/ and val/. Names are `<folder index>_<path in the folder>.jpg`, so photos of the same name
in different folders stay apart. Bad input (a missing folder, no photos, a budget too small for the
smallest side, a non-empty --out without --overwrite) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import NoReturn, Sequence

if __package__ in (None, ""):  # run as `python tools/pack_photos.py`: import unetsr from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image

from unetsr.core.errors import UnetsrError, one_line
from unetsr.core.fileio import atomic_write
from unetsr.core.values import float_in
from unetsr.imaging.photos import read_image

PROG = "pack_photos"
SIDES = (4096, 3072, 2560, 2048, 1792, 1536, 1280, 1024, 896, 768)
"""The long sides tried, largest first; the first whose total fits the budget is used."""
QUALITY = 95
MIB = 2**20
STAGE_PREFIX = ".pack-"


class PackError(Exception):
    """Input that cannot be packed: reported as one line, exit status 2."""


@dataclass(frozen=True)
class Source:
    """One photo to pack: where it is read from and the name it is written under."""

    path: Path
    role: str  # "train" or "val"
    name: str


@dataclass(frozen=True)
class Packed:
    """What a packing wrote."""

    train: int
    val: int
    side: int
    total_bytes: int
    skipped: tuple[str, ...]


def list_sources(folders: Sequence[str | Path], role: str) -> list[Source]:
    """The photos under `folders`, each named `<folder index>_<path in the folder>.jpg` (other characters than
    letters, digits, `.`, `_` and `-` as `_`), names unique."""
    from unetsr.training.data import find_images  # noqa: PLC0415 - imports torch: only once the input is checked

    sources: list[Source] = []
    taken: set[str] = set()
    for index, folder in enumerate(folders):
        try:
            paths = find_images([folder])
        except FileNotFoundError as exc:
            raise PackError(f"--{role} {exc}") from None
        for path in paths:
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(path.relative_to(folder).with_suffix("").parts))
            name, n = f"{index}_{stem}.jpg", 1
            while name.lower() in taken:  # a.png beside a.jpg, or a_b.png beside a/b.png
                n += 1
                name = f"{index}_{stem}_{n}.jpg"
            taken.add(name.lower())
            sources.append(Source(path, role, name))
    if not sources:
        raise PackError(f"no photos in --{role} {' '.join(str(f) for f in folders)}")
    return sources


def load(path: Path) -> tuple[Image.Image, bytes | None]:
    """The photo upright as an 8-bit RGB image, and its ICC profile (kept, so its colours mean the same)."""
    picture = read_image(path)
    pixels = np.round(np.clip(picture.rgb, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB"), picture.icc_profile


def shrink(image: Image.Image, side: int) -> Image.Image:
    """`image` with its long side at most `side` (LANCZOS, aspect kept); never enlarged."""
    width, height = image.size
    long = max(width, height)
    if long <= side:
        return image
    size = (side, max(1, round(height * side / width))) if width >= height else \
        (max(1, round(width * side / height)), side)
    return image.resize(size, Image.LANCZOS)


def encode(image: Image.Image, icc: bytes | None) -> bytes:
    """`image` as JPEG quality 95, 4:4:4 chroma, optimised Huffman tables."""
    buffer = BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    image.save(buffer, "JPEG", quality=QUALITY, subsampling=0, optimize=True, **extra)
    return buffer.getvalue()


def choose_side(sources: Sequence[Source], budget: int) -> tuple[int, dict[Path, str]]:
    """The largest of SIDES at which every photo fits `budget` bytes, and why each unreadable photo is."""
    alive, totals, unreadable = list(SIDES), dict.fromkeys(SIDES, 0), {}
    for done, source in enumerate(sources, 1):
        try:
            image, icc = load(source.path)
        except UnetsrError as exc:
            unreadable[source.path] = str(exc)
            continue
        own = None  # the size at the photo's own resolution, shared by every side at least its long side
        for side in alive:
            if side >= max(image.size):
                own = own if own is not None else len(encode(image, icc))
                totals[side] += own
            else:
                totals[side] += len(encode(shrink(image, side), icc))
        alive = [side for side in alive if totals[side] <= budget]
        if not alive:
            raise PackError(f"the photos do not fit {budget / MIB:g} MiB even at a long side of {SIDES[-1]} px "
                            f"(the first {done} of {len(sources)} take {totals[SIDES[-1]] / MIB:.1f} MiB); "
                            "raise --budget-mb or pack fewer photos")
    return alive[0], unreadable


def overlaps(a: Path, b: Path) -> bool:
    """True when one folder is the other or lies inside it."""
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def check_paths(out: Path, train: Sequence[str | Path], val: Sequence[str | Path], overwrite: bool) -> None:
    """PackError unless every photo folder exists and `out` can receive the photos: a folder of its own that
    is empty or may be overwritten."""
    for role, folders in (("train", train), ("val", val)):
        for folder in folders:
            if not Path(folder).is_dir():
                raise PackError(f"--{role} {folder}: not a folder of images")
    if out.exists() and not out.is_dir():
        raise PackError(f"--out {out} is a file, not a folder")
    for folder in [*train, *val]:
        if overlaps(out, Path(folder)):
            raise PackError(f"--out {out} and the photo folder {folder} overlap; pack into a folder of its own")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise PackError(f"--out {out} is not empty; pass --overwrite to replace its train/ and val/")


def pack(train: Sequence[str | Path], val: Sequence[str | Path], out: str | Path, budget_bytes: int,
         overwrite: bool = False) -> Packed:
    """Write the photos of `train` and `val` as JPEGs into `out`/train and `out`/val within `budget_bytes`."""
    out = Path(out)
    check_paths(out, train, val, overwrite)
    sources = list_sources(train, "train") + list_sources(val, "val")
    side, unreadable = choose_side(sources, budget_bytes)
    sources = [s for s in sources if s.path not in unreadable]
    for role in ("train", "val"):
        if not any(s.role == role for s in sources):
            raise PackError(f"none of the --{role} photos can be read")
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out))
    try:
        total = 0
        for role in ("train", "val"):
            (stage / role).mkdir()
        for source in sources:
            image, icc = load(source.path)
            data = encode(shrink(image, side), icc)
            atomic_write(stage / source.role / source.name, lambda f, data=data: f.write(data))
            total += len(data)
        written = sum(p.stat().st_size for p in stage.rglob("*.jpg"))
        if written != total or written > budget_bytes:
            raise UnetsrError(f"the packed photos take {written / MIB:.2f} MiB, over the "
                              f"{budget_bytes / MIB:g} MiB budget; nothing was replaced")
        for role in ("train", "val"):
            shutil.rmtree(out / role, ignore_errors=True)
            (stage / role).rename(out / role)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for leftover in out.glob(f"{STAGE_PREFIX}*"):  # staging folders of packings that were killed
        shutil.rmtree(leftover, ignore_errors=True)
    skipped = tuple(unreadable.values())
    return Packed(sum(s.role == "train" for s in sources), sum(s.role == "val" for s in sources), side, total,
                  skipped)


def copy_pypng(folder: str | Path) -> Path:
    """Copy pypng's png.py into `folder`, for a Python that lacks it."""
    spec = importlib.util.find_spec("png")
    if spec is None or spec.origin is None:
        raise PackError("--pylib: pypng (png.py) is not installed here; pip install pypng")
    source, folder = Path(spec.origin), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as f:
        return atomic_write(folder / "png.py", lambda out: shutil.copyfileobj(f, out))


class OneLineParser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like every other error of this tool."""

    def error(self, message: str) -> NoReturn:
        """Print `pack_photos: error: message` and exit with status 2."""
        self.exit(2, f"{PROG}: error: {one_line(message)}\n")


def build_parser() -> OneLineParser:
    """The command-line options."""
    p = OneLineParser(prog="python tools/pack_photos.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write train/ and val/ into (use .carry/photos)")
    p.add_argument("--train", nargs="+", required=True, metavar="DIR", help="folder(s) of training photos")
    p.add_argument("--val", nargs="+", required=True, metavar="DIR", help="folder(s) of validation photos")
    p.add_argument("--budget-mb", type=float_in(0, inclusive=False), default=56.0, metavar="MIB",
                   help="most mebibytes (2^20 bytes) the packed photos may take (default: %(default)g)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the train/ and val/ of a non-empty --out (anything else there is kept)")
    p.add_argument("--pylib", metavar="DIR", help="also copy pypng's png.py into DIR (use .carry/pylib)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Pack the photos and print one summary line; 2 on bad input, 1 on any other failure, with one line."""
    args = build_parser().parse_args(argv)
    try:
        if args.pylib:
            copy_pypng(args.pylib)
        packed = pack(args.train, args.val, args.out, int(args.budget_mb * MIB), args.overwrite)
    except PackError as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (UnetsrError, OSError) as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; {args.out} is as it was", file=sys.stderr)
        return 130
    if packed.skipped:
        more = f"; and {len(packed.skipped) - 3} more" if len(packed.skipped) > 3 else ""
        print(f"{PROG}: skipped {len(packed.skipped)} unreadable photos: "
              f"{one_line('; '.join(packed.skipped[:3]))}{more}", file=sys.stderr)
    print(f"{PROG}: {packed.train + packed.val} photos ({packed.train} train, {packed.val} val), long side at most "
          f"{packed.side} px, {packed.total_bytes / MIB:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
