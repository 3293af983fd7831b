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


def thread_count(text: str) -> int:
    """``--threads N``: an int >= 1 (argparse turns the refusal into one line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


DEVICE_HELP = (
    "cpu, cuda, cuda:N, mps or auto (default auto: CUDA if available, else MPS, else the CPU)"
)


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N``: PyTorch's CPU threads for this command (set by ``cli.main``)."""
    p.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        metavar="N",
        help="CPU threads for PyTorch (intra- and inter-op; default: PyTorch's own, "
        "usually the number of cores)",
    )


def say(args: argparse.Namespace, text: str) -> None:
    """An info line on stdout, unless ``-q``."""
    if not getattr(args, "quiet", False):
        from mrenhance.errors import printable

        print(printable(text))
