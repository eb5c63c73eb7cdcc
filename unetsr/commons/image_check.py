"""Is this file a whole image? The check every downloaded file passes before it takes its final name."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from unetsr.core.errors import DownloadError
from unetsr.imaging.formats import open_image

# Tolerated difference, in pixels, between a rendition's advertised and actual size (rounding of the short side).
SIZE_TOLERANCE = 1


def check_image(path: Path, expected: tuple[int, int] | None = None, *, full: bool = True) -> None:
    """Raise DownloadError unless `path` is an image (of `expected` size, either orientation) that Pillow decodes.

    `full=False` stops after verify(), a cheap check for files already verified once.
    """
    try:
        with open_image(path) as image:
            width, height = image.size
            too_large = over_pixel_limit(width, height)
            if too_large:
                raise DownloadError(too_large)
            image.verify()
        if full:
            with open_image(path) as image:
                image.load()
    except DownloadError:
        raise
    except Image.UnidentifiedImageError:
        raise DownloadError("the bytes are not an image") from None
    except Exception as exc:  # Pillow reports damaged data with many exception types
        raise DownloadError(f"damaged image ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if expected is not None and not (near((width, height), expected) or near((height, width), expected)):
        raise DownloadError(f"image is {width}x{height}, expected {expected[0]}x{expected[1]}")


def near(size: tuple[int, int], expected: tuple[int, int]) -> bool:
    """True if two (width, height) pairs differ by at most SIZE_TOLERANCE pixels on each side."""
    return all(abs(a - b) <= SIZE_TOLERANCE for a, b in zip(size, expected))


def over_pixel_limit(width: int, height: int) -> str | None:
    """Why an image of this size would not be decoded (Pillow's decompression-bomb limit), or None."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        return f"{width}x{height} pixels is over the decompression-bomb limit of {limit}"
    return None
