"""Reading and writing images as people have them: any common mode, EXIF rotation, ICC profiles, 16 bits.

Pixels come and go as float32 numpy arrays in [0, 1]; this module knows nothing of torch.
Pillow does the work, except for 16-bit colour PNGs, which Pillow can only hold as 8 bits (`png16` reads
and writes those). Every file written carries unetsr's output marker (`metadata`), so a rerun over a
folder can tell earlier outputs from photos.
"""

from __future__ import annotations

import os
import stat
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin, UnidentifiedImageError

from unetsr.core.errors import ImageError, first_line
from unetsr.core.fileio import atomic_write
from unetsr.imaging import png16
from unetsr.imaging.formats import (
    PILLOW_WRITERS,
    READ_NAMES,
    UNSUPPORTED_SUFFIXES,
    format_name,
    format_of_suffix,
    open_image,
    unsupported_reason,
)
from unetsr.imaging.metadata import (
    MARKER_KEY,
    MARKER_TEXT,
    MAX_ICC_BYTES,
    exif_for_jpeg,
    marker_options,
    orientation_and_exif,
)

DEFAULT_MAX_PIXELS = 100_000_000
"""The largest input read_image accepts by default: guards against decompression bombs."""

T = TypeVar("T")
_MAX_PNG_REREAD = 1 << 30  # a PNG with metadata beyond Pillow's limits is reread without it up to this size

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, the weights of Pillow's convert("L")
_SRGB = ImageCms.createProfile("sRGB")

# EXIF orientation 1-8 -> how to turn the stored pixels upright (the transposes of ImageOps.exif_transpose).
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, -1),  # needs a quarter turn clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # mirrored along the other diagonal
    8: lambda a: np.rot90(a, 1),  # needs a quarter turn counter-clockwise
}


@dataclass(frozen=True)
class Picture:
    """An image as read, ready for the model, plus what is needed to write the result like the source.

    To write an upscaled result, use dataclasses.replace(picture, rgb=..., alpha=...).
    """

    rgb: np.ndarray  # float32 H×W×3 in [0, 1], upright (EXIF orientation applied), in the source's colour space
    alpha: np.ndarray | None  # float32 H×W in [0, 1], or None when the source is fully opaque
    bit_depth: int  # 8 or 16: the precision of the source
    grayscale: bool  # the source had a single colour channel (modes 1, L, LA, I;16, ...)
    icc_profile: bytes | None  # the source's ICC profile; None when there is none or colours became sRGB
    exif: bytes | None  # the source's EXIF block ("Exif\0\0" + TIFF data) with Orientation reset to 1
    notes: tuple[str, ...] = ()  # what the decoder warned about (damaged EXIF, ...): one line each

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"Picture.rgb must be H×W×3, got shape {self.rgb.shape}")
        if self.alpha is not None and self.alpha.shape != self.rgb.shape[:2]:
            raise ValueError(f"Picture.alpha must be {self.rgb.shape[:2]}, got shape {self.alpha.shape}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"Picture.bit_depth must be 8 or 16, got {self.bit_depth}")


def output_format(path: str | Path, format: str | None = None) -> str:
    """The format ("png", "jpg" or "webp") to write: `format` if given, else from the suffix, png if none."""
    if format is not None:
        if (name := format_name(format)) is None:
            raise ImageError(f"cannot write {format!r} images; choose png, jpg or webp")
        return name
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "png"
    if (name := format_of_suffix(path)) is None:
        raise ImageError(f"{path}: cannot write {suffix} files; use .png, .jpg or .webp")
    return name


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when a and b name the same file, also through links or different spellings of the path."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where the paths lead
        return Path(a).resolve() == Path(b).resolve()


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as an image file without opening it (missing, a folder, a FIFO or device
    that could block forever), or None for a regular file. The one check of inputs before they are opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a link to nothing" if os.path.islink(path) else "no such file"
    except OSError as e:
        return f"cannot read it: {e.strerror or type(e).__name__}"
    if stat.S_ISDIR(mode):
        return "a directory, not an image"
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"not a regular file ({kind}); not opened"
    return None


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Read an image file of any common kind into a Picture; every failure is an ImageError naming the file.

    Images larger than `max_pixels` are refused before their pixels are decoded; animations and multi-page
    files are refused (only one frame would be kept); what the decoder warns about ends up in `notes`.
    A PNG whose metadata is beyond what Pillow reads (an ICC profile over MAX_ICC_BYTES) is read without it.
    """
    path = Path(path)
    if (problem := file_problem(path)) is not None:
        raise ImageError(f"{path}: {problem}")
    try:
        return _decode(path, path, max_pixels)
    except ImageError as error:  # Pillow's limits on PNG metadata raise ValueError
        big = isinstance(error.__cause__, ValueError)
        stripped = png16.without_oversized_metadata(path, MAX_ICC_BYTES, _MAX_PNG_REREAD) if big else None
        if stripped is None:
            raise
    data, dropped_icc = stripped
    note = (f"its ICC profile is larger than the {MAX_ICC_BYTES / 1e6:.1f} MB unetsr keeps; left out, so the "
            "colours are taken as sRGB")
    return _decode(path, BytesIO(data), max_pixels, (note,) if dropped_icc else ())


def _decode(path: Path, source: Path | BytesIO, max_pixels: int, notes: tuple[str, ...] = ()) -> Picture:
    """read_image's work on `source` (the file at `path`, or its bytes with metadata removed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _own_limits(), _read_errors(path), open_image(source) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{path} is {width}×{height} = {_megapixels(width * height)} MP, "
                    f"over the {_megapixels(max_pixels)} MP limit (--max-pixels)"
                )
            if im.format != "MPO" and getattr(im, "is_animated", False):  # MPO: a camera JPEG and its previews
                raise ImageError(f"{path} has {im.n_frames} frames (an animation or a multi-page file); "
                                 "only single images can be upscaled")
            if im.format == "PNG" and _with_file(source, png16.bit_depth) == 16:
                pixels, bit_depth, icc = _with_file(source, png16.read_png16), 16, im.info.get("icc_profile")
            else:
                pixels, bit_depth, icc = _pillow_pixels(im, path)
            orientation, exif = orientation_and_exif(im)
    warned = (first_line(w.message) for w in caught if not issubclass(w.category, ResourceWarning))
    notes = tuple(dict.fromkeys((*notes, *warned)))
    pixels = _UPRIGHT[orientation](pixels)
    channels = pixels.shape[2]
    rgb = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    alpha = pixels[..., -1] if channels in (2, 4) else None
    if alpha is not None and alpha.min() >= 1.0:
        alpha = None
    return Picture(
        rgb=np.ascontiguousarray(rgb),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        bit_depth=bit_depth,
        grayscale=channels <= 2,
        icc_profile=icc or None,
        exif=exif,
        notes=notes,
    )


def _with_file(source: Path | BytesIO, read: Callable[[BinaryIO], T]) -> T:
    """`read` on a handle of its own to `source` (Pillow keeps reading its own)."""
    if isinstance(source, BytesIO):
        return read(BytesIO(source.getvalue()))
    with open(source, "rb") as file:
        return read(file)


def pixels_of(image: Image.Image) -> tuple[np.ndarray, int]:
    """An open Pillow image's pixels converted as read_image converts a file's (grey, palette transparency, CMYK,
    16 bits): H×W×C float32 in [0, 1] (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) and their bit depth, 8 or 16;
    for Upscaler.__call__, so that a PIL image and a file agree."""
    pixels, bit_depth, _ = _pillow_pixels(image, Path("the image"))
    return pixels, bit_depth


def write_image(
    path: str | Path,
    picture: Picture,
    *,
    format: str | None = None,
    quality: int = 95,
    overwrite: bool = False,
    source: str | Path | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write a Picture atomically as PNG, JPEG or WebP, keeping its ICC profile, EXIF, alpha, grey and depth,
    and marking it as unetsr's output (metadata.is_unetsr_output) so that reruns pass over it.

    Refuses to replace an existing file unless `overwrite`, and never writes over `source` (the input image).
    JPEG has no transparency: a picture with alpha is composited onto white. Metadata the format cannot hold
    (EXIF over 64 KB or an ICC profile over 16 MB in a JPEG) is trimmed or left out, said in one line each
    appended to `notes` (or issued as warnings when no list is given). Returns the path written.
    """
    path = Path(path)
    fmt = output_format(path, format)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    if source is not None and same_file(path, source):
        raise ImageError(f"{path} is the input image; refusing to write over it")
    if path.is_dir():
        raise ImageError(f"cannot write {path}: it is a directory")
    if path.exists() and not overwrite:
        raise ImageError(f"{path} already exists; use --overwrite to replace it")
    if not path.parent.is_dir():
        raise ImageError(f"cannot write {path}: folder {path.parent} does not exist")

    def note(text: str) -> None:
        if notes is None:
            warnings.warn(f"{path}: {text}", stacklevel=3)
        else:
            notes.append(text)

    pixels = _output_pixels(picture, fmt)
    icc = picture.icc_profile if picture.icc_profile and _icc_fits(picture.icc_profile, pixels) else None
    exif = picture.exif
    if fmt == "jpg":
        if icc and len(icc) > MAX_ICC_BYTES:
            note(f"the ICC profile ({len(icc) / 1e6:.1f} MB) is more than a JPEG holds "
                 f"({MAX_ICC_BYTES / 1e6:.1f} MB): left out")
            icc = None
        exif = exif and exif_for_jpeg(exif, note)
    if fmt == "png" and picture.bit_depth == 16:
        samples = _quantize(pixels, 65535)
        _save_atomically(path, lambda f: png16.write_png16(f, samples, icc, exif, {MARKER_KEY: MARKER_TEXT}))
        return path
    samples = _quantize(pixels, 255)
    image = Image.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples)  # L, LA, RGB or RGBA
    options: dict[str, object] = marker_options(fmt)
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "jpg":
        # At high quality, keep full-resolution colour (4:4:4): the point of upscaling is fine detail.
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    elif fmt == "webp":
        options.update(quality=quality)
    _save_atomically(path, lambda f: image.save(f, format=PILLOW_WRITERS[fmt], **options))
    return path


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def _own_limits() -> Iterator[None]:
    """Pillow's global limits as read_image wants them: its decompression-bomb check off (read_image applies
    its own, configurable one), and PNG metadata chunks up to MAX_ICC_BYTES (a 5 MB ICC profile is a real
    one, not a bomb; Pillow stops at 1 MB)."""
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK
        Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK = None, max(saved[1], MAX_ICC_BYTES)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK = saved


@contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Turn whatever a decoder raises on a damaged or foreign file into a one-line ImageError naming it."""
    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        if path.suffix.lower() in UNSUPPORTED_SUFFIXES:
            raise ImageError(f"{path}: {unsupported_reason(path.suffix)}") from None
        raise ImageError(f"{path}: not a supported image (unetsr reads {READ_NAMES})") from None
    except OSError as e:
        if e.strerror:  # the file itself could not be read: permissions, I/O error
            raise ImageError(f"cannot read {path}: {e.strerror}") from e
        raise ImageError(f"{path} is damaged or truncated: {first_line(e)}") from e
    except Exception as e:  # decoders fed broken data raise SyntaxError, ValueError, struct.error, png.Error...
        raise ImageError(f"{path} is damaged or truncated: {first_line(e)}") from e


def _megapixels(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.2g}" if mp < 0.1 else f"{mp:.1f}".removesuffix(".0")


def _pillow_pixels(im: Image.Image, path: Path) -> tuple[np.ndarray, int, bytes | None]:
    """The pixels of a Pillow image as H×W×C in [0, 1] (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), its bit depth
    and the ICC profile that still describes them (`path` only names the file in errors)."""
    icc = im.info.get("icc_profile")
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.clip(np.asarray(im, dtype=np.float32), 0, 65535) / 65535
        return grey[..., None], 16, icc
    if mode == "F":  # floating-point TIFF: taken to hold values in [0, 1]
        values = np.asarray(im, dtype=np.float32)
        if not np.isfinite(values).all():  # would silently become black (NaN) or white (infinity)
            raise ImageError(f"{path} holds NaN or infinite pixel values; refusing to guess what they mean")
        return np.clip(values, 0, 1)[..., None], 16, icc
    if mode == "CMYK":
        im, icc = _cmyk_to_srgb(im, icc), None
    elif mode == "LAB":  # Pillow converts CIELAB to sRGB colorimetrically
        im, icc = im.convert("RGB"), None
    elif mode in ("1", "L"):
        im = im.convert("L")
    elif mode in ("LA", "La"):
        im = im.convert("LA")
    elif mode in ("P", "PA", "RGBA", "RGBa"):  # a palette may hold transparency; opaque alpha is dropped later
        im = im.convert("RGBA")
    else:  # RGB, RGBX, YCbCr, HSV
        im = im.convert("RGB")
    pixels = np.asarray(im, dtype=np.float32) / 255
    return (pixels[..., None] if pixels.ndim == 2 else pixels), 8, icc


def _cmyk_to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """CMYK to sRGB through the image's own ICC profile when it has a usable one, else Pillow's plain formula."""
    if icc:
        try:
            return ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(BytesIO(icc)), _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a damaged profile: the plain conversion is better than no image
    return im.convert("RGB")


def _output_pixels(picture: Picture, fmt: str) -> np.ndarray:
    """H×W×C in [0, 1] as the format will store it: grey (C=1, 2) for a grey source, alpha last (C=2, 4)."""
    colour = np.asarray(picture.rgb, dtype=np.float32)  # no copy: _quantize turns NaN into 0 band by band
    alpha = None if picture.alpha is None else np.asarray(picture.alpha, dtype=np.float32)
    if fmt == "jpg" and alpha is not None:  # JPEG has no transparency: composite onto white
        a = np.clip(np.nan_to_num(alpha), 0, 1)[..., None]
        colour, alpha = np.nan_to_num(colour) * a + (1 - a), None
    if picture.grayscale:
        grey = (colour @ _LUMA)[..., None]
        colour = grey if fmt != "webp" else np.repeat(grey, 3, axis=2)  # WebP stores colour only
    return colour if alpha is None else np.concatenate([colour, alpha[..., None]], axis=2)


def _quantize(pixels: np.ndarray, maximum: int, band: int = 256) -> np.ndarray:
    """Round [0, 1] floats to integers 0..maximum (255 or 65535), clipping anything outside, NaN to 0.
    Done in bands of `band` rows, so a 12 MP image needs no full-size float temporaries (memory)."""
    out = np.empty(pixels.shape, np.uint8 if maximum == 255 else np.uint16)
    for top in range(0, pixels.shape[0], band):
        rows = np.nan_to_num(pixels[top:top + band], nan=0.0, posinf=1.0, neginf=0.0) * maximum
        out[top:top + band] = np.clip(rows + 0.5, 0, maximum)
    return out


def _icc_fits(icc: bytes, pixels: np.ndarray) -> bool:
    """Whether an ICC profile describes pixels of this many channels (header bytes 16-19 name its colour space)."""
    return icc[16:20] == (b"GRAY" if pixels.shape[2] <= 2 else b"RGB ")


def _save_atomically(path: Path, save: Callable[[BinaryIO], None]) -> None:
    """fileio.atomic_write (temporary file, fsync, rename; nothing left behind on errors, Ctrl-C or SIGTERM),
    with what goes wrong reported as a one-line ImageError."""
    try:
        atomic_write(path, save)
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot write {path}: {getattr(e, 'strerror', None) or first_line(e)}") from e
