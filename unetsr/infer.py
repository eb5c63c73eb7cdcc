"""`python -m unetsr.infer`: upscale photos (files, folders or glob patterns) with a unetsr checkpoint.

Each result is written beside its input as <stem>_x<S>.<ext>, or under -o. Alpha, grey, 16-bit depth, ICC
profiles and EXIF are kept, and a marker in its metadata says unetsr wrote it: folders and patterns pass
over earlier outputs, whatever their name or scale. A file that cannot be read or written is reported in
one line and the others are still processed; the exit status is 1 if any file failed (a file whose output
exists already is skipped, which is not a failure: a rerun exits 0). --debug (or UNETSR_DEBUG=1) adds the
traceback of each failure, for reporting a bug.

Under torchrun (`torchrun --nproc_per_node N -m unetsr.infer FOLDER -o OUT`, or several machines with
torchrun's rendezvous flags) the files are shared out among the processes, each file processed once,
each process on its own GPU or share of the CPU cores, with one summary at the end."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from unetsr.batch import sharding
from unetsr.batch.one_file import upscale_file
from unetsr.batch.plan import (
    MAX_SCALE,
    collect_inputs,
    output_file_problem,
    output_is_file,
    output_suffix,
    parse_format,
    plan_jobs,
)
from unetsr.cli import add_tiling_arguments, float_in, int_in, one_line, prog_name
from unetsr.core import torchrun
from unetsr.core.errors import UnetsrError, debug_requested, first_line
from unetsr.core.precision import PRECISIONS
from unetsr.imaging.photos import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:  # torch is imported only once the arguments are good: -h and usage errors stay instant
    from unetsr.inference.choice import ModelPicker

MAX_MEGAPIXELS = 10_000  # --max-pixels cannot usefully go higher: the output limit is 400 MP
RUNTIMES = ("torch", "onnx")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every number is range-checked by argparse (usage error, exit 2)."""
    p = argparse.ArgumentParser(
        prog=prog_name("infer"),
        description="Upscale photos (files, folders or glob patterns) with a unetsr checkpoint.",
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output file (one input file) or folder (created if missing; a trailing slash or an "
                        "existing folder always means a folder); default: beside each input")
    p.add_argument("--scale", type=float_in(1, MAX_SCALE, inclusive=False), metavar="S",
                   help=f"upscaling factor, any number > 1 and up to {MAX_SCALE} (default: the model's own scale)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="unetsr checkpoint, or an ONNX model from python -m unetsr.export (default: the shipped model)")
    p.add_argument("--model", choices=("auto", "clean", "jpeg", "sharpened"), default="auto",
                   help="which shipped model: auto (default) picks the JPEG model for JPEGs of estimated quality "
                        "below 90 and the clean one for the rest; clean or jpeg forces one; sharpened is for photos "
                        "a camera or editor sharpened (white outlines along edges with the others)")
    p.add_argument("--runtime", choices=RUNTIMES,
                   help="torch, or onnx (onnxruntime, float32; pip install -e '.[onnx]'); "
                        "default: onnx for a .onnx --checkpoint, else torch")
    add_tiling_arguments(p)
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="number format: auto (default) is bfloat16 with channels_last on CPUs that compute it "
                        "natively, bf16 or fp16 on CUDA GPUs, float32 elsewhere; fp16 is for GPUs")
    p.add_argument("--half", action="store_true", help=argparse.SUPPRESS)  # older spelling of --precision fp16
    p.add_argument("--ensemble", action="store_true",
                   help="average the model over the 8 flips and transposes of the image: 8x the time, "
                        "slightly better (docs/model-card.md)")
    p.add_argument("--format", type=parse_format, metavar="{png,jpg,webp}",
                   help="output format (default png, or from the suffix of -o FILE)")
    p.add_argument("--quality", type=int_in(1, 100), default=95, metavar="Q",
                   help="JPEG/WebP quality 1-100 (default 95)")
    p.add_argument("--recursive", action="store_true", help="also take images in subfolders of folder inputs")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument("--max-pixels", type=float_in(0, MAX_MEGAPIXELS, inclusive=False),
                   default=DEFAULT_MAX_PIXELS / 1e6, metavar="N",
                   help=f"refuse inputs larger than N megapixels (default {DEFAULT_MAX_PIXELS / 1e6:g})")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-file lines; only problems")
    p.add_argument("--debug", action="store_true",
                   help="print the traceback of each failure after its one line, for bug reports "
                        "(also UNETSR_DEBUG=1)")
    return p


def _label() -> str:
    """The name that starts each message: unetsr-infer as a console script, else unetsr.infer."""
    prog = prog_name("infer")
    return prog if prog.startswith("unetsr-") else "unetsr.infer"


def _say(text: str, stream=None) -> None:
    """Print one line (control characters in file names escaped) without breaking a progress bar."""
    tqdm.write(one_line(text) + "\n", file=stream or sys.stderr, end="")  # one write: whole lines under torchrun


@contextmanager
def _warnings_as_lines(label: str) -> Iterator[None]:
    """Python warnings (from Pillow, torch, ...) shown as one `label: warning: ...` line each."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        _say(f"{label}: warning: {first_line(message)}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _reason(exc: Exception) -> str:
    """What went wrong, for a one-line report: our own errors whole (a newline in one is part of a file name,
    escaped when printed), others by their first line, named when unexpected."""
    if isinstance(exc, UnetsrError):
        return str(exc)
    if isinstance(exc, (OSError, ValueError)):
        return first_line(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"


def _times() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "×".encode(encoding)
        return "×"
    except (UnicodeEncodeError, LookupError):
        return "x"


def upscaler_options(device: str, half: bool, precision: str, tile: int, tile_overlap: int,
                     ensemble: bool = False) -> dict[str, object]:
    """`Upscaler` keyword arguments from the command line's settings (a --tile of 0 means untiled)."""
    return {"device": device, "half": half, "tile": tile or None, "tile_overlap": tile_overlap,
            "precision": precision, "ensemble": ensemble}


def pick_runtime(runtime: str | None, checkpoint: str | None) -> str:
    """'onnx' or 'torch': `runtime` when given, else onnx for a checkpoint ending in .onnx (any case)."""
    return runtime or ("onnx" if checkpoint and Path(checkpoint).suffix.lower() == ".onnx" else "torch")


def load_models(checkpoint: str | None, device: str, half: bool, precision: str, tile: int, tile_overlap: int,
                note: Callable[[str], None], runtime: str = "torch", scale: float | None = None,
                model: str = "auto", ensemble: bool = False) -> ModelPicker:
    """The models asked for: a --checkpoint (torch or ONNX) for every file, or the shipped ones picked per
    file by `model` (auto: by scale and JPEG quality); --half is dropped on the CPU, with a line through `note`."""
    from unetsr.inference.choice import ModelPicker
    from unetsr.inference.upscaler import Upscaler, pick_device

    if runtime == "onnx":
        from unetsr.inference.onnx_runtime import load_onnx

        upscaler = Upscaler(load_onnx(checkpoint, device), tile=tile or None, tile_overlap=tile_overlap,
                            ensemble=ensemble)
        upscaler.name = Path(str(checkpoint)).name
        return ModelPicker(scale or upscaler.scale, fixed=upscaler)
    chosen = pick_device(device)
    gpu_half = half and chosen.type != "cpu"
    options = upscaler_options(str(chosen), gpu_half, precision, tile, tile_overlap, ensemble)
    if half and not gpu_half:
        note("--half is ignored on the CPU")
    if checkpoint is None:
        return ModelPicker(scale or 2.0, model, **options)
    upscaler = Upscaler.from_checkpoint(checkpoint, **options)
    return ModelPicker(scale or upscaler.scale, fixed=upscaler)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Plan the jobs, run them one by one, and report each in one line: the CLI once arguments are parsed."""
    label = _label()
    out_is_file = args.output is not None and output_is_file(args.output, args.inputs)
    if out_is_file and (problem := output_file_problem(args.output, args.format)):
        parser.error(problem)
    if args.half and args.precision != "auto":
        parser.error(f"--half (float16 on a GPU) and --precision {args.precision} contradict each other")
    runtime = pick_runtime(args.runtime, args.checkpoint)
    if runtime == "onnx" and not args.checkpoint:
        parser.error("--runtime onnx needs --checkpoint MODEL.onnx (made by python -m unetsr.export CKPT MODEL.onnx)")
    if runtime == "onnx" and (args.half or args.precision in ("bf16", "fp16")):
        parser.error("--runtime onnx runs in float32; --half and --precision bf16/fp16 are for the torch runtime")
    if args.checkpoint and args.model != "auto":
        parser.error(f"--model {args.model} picks a shipped model; it cannot be combined with --checkpoint")
    if runtime == "torch" and args.checkpoint and Path(args.checkpoint).suffix.lower() == ".onnx":
        parser.error("--runtime torch cannot read an ONNX model; use --runtime onnx")

    def note(text: str) -> None:
        if not args.quiet:
            _say(f"{label}: note: {text}")

    debug = args.debug or debug_requested()

    def report(text: str) -> None:
        """One line for a failure; with --debug, the traceback of the exception being handled after it."""
        _say(text)
        if debug:  # as Python prints it, over several lines: not escaped into one as messages are
            tqdm.write(traceback.format_exc().rstrip(), file=sys.stderr)

    try:
        rank = torchrun.from_environment()  # under torchrun: this process's share of the files
        device = sharding.start(rank, args.device)  # joins the process group for the torch and ONNX runtimes
        models = load_models(args.checkpoint, device if runtime == "torch" else args.device, args.half,
                             args.precision, args.tile, args.tile_overlap, note, runtime, args.scale, args.model,
                             args.ensemble)
    except (UnetsrError, OSError, ValueError, RuntimeError) as exc:
        report(f"{label}: error: {_reason(exc)}")
        return 1

    scale = args.scale or float(models.default.scale)
    suffix = output_suffix(scale, args.format)
    found = collect_inputs(args.inputs, args.recursive)
    output = None if args.output is None else Path(args.output)
    jobs = sharding.shard(plan_jobs(found.sources, suffix, output, out_is_file, args.overwrite), rank)
    main_rank = rank.rank == 0  # what planning found is said, and counted, once
    problems = found.problems if main_rank else []
    own_outputs = len(found.own_outputs) if main_rank else 0
    unsupported = sum(found.unsupported.values()) if main_rank else 0

    upscaled = skipped = 0
    for problem in problems:
        _say(f"{label}: failed {problem.name}: {problem.reason}")
    for line in found.passed_over() if main_rank else []:
        note(line)
    failed = len(problems)
    times = _times()
    progress = not args.quiet and sys.stderr.isatty()
    max_pixels = max(1, round(args.max_pixels * 1e6))
    with tqdm(total=len(jobs), desc="upscaling", unit="file", file=sys.stderr,
              disable=args.quiet or len(jobs) < 2 or None) as bar:
        for job in jobs:
            name = str(job.source.path)
            start = time.perf_counter()
            if job.refusal or job.skip:  # a refusal is a failure; an output that exists already is not
                _say(f"{label}: {'failed' if job.refusal else 'skipped'} {name}: {job.refusal or job.skip}")
                failed, skipped = failed + bool(job.refusal), skipped + (not job.refusal)
                bar.update()
                continue
            try:
                upscaler, why = models.for_file(job.source.path)
                (w, h), (ow, oh), notes = upscale_file(upscaler, job, scale, max_pixels=max_pixels,
                                                       fmt=args.format, quality=args.quality,
                                                       overwrite=args.overwrite, progress=progress)
            except Exception as exc:  # one line, and the other files go on
                report(f"{label}: failed {name}: {_reason(exc)}")
                failed += 1
            else:
                upscaled += 1
                for text in notes:
                    _say(f"{label}: warning: {name}: {text}")
                if not args.quiet:
                    _say(f"{name} -> {job.dest} ({w}{times}{h} -> {ow}{times}{oh}, {upscaler.name}"
                         f"{upscaler.ensemble_note}{': ' + why if why else ''}, "
                         f"{time.perf_counter() - start:.1f} s)", sys.stdout)
            bar.update()

    counts = sharding.total(rank, (upscaled, failed, skipped, own_outputs, unsupported))
    upscaled, failed, skipped, own_outputs, unsupported = counts
    skipped += own_outputs + unsupported
    if main_rank and (not args.quiet or failed or skipped):
        passed = [f"{n} {what}{'s' * (n != 1)}" for n, what in ((own_outputs, "earlier unetsr output"),
                                                              (unsupported, "unsupported file")) if n]
        _say(f"{label}: upscaled {upscaled}, failed {failed}, skipped {skipped}"
             + (f" ({', '.join(passed)})" if passed else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 when no file failed (existing outputs are skipped), 1 when one did, 2 for bad
    arguments, 130 on Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    label = _label()
    try:
        with _warnings_as_lines(label):
            return run(args, parser)
    except KeyboardInterrupt:
        _say(f"{label}: interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
