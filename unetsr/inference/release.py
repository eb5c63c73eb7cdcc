"""A training checkpoint as a compact release file: no optimiser state, float16 storage if asked, and a check
that the release model's outputs stay within a tolerance of the original's on real photos."""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetsr.core.errors import UnetsrError

if TYPE_CHECKING:
    import numpy as np

    from unetsr.inference.upscaler import Upscaler

TOLERANCE = 1 / 255
MIN_CHECK_LR_SIDE = 8  # a check photo's LR must be at least this many pixels a side to say anything


@dataclass(frozen=True)
class Export:
    """What `export_checkpoint` wrote and how far its outputs are from the source model's."""

    path: Path
    sha256: str
    bytes: int
    max_abs_diff: float


def max_output_difference(a: Upscaler, b: Upscaler, images: Sequence[np.ndarray]) -> float:
    """Largest absolute difference between two upscalers' outputs (in [0, 1]) over `images` (H×W×3 float)."""
    return max(float(abs(a.upscale_array(image) - b.upscale_array(image)).max()) for image in images)


def check_images(paths: Sequence[Path], scale: int, seed: int = 0,
                 note: Callable[[str], None] | None = None) -> list[np.ndarray]:
    """The LR of each photo at `paths` (as evaluation makes it), or a seeded random image when none are given.

    Photos too small for an LR of MIN_CHECK_LR_SIDE pixels a side are left out, each said through `note` (a
    warning when there is none); UnetsrError when that leaves none."""
    import numpy as np

    from unetsr.imaging.photos import read_image
    from unetsr.imaging.resize import make_lr

    if not paths:
        return [np.random.default_rng(seed).integers(0, 256, (96, 128, 3)).astype(np.float32) / 255]
    smallest = MIN_CHECK_LR_SIDE * scale
    images = []
    for path in paths:
        rgb = read_image(path).rgb
        if min(rgb.shape[:2]) < smallest:
            text = (f"{path}: {rgb.shape[1]}×{rgb.shape[0]} is too small to check at x{scale} "
                    f"(at least {smallest} px a side); skipped")
            if note is None:
                warnings.warn(text, stacklevel=2)
            else:
                note(text)
            continue
        images.append(make_lr(rgb, scale)[1])
    if not images:
        raise UnetsrError(f"none of the {len(paths)} check photos is large enough to check at x{scale} "
                          f"(at least {smallest} px a side)")
    return images


def export_checkpoint(src: str | Path, dst: str | Path, half: bool = True, meta: dict[str, Any] | None = None,
                      check: Sequence[Path] = (), tolerance: float = TOLERANCE, overwrite: bool = False) -> Export:
    """Write `src`'s model to `dst` without training state; UnetsrError if outputs move by more than `tolerance`.

    Compared in float32 on the CPU, so only the storage format is measured. The release file is made and
    checked in a scratch folder, then written to `dst` by fileio.atomic_write only when the check passes; an
    existing `dst` is replaced only with `overwrite`, never `src` itself.
    """
    from unetsr.core.fileio import atomic_write, pending, sha256_of
    from unetsr.imaging.photos import same_file
    from unetsr.inference.upscaler import Upscaler
    from unetsr.model.checkpoint import load_checkpoint, save_checkpoint

    dst = Path(dst)
    if same_file(src, dst):
        raise UnetsrError(f"{dst} is the checkpoint being exported; choose another output file")
    if dst.exists() and not overwrite:
        raise UnetsrError(f"{dst} already exists; pass --overwrite to replace it")
    source = load_checkpoint(src)
    images = check_images(check, source.config.scale)
    with tempfile.TemporaryDirectory(prefix="unetsr-export-") as scratch, pending(Path(scratch) / dst.name) as trial:
        save_checkpoint(trial, source.model, {**source.meta, **(meta or {})}, half=half)
        exported = load_checkpoint(trial)
        upscalers = [Upscaler(c.model, device="cpu", precision="fp32", tile=512) for c in (source, exported)]
        diff = max_output_difference(*upscalers, images)
        if diff > tolerance:
            raise UnetsrError(f"exported outputs differ by {diff * 255:.2f}/255 (> {tolerance * 255:.2f}/255); "
                              "export with --full to keep float32 weights")
        with open(trial, "rb") as checked:
            atomic_write(dst, lambda f: shutil.copyfileobj(checked, f))
    return Export(dst, sha256_of(dst), dst.stat().st_size, diff)


def parse_meta(items: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is read as JSON when it parses (numbers, lists), else kept as text."""
    meta: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--meta {item!r}: expected KEY=VALUE")
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return meta
