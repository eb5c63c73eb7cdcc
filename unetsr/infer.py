"""`python -m unetsr.infer`: upscale photos (files, folders or glob patterns) with a unetsr checkpoint.

Each result is written beside its input as <stem>_x<S>.<ext>, or under -o. Alpha, grey, 16-bit depth, ICC
profiles and EXIF are kept. A file that cannot be read or written is reported in one line and the others
are still processed; the exit status is 1 if any file was not upscaled."""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from .errors import ImageError, UnetsrError, first_line
from .images import DEFAULT_MAX_PIXELS, OUTPUT_FORMATS, is_image_path, read_image, write_image

if TYPE_CHECKING:  # torch is imported only once the arguments are good: -h and usage errors stay instant
    from .upscaler import Upscaler

PROG = "unetsr.infer"
MAX_OUTPUT_MEGAPIXELS = 400  # ~5 GB of float32 output; beyond that a run would exhaust a laptop's memory
FORMATS = ("png", "jpg", "webp")
_GLOB_CHARS = frozenset("*?[")


# --- pure helpers: arguments, discovery, output names -------------------------------------------------------


def _number_above(minimum: float, what: str):
    """An argparse type: a finite number greater than `minimum`."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value <= minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


parse_scale = _number_above(1, "a number greater than 1")
parse_megapixels = _number_above(0, "a positive number of megapixels")


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def parse_quality(text: str) -> int:
    """argparse type for --quality: 1..100."""
    value = _int_at_least(1)(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100, got {value}")
    return value


def parse_format(text: str) -> str:
    """argparse type for --format: png, jpg (or jpeg) or webp, any case."""
    name = text.lower().lstrip(".")
    name = "jpg" if name == "jpeg" else name
    if name not in FORMATS:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FORMATS)}, got {text!r}")
    return name


def format_scale(scale: float) -> str:
    """2.0 -> '2', 1.5 -> '1.5', 4/3 -> '1.333333': the S of an output name."""
    return f"{scale:.6f}".rstrip("0").rstrip(".")


def output_suffix(scale: float, fmt: str | None) -> str:
    """The ending of output names: '_x2.png', '_x1.5.jpg'."""
    ext = OUTPUT_FORMATS["jpeg" if fmt == "jpg" else (fmt or "png")]
    return f"_x{format_scale(scale)}{ext}"


def is_own_output(path: str | Path, suffix: str) -> bool:
    """Whether a file looks like one of our outputs for this suffix (skipped when scanning folders)."""
    name = Path(path).name.lower()
    return name.endswith(suffix.lower()) and len(name) > len(suffix)


def has_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def glob_root(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading components without wildcards."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if has_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def path_key(path: str | Path) -> str:
    """A comparable identity for a path, whether or not it exists yet."""
    return os.path.normcase(str(Path(path).resolve()))


@dataclass(frozen=True)
class Source:
    """An input image: `path` as the user spelled it, `rel` its place under the folder or glob it came from
    (mirrored under an output folder; just the file name for a file named directly)."""

    path: Path
    rel: Path


@dataclass(frozen=True)
class Problem:
    """An input argument that yields nothing to upscale."""

    name: str
    reason: str


def _scan_folder(folder: Path, recursive: bool, own_suffix: str) -> tuple[list[Path], int]:
    """Image files in a folder (and its subfolders if `recursive`), sorted; hidden files and our own
    outputs left out. Also returns how many own outputs were passed over."""
    found, outputs = [], 0
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            if name.startswith(".") or not is_image_path(name):
                continue
            if is_own_output(name, own_suffix):
                outputs += 1
                continue
            path = Path(top) / name
            if path.is_file():
                found.append(path)
    return found, outputs


def collect_inputs(args: Sequence[str], recursive: bool, own_suffix: str) -> tuple[list[Source], list[Problem]]:
    """Expand files, folders and glob patterns into distinct input images, in order, plus the arguments
    that gave none (missing files, empty folders, patterns that match nothing)."""
    sources: list[Source] = []
    problems: list[Problem] = []
    seen: set[str] = set()

    def add(path: Path, rel: Path) -> None:
        key = path_key(path)
        if key not in seen:
            seen.add(key)
            sources.append(Source(path, rel))

    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files, outputs = _scan_folder(path, recursive, own_suffix)
            if not files:
                extra = f" (besides {outputs} earlier output{'s' * (outputs != 1)})" if outputs else ""
                sub = " or its subfolders" if recursive else ""
                problems.append(Problem(arg, f"no image files in this folder{sub}{extra}"))
            for file in files:
                add(file, file.relative_to(path))
        elif path.exists():
            add(path, Path(path.name))
        elif has_glob(arg):
            root = glob_root(arg)
            matches = sorted(m for m in glob.glob(arg, recursive=True) if is_image_path(m) and Path(m).is_file())
            if not matches:
                problems.append(Problem(arg, "no image files match this pattern"))
            for match in matches:
                m = Path(match)
                try:
                    rel = m.relative_to(root)
                except ValueError:
                    rel = Path(m.name)
                add(m, rel)
        else:
            problems.append(Problem(arg, "no such file or folder"))
    return sources, problems


def output_is_file(output: str, inputs: Sequence[str]) -> bool:
    """-o names a file when it is not an existing folder, does not end with a slash, and the inputs are one
    file (named, not found through a folder or a pattern); otherwise it is a folder."""
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        return False
    for arg in inputs:
        if Path(arg).is_dir() or (not Path(arg).exists() and has_glob(arg)):
            return False
    return len({path_key(arg) for arg in inputs}) == 1


def output_path(source: Source, suffix: str, output: Path | None = None, output_is_a_file: bool = False) -> Path:
    """Where a source's result goes: beside it by default, `output` itself, or mirrored under folder `output`."""
    if output is None:
        return source.path.with_name(source.path.stem + suffix)
    if output_is_a_file:
        return output
    return output / source.rel.parent / (source.rel.stem + suffix)


@dataclass(frozen=True)
class Job:
    source: Source
    dest: Path
    refusal: str | None = None  # why this file is skipped before any work


def plan_jobs(sources: Sequence[Source], dest_of) -> list[Job]:
    """Pair each source with its output; refuse outputs that would replace an input or another output."""
    inputs = {path_key(s.path) for s in sources}
    claimed: dict[str, Path] = {}
    jobs = []
    for source in sources:
        dest = dest_of(source)
        key = path_key(dest)
        if key in inputs:
            what = "the input itself" if key == path_key(source.path) else "also an input"
            refusal = f"output {dest} is {what}; refusing to write over an input"
        elif key in claimed:
            refusal = f"output {dest} conflicts with the output of {claimed[key]}"
        else:
            claimed[key] = source.path
            refusal = None
        jobs.append(Job(source, dest, refusal))
    return jobs


# --- the command line --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Upscale photos (files, folders or glob patterns) with a unetsr checkpoint.",
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output file (one input file) or folder (created if missing; a trailing slash or an "
                        "existing folder always means a folder); default: beside each input")
    p.add_argument("--scale", type=parse_scale, metavar="S",
                   help="upscaling factor, any number > 1 (default: the model's own scale)")
    p.add_argument("--checkpoint", metavar="PATH", help="unetsr checkpoint (default: the shipped model)")
    p.add_argument("--tile", type=_int_at_least(0), default=512, metavar="N",
                   help="process in N×N tiles to bound memory; 0 = whole image at once (default 512)")
    p.add_argument("--tile-overlap", type=_int_at_least(0), default=32, metavar="M",
                   help="context pixels around each tile (default 32)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                   help="default auto: cuda, then mps, then cpu")
    p.add_argument("--half", action="store_true", help="float16 on a GPU (ignored on the CPU)")
    p.add_argument("--format", type=parse_format, metavar="{png,jpg,webp}",
                   help="output format (default png, or from the suffix of -o FILE)")
    p.add_argument("--quality", type=parse_quality, default=95, metavar="Q",
                   help="JPEG/WebP quality 1-100 (default 95)")
    p.add_argument("--recursive", action="store_true", help="also take images in subfolders of folder inputs")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument("--max-pixels", type=parse_megapixels, default=DEFAULT_MAX_PIXELS / 1e6, metavar="N",
                   help=f"refuse inputs larger than N megapixels (default {DEFAULT_MAX_PIXELS / 1e6:g})")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-file lines; only problems")
    return p


def _say(text: str, stream=None) -> None:
    """Print a line without breaking a progress bar."""
    tqdm.write(text, file=stream or sys.stderr)


def _times() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "×".encode(encoding)
        return "×"
    except (UnicodeEncodeError, LookupError):
        return "x"


def load_upscaler(args: argparse.Namespace) -> Upscaler:
    """The Upscaler the arguments ask for; --half is dropped (with a note) on the CPU."""
    from .upscaler import Upscaler, pick_device

    device = pick_device(args.device)
    half = args.half and device.type != "cpu"
    upscaler = Upscaler.from_checkpoint(args.checkpoint, device=str(device), half=half,
                                        tile=args.tile or None, tile_overlap=args.tile_overlap)
    if args.half and not half and not args.quiet:
        _say(f"{PROG}: note: --half is ignored on the CPU; computing in float32")
    return upscaler


def _ensure_folder(folder: Path) -> None:
    """Create an output folder (and its parents), or raise ImageError saying why it cannot be."""
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                raise ImageError(f"cannot write into {folder}: {p} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create folder {folder}: {exc.strerror or first_line(exc)}") from exc


def upscale_file(upscaler: Upscaler, job: Job, args: argparse.Namespace, scale: float,
                 progress: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """Read, upscale and write one image; returns its (width, height) before and after."""
    picture = read_image(job.source.path, max_pixels=max(1, round(args.max_pixels * 1e6)))
    out_mp = picture.rgb.shape[0] * picture.rgb.shape[1] * scale**2 / 1e6
    if out_mp > MAX_OUTPUT_MEGAPIXELS:
        raise ImageError(f"{job.source.path}: the x{format_scale(scale)} output would be {out_mp:.0f} MP, "
                         f"over the {MAX_OUTPUT_MEGAPIXELS} MP output limit; use a smaller --scale")
    _ensure_folder(job.dest.parent)
    if picture.alpha is None:
        rgb, alpha = upscaler.upscale_array(picture.rgb, scale, progress=progress), None
    else:
        both = upscaler.upscale_array(np.concatenate([picture.rgb, picture.alpha[..., None]], axis=2),
                                      scale, progress=progress)
        rgb, alpha = both[..., :3], np.ascontiguousarray(both[..., 3])
    result = replace(picture, rgb=rgb, alpha=alpha)
    write_image(job.dest, result, format=args.format, quality=args.quality, overwrite=args.overwrite,
                source=job.source.path)
    (h, w), (oh, ow) = picture.rgb.shape[:2], rgb.shape[:2]
    return (w, h), (ow, oh)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    out_is_file = args.output is not None and output_is_file(args.output, args.inputs)
    if out_is_file:
        suffix = Path(args.output).suffix.lower()
        implied = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp"}.get(suffix)
        if args.format is None and suffix and implied is None:
            parser.error(f"-o {args.output}: cannot write {suffix} files; use .png, .jpg or .webp, or --format")
        if args.format is not None and implied is not None and implied != args.format:
            parser.error(f"-o {args.output} does not match --format {args.format}")

    try:
        upscaler = load_upscaler(args)
    except (UnetsrError, OSError, ValueError, RuntimeError) as exc:
        _say(f"{PROG}: error: {first_line(exc)}")
        return 1

    scale = args.scale or float(upscaler.scale)
    suffix = output_suffix(scale, args.format)
    sources, problems = collect_inputs(args.inputs, args.recursive, suffix)
    output = None if args.output is None else Path(args.output)
    jobs = plan_jobs(sources, lambda s: output_path(s, suffix, output, out_is_file))

    upscaled = failed = skipped = 0
    for problem in problems:
        _say(f"{PROG}: failed {problem.name}: {problem.reason}")
        failed += 1
    times = _times()
    progress = not args.quiet and sys.stderr.isatty()
    with tqdm(total=len(jobs), desc="upscaling", unit="file", file=sys.stderr,
              disable=args.quiet or len(jobs) < 2 or None) as bar:
        for job in jobs:
            name = str(job.source.path)
            refusal = job.refusal
            if refusal is None and not args.overwrite and job.dest.exists():
                refusal = f"{job.dest} already exists; use --overwrite to replace it"
            if refusal is not None:
                _say(f"{PROG}: skipped {name}: {refusal}")
                skipped += 1
                bar.update()
                continue
            start = time.perf_counter()
            try:
                (w, h), (ow, oh) = upscale_file(upscaler, job, args, scale, progress)
            except (UnetsrError, OSError, ValueError) as exc:
                _say(f"{PROG}: failed {name}: {first_line(exc)}")
                failed += 1
            except Exception as exc:  # unexpected: still one line, and the other files go on
                _say(f"{PROG}: failed {name}: {type(exc).__name__}: {first_line(exc)}")
                failed += 1
            else:
                upscaled += 1
                if not args.quiet:
                    _say(f"{name} -> {job.dest} ({w}{times}{h} -> {ow}{times}{oh}, "
                         f"{time.perf_counter() - start:.1f} s)", sys.stdout)
            bar.update()

    if not args.quiet or failed or skipped:
        _say(f"{PROG}: upscaled {upscaled}, failed {failed}, skipped {skipped}")
    return 1 if failed or skipped else 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 when every image was upscaled, 1 otherwise, 2 for bad arguments, 130 on Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, parser)
    except KeyboardInterrupt:
        _say(f"{PROG}: interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
