"""What `infer` will do, decided before any pixel is touched: the input files, their output paths, and the
refusals (outputs that would replace an input or each other, outputs too large to compute).

Pure planning on plain values, no torch: `infer` and the web page are thin fronts over these functions.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unetsr.core.errors import one_line
from unetsr.imaging.formats import (
    OUTPUT_FORMATS,
    format_name,
    format_of_suffix,
    is_image_path,
)
from unetsr.imaging.photos import file_problem

MAX_OUTPUT_MEGAPIXELS = 400  # ~5 GB of float32 output; beyond that a run would exhaust a laptop's memory
FORMATS = tuple(OUTPUT_FORMATS)
MAX_SCALE = 16  # x16 is already four passes of an x2 model; beyond it the 400 MP output limit is near anyway
_GLOB_CHARS = frozenset("*?[")


def parse_format(text: str) -> str:
    """argparse type for --format: png, jpg (or jpeg) or webp, any case."""
    if (name := format_name(text)) is None:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FORMATS)}, got {one_line(text)!r}")
    return name


@dataclass(frozen=True)
class Source:
    """An input image: `path` as the user spelled it, `rel` its place under the folder or glob it came from
    (mirrored under an output folder; just the file name for a file named directly)."""

    path: Path
    rel: Path


@dataclass(frozen=True)
class Problem:
    """An input argument, or a file found through one, that yields nothing to upscale."""

    name: str
    reason: str


@dataclass(frozen=True)
class Job:
    """One source and its output. `refusal`: why it must not be done (a failure); `skip`: why it need not be
    (its output exists already, a rerun)."""

    source: Source
    dest: Path
    refusal: str | None = None
    skip: str | None = None


def format_scale(scale: float) -> str:
    """2.0 -> '2', 1.5 -> '1.5', 4/3 -> '1.333333': the S of an output name."""
    return f"{scale:.6f}".rstrip("0").rstrip(".")


def output_suffix(scale: float, fmt: str | None) -> str:
    """The ending of output names: '_x2.png', '_x1.5.jpg'."""
    ext = OUTPUT_FORMATS[fmt or "png"]
    return f"_x{format_scale(scale)}{ext}"


def is_own_output(path: str | Path, suffix: str) -> bool:
    """Whether a file looks like one of our outputs for this suffix (skipped when scanning folders)."""
    name = Path(path).name.lower()
    return name.endswith(suffix.lower()) and len(name) > len(suffix)


def has_glob(text: str) -> bool:
    """Whether an argument holds glob wildcards (* ? [)."""
    return any(c in _GLOB_CHARS for c in text)


def glob_root(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading components without wildcards."""
    fixed = []
    for part in Path(pattern).parts[:-1]:
        if has_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def spelling_key(path: str | Path) -> str:
    """A path as an absolute, normalised name: two names for one file (a link) stay two inputs."""
    return os.path.normcase(os.path.abspath(path))


def file_key(path: str | Path) -> str:
    """Where a path really leads (links followed), whether or not it exists yet: what must not be written over."""
    return os.path.normcase(str(Path(path).resolve()))


def _scan_folder(folder: Path, recursive: bool, own_suffix: str) -> tuple[list[Path], int]:
    """Image-named entries of a folder (and its subfolders if `recursive`), sorted; hidden files and our own
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
            found.append(Path(top) / name)
    return found, outputs


def collect_inputs(args: Sequence[str], recursive: bool, own_suffix: str) -> tuple[list[Source], list[Problem]]:
    """Expand files, folders and glob patterns into distinct input images, in order, plus what gave none
    (missing files, empty folders, patterns that match nothing, FIFOs and devices, which are never opened).

    Only identical paths are merged: a file and a link to it are two inputs with two outputs."""
    sources: list[Source] = []
    problems: list[Problem] = []
    seen: set[str] = set()

    def add(path: Path, rel: Path) -> None:
        if (key := spelling_key(path)) in seen:
            return
        seen.add(key)
        if (problem := file_problem(path)) is not None:
            problems.append(Problem(str(path), problem))
        else:
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
        elif os.path.lexists(path):
            add(path, Path(path.name))
        elif has_glob(arg):
            root = glob_root(arg)
            matches = sorted(m for m in glob.glob(arg, recursive=True) if is_image_path(m) and not os.path.isdir(m))
            if not matches:
                problems.append(Problem(arg, "no image files match this pattern"))
            for match in map(Path, matches):
                try:
                    rel = match.relative_to(root)
                except ValueError:
                    rel = Path(match.name)
                add(match, rel)
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
    return len({spelling_key(arg) for arg in inputs}) == 1


def output_file_problem(output: str, fmt: str | None) -> str | None:
    """Why `-o FILE` cannot be written with `--format fmt` (an unknown suffix, or one that contradicts it)."""
    suffix = Path(output).suffix.lower()
    implied = format_of_suffix(output)
    if fmt is None and suffix and implied is None:
        return f"-o {output}: cannot write {suffix} files; use .png, .jpg or .webp, or --format"
    if fmt is not None and implied is not None and implied != fmt:
        return f"-o {output} does not match --format {fmt}"
    return None


def output_path(source: Source, suffix: str, output: Path | None = None, output_is_a_file: bool = False) -> Path:
    """Where a source's result goes: beside it by default, `output` itself, or mirrored under folder `output`."""
    if output is None:
        return source.path.with_name(source.path.stem + suffix)
    if output_is_a_file:
        return output
    return output / source.rel.parent / (source.rel.stem + suffix)


def plan_jobs(sources: Sequence[Source], suffix: str, output: Path | None = None, output_is_a_file: bool = False,
              overwrite: bool = False) -> list[Job]:
    """Pair each source with its output (see `output_path`); refuse outputs that would replace an input or
    another source's output, and skip existing outputs unless `overwrite`."""
    inputs = {file_key(s.path) for s in sources}
    claimed: dict[str, Path] = {}
    jobs = []
    for source in sources:
        dest = output_path(source, suffix, output, output_is_a_file)
        key = file_key(dest)
        refusal = skip = None
        if key in inputs:
            what = "the input itself" if key == file_key(source.path) else "also an input"
            refusal = f"output {dest} is {what}; refusing to write over an input"
        elif key in claimed:
            refusal = f"output {dest} conflicts with the output of {claimed[key]}"
        else:
            claimed[key] = source.path
            if not overwrite and os.path.lexists(dest):
                skip = f"{dest} already exists; use --overwrite to replace it"
        jobs.append(Job(source, dest, refusal, skip))
    return jobs


def size_problem(height: int, width: int, scale: float, largest: tuple[int, int] | None = None,
                 limit_mp: float = MAX_OUTPUT_MEGAPIXELS) -> str | None:
    """Why an H×W input must not be upscaled by `scale`: its output, or `largest`, the biggest intermediate
    image the model computes on the way (several passes, then a resize), would be over `limit_mp` megapixels."""
    final_mp = max(1, round(height * scale)) * max(1, round(width * scale)) / 1e6
    largest_mp = math.prod(largest) / 1e6 if largest else final_mp
    if final_mp > limit_mp:
        return (f"the x{format_scale(scale)} output would be {final_mp:.0f} MP, over the {limit_mp:g} MP output "
                "limit; use a smaller --scale")
    if largest_mp > limit_mp:
        return (f"the x{format_scale(scale)} output passes through a {largest_mp:.0f} MP intermediate image, over "
                f"the {limit_mp:g} MP limit; use a smaller --scale")
    return None
