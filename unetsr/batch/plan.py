"""What `infer` will do, decided before any pixel is touched: the input files, their output paths, and the
refusals (outputs that would replace an input or each other, outputs too large to compute).

Pure planning on plain values, no torch: `infer` and the web page are thin fronts over these functions. The
only files opened are the candidates of a folder scan or a glob, for their metadata alone: earlier unetsr
outputs carry a marker (imaging.metadata) and are passed over, whatever their name, scale or format.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unetsr.core.errors import one_line
from unetsr.imaging.formats import (
    OUTPUT_FORMATS,
    UNSUPPORTED_SUFFIXES,
    format_name,
    format_of_suffix,
    is_image_path,
    unsupported_reason,
)
from unetsr.imaging.metadata import is_unetsr_output
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


@dataclass
class Inputs:
    """What the INPUT arguments hold: the sources to upscale, the arguments or files that give nothing
    (failures), and what was passed over in folders and patterns (not failures): earlier unetsr outputs,
    and files of formats unetsr cannot read, counted by suffix."""

    sources: list[Source] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    own_outputs: list[Path] = field(default_factory=list)
    unsupported: Counter[str] = field(default_factory=Counter)

    def passed_over(self) -> list[str]:
        """One line for each kind of file passed over: 'passed over 3 .heic files: HEIC is not supported; ...'."""
        lines = []
        if n := len(self.own_outputs):
            lines.append(f"passed over {n} earlier unetsr output{'s' * (n != 1)} (name a file to upscale it again)")
        for suffix, n in sorted(self.unsupported.items()):
            lines.append(f"passed over {n} {suffix} file{'s' * (n != 1)}: {unsupported_reason(suffix)}")
        return lines


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


def mirrored(path: Path, root: Path) -> Path:
    """Where `path` sits under `root`, to be mirrored under an output folder: a plain relative path that can
    never climb out of it (`..` resolved by name; a path that leaves `root` is kept by its file name alone)."""
    try:
        rel = Path(os.path.relpath(os.path.normpath(path), os.path.normpath(root)))
    except ValueError:  # another drive (Windows)
        return Path(path.name)
    return rel if _stays_inside(rel) else Path(path.name)


def _stays_inside(rel: Path) -> bool:
    """Whether a relative path, joined to a folder, stays inside it (no root, no `..`, not the folder itself)."""
    return not rel.is_absolute() and not rel.anchor and ".." not in rel.parts and rel.name not in ("", ".")


def spelling_key(path: str | Path) -> str:
    """A path as an absolute, normalised name: two names for one file (a link) stay two inputs."""
    return os.path.normcase(os.path.abspath(path))


def file_key(path: str | Path) -> str:
    """Where a path really leads (links followed), whether or not it exists yet: what must not be written over."""
    return os.path.normcase(str(Path(path).resolve()))


def _scan_folder(folder: Path, recursive: bool) -> tuple[list[Path], Counter[str]]:
    """Image-named entries of a folder (and its subfolders if `recursive`), sorted, hidden files left out;
    and how many files of each unsupported suffix (.heic, ...) were passed over."""
    found, unsupported = [], Counter()
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            if name.startswith("."):
                continue
            if is_image_path(name):
                found.append(Path(top) / name)
            elif (suffix := Path(name).suffix.lower()) in UNSUPPORTED_SUFFIXES:
                unsupported[suffix] += 1
    return found, unsupported


def _nothing_found(what: str, own_outputs: int, unsupported: Counter[str]) -> str:
    """Why a folder or a pattern gives nothing to upscale, naming what it holds instead."""
    held = [f"{n} earlier unetsr output{'s' * (n != 1)}" for n in [own_outputs] if n]
    held += [f"{n} {suffix} file{'s' * (n != 1)} ({unsupported_reason(suffix)})"
             for suffix, n in sorted(unsupported.items())]
    return f"no image files to upscale {what}" + (f": only {', '.join(held)}" if held else "")


def collect_inputs(args: Sequence[str], recursive: bool) -> Inputs:
    """Expand files, folders and glob patterns into distinct input images, in order, plus what gave none
    (missing files, empty folders, patterns that match nothing, FIFOs and devices, which are never opened).

    Files found in folders and through patterns that carry unetsr's output marker are passed over (a rerun
    never upscales earlier outputs), as are unsupported formats (.heic, ...); a file named directly is
    always taken. Only identical paths are merged: a file and a link to it are two inputs with two outputs."""
    found = Inputs()
    seen: set[str] = set()

    def add(path: Path, rel: Path, scanned: bool) -> bool:
        """Take `path` as a source unless seen or refused; False when it is an earlier output passed over."""
        if (key := spelling_key(path)) in seen:
            return True
        seen.add(key)
        if (problem := file_problem(path)) is not None:
            found.problems.append(Problem(str(path), problem))
        elif scanned and is_unetsr_output(path):
            found.own_outputs.append(path)
            return False
        else:
            found.sources.append(Source(path, rel))
        return True

    def add_all(arg: str, candidates: list[tuple[Path, Path]], unsupported: Counter[str], what: str) -> None:
        """The images a folder or a pattern yields; when none is taken, one problem that says what it held
        (its earlier outputs and unsupported files are then told there, not counted again)."""
        outputs_before = len(found.own_outputs)
        taken = [add(file, rel, scanned=True) for file, rel in candidates]  # every one, not up to the first
        if any(taken):
            found.unsupported.update(unsupported)
            return
        outputs = len(found.own_outputs) - outputs_before
        del found.own_outputs[outputs_before:]
        found.problems.append(Problem(arg, _nothing_found(what, outputs, unsupported)))

    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files, unsupported = _scan_folder(path, recursive)
            where = "in this folder" + (" or its subfolders" if recursive else "")
            add_all(arg, [(file, file.relative_to(path)) for file in files], unsupported, where)
        elif os.path.lexists(path):
            add(path, Path(path.name), scanned=False)
        elif has_glob(arg):
            root = glob_root(arg)
            matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True)) if not os.path.isdir(m)]
            unsupported = Counter(s for m in matches if (s := m.suffix.lower()) in UNSUPPORTED_SUFFIXES)
            add_all(arg, [(m, mirrored(m, root)) for m in matches if is_image_path(m)], unsupported,
                    "that match this pattern")
        else:
            found.problems.append(Problem(arg, "no such file or folder"))
    return found


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
    rel = source.rel if _stays_inside(source.rel) else Path(source.path.name)  # never outside `output`
    return output / rel.parent / (rel.stem + suffix)


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
                 limit_mp: float = MAX_OUTPUT_MEGAPIXELS, stride: int = 1) -> str | None:
    """Why an H×W input must not be upscaled by `scale`: its output, or `largest`, the biggest intermediate
    image the model computes on the way (several passes, then a resize), would be over `limit_mp` megapixels;
    or, for a photo thinner than the model's `stride`, the padded image the model computes instead would be."""
    final_mp = max(1, round(height * scale)) * max(1, round(width * scale)) / 1e6
    largest_mp = math.prod(largest) / 1e6 if largest else final_mp
    if final_mp > limit_mp:
        return (f"the x{format_scale(scale)} output would be {final_mp:.0f} MP, over the {limit_mp:g} MP output "
                "limit; use a smaller --scale")
    if largest_mp > limit_mp:
        return (f"the x{format_scale(scale)} output passes through a {largest_mp:.0f} MP intermediate image, over "
                f"the {limit_mp:g} MP limit; use a smaller --scale")
    padded = math.ceil(height / stride) * stride * math.ceil(width / stride) * stride
    if padded * scale * scale / 1e6 > limit_mp:
        return (f"a {width}×{height} photo is computed padded to a multiple of {stride} px, "
                f"{padded * scale * scale / 1e6:.0f} MP at x{format_scale(scale)}, over the {limit_mp:g} MP limit")
    return None
