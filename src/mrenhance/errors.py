"""Errors meant for people.

Every problem with a user's input (a file, a recipe, a weights file, an output path) raises
:class:`InputError` or a subclass, with a one-line message that names the file and the
problem. The CLI prints that line and exits with code 2; anything else is a bug.
"""

from __future__ import annotations


class MrenhanceError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(MrenhanceError, ValueError):
    """A user input (file, array, option) is unusable; the message says which and why."""


class OutputExistsError(InputError):
    """The output path exists and overwriting was not asked for."""


class WeightsError(InputError):
    """A weights file or its model card is missing, corrupt or does not match its sha256."""


class ConfigError(InputError):
    """A recipe or override has an unknown key or a value of the wrong type."""


class TrainingDivergedError(MrenhanceError):
    """The training loss became NaN or Inf; the last good checkpoint is kept."""


def printable(text: str) -> str:
    """``text`` safe to print and to encode as UTF-8: the bytes of a file name that is not
    valid UTF-8 (which Python holds as surrogate escapes) are shown as ``\\xe9``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
