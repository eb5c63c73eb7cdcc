"""Exceptions that carry a one-line, user-facing message; CLIs print them without a traceback (unless
UNETSR_DEBUG asks for it)."""

import os


class UnetsrError(Exception):
    """Base class: anything a CLI reports as one clear line and a non-zero exit."""


class ImageError(UnetsrError):
    """An input image cannot be read, or an output image cannot be written."""


class CheckpointError(UnetsrError):
    """A file is missing, damaged or not a unetsr checkpoint."""


class BackboneError(UnetsrError):
    """ResNet18 backbone weights cannot be obtained (offline, wrong file)."""


class DownloadError(UnetsrError):
    """The Commons API or upload server gave an answer we cannot use."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line reports of a wrapped error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class NonFiniteError(UnetsrError):
    """An image or a model's output holds NaN or infinite values (bad input, or damaged or diverged weights)."""


def one_line(text: object) -> str:
    """Text made safe for a one-line message: newlines and other control characters shown escaped."""
    s = str(text)
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in s)


def debug_requested() -> bool:
    """Whether UNETSR_DEBUG asks for tracebacks (1, true, yes or on, any case): the one switch that `infer
    --debug` sets and the web page's queue reads, so a library bug can be reported with its traceback."""
    return os.environ.get("UNETSR_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
