"""Argument types shared by the command modules."""

from __future__ import annotations

import argparse


def _tuple(text: str, cast=float) -> tuple:
    try:
        return tuple(cast(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def ints(text: str) -> int | tuple[int, ...]:
    """``64`` -> 64, ``64,64,48`` -> (64, 64, 48)."""
    values = _tuple(text, int)
    return values[0] if len(values) == 1 else values


def floats(text: str) -> tuple[float, ...]:
    """``2,2,1`` -> (2.0, 2.0, 1.0)."""
    return _tuple(text, float)
