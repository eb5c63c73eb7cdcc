"""One image file upscaled: read it, check the sizes, upscale, write the result atomically.

The one place a file becomes an upscaled file: `infer` (the command line) and `web.queue` (the web page's
queue) both call `upscale_file`; neither needs the other.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unetsr.batch.plan import Job, size_problem
from unetsr.core.errors import ImageError, first_line
from unetsr.imaging.formats import open_image
from unetsr.imaging.photos import read_image, write_image

if TYPE_CHECKING:  # torch stays unimported until an Upscaler exists
    from unetsr.inference.upscaler import Upscaler


def ensure_folder(folder: Path) -> None:
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


def header_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the file's header alone, or None when the header cannot be read (read_image then
    says why, in its words, and reports the decoder's warnings once: they are silenced here)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_image(path) as header:
                return header.size[1], header.size[0]
    except Exception:  # noqa: BLE001 - not an image, damaged, over Pillow's bomb limit
        return None


def check_size(upscaler: Upscaler, path: Path, h: int, w: int, scale: float, max_pixels: int) -> None:
    """ImageError when an h×w photo must not be upscaled by `scale`: an output or intermediate image over the
    output limit, or a photo thinner than the model's stride whose padded image is over either limit."""
    intermediate = getattr(upscaler, "intermediate_size", None)
    stride = getattr(upscaler, "stride", 1)
    if problem := size_problem(h, w, scale, intermediate(h, w, scale) if intermediate else None, stride=stride):
        raise ImageError(f"{path}: {problem}")
    if w * h <= max_pixels < (padded := max(h, stride) * max(w, stride)):
        raise ImageError(f"{path} is {w}×{h}, computed as {padded / 1e6:.3g} MP once padded to the model's "
                         f"{stride}-pixel grid: over the {max_pixels / 1e6:g} MP limit (--max-pixels)")


def upscale_file(upscaler: Upscaler, job: Job, scale: float, *, max_pixels: int, fmt: str | None, quality: int,
                 overwrite: bool, progress: bool) -> tuple[tuple[int, int], tuple[int, int], tuple[str, ...]]:
    """Read, upscale and write one image (marked as unetsr's output); returns its (width, height) before and
    after, and the notes of the reader and the writer (metadata the output format could not hold, ...)."""
    size = header_size(job.source.path)
    if size is not None:  # the header alone decides most refusals: no pixel is decoded for them
        check_size(upscaler, job.source.path, *size, scale, max_pixels)
    picture = read_image(job.source.path, max_pixels=max_pixels)
    h, w = picture.rgb.shape[:2]
    if size is None:
        check_size(upscaler, job.source.path, h, w, scale, max_pixels)
    ensure_folder(job.dest.parent)
    if picture.alpha is None:
        rgb, alpha = upscaler.upscale_array(picture.rgb, scale, progress=progress), None
    else:
        both = upscaler.upscale_array(np.concatenate([picture.rgb, picture.alpha[..., None]], axis=2),
                                      scale, progress=progress)
        rgb, alpha = both[..., :3], np.ascontiguousarray(both[..., 3])
    written: list[str] = []
    write_image(job.dest, replace(picture, rgb=rgb, alpha=alpha), format=fmt, quality=quality,
                overwrite=overwrite, source=job.source.path, notes=written)
    oh, ow = rgb.shape[:2]
    return (w, h), (ow, oh), (*picture.notes, *written)
