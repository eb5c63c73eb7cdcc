"""Numbers checked as they are read from text: whole numbers and numbers in ranges.

The command lines use them as argparse types and the web page for its form fields, so a value is
refused with the same words wherever it comes from."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from unetsr.core.errors import one_line


def int_in(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [minimum, maximum]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {one_line(text)!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            span = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value
    parse.__name__ = "whole number"
    return parse


def float_in(minimum: float, maximum: float | None = None, *, inclusive: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number in [minimum, maximum] (or above `minimum` when not `inclusive`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {one_line(text)!r}") from None
        low_ok = value >= minimum if inclusive else value > minimum
        if not math.isfinite(value) or not low_ok or (maximum is not None and value > maximum):
            low = f"{'at least' if inclusive else 'greater than'} {minimum:g}"
            span = low if maximum is None else f"{low} and at most {maximum:g}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {one_line(text)[:40]}")
        return value
    parse.__name__ = "number"
    return parse


positive_int = int_in(1)
"""An argparse type: a whole number of at least 1."""
