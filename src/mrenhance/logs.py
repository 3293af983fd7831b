"""Where library warnings go: the ``mrenhance`` logger, never stray lines on the terminal.

nibabel, pydicom and PyTorch warn through :mod:`warnings` (``pixdim[0] (qfac) should be 1``,
``TypedStorage is deprecated`` ...), and a warning printed by Python is a second and third
line beside our one-line message. Under :func:`cli_logging` (the CLI installs it) every
warning is logged to ``mrenhance.warnings`` instead, together with our own log records
(``mrenhance.train``, ``mrenhance.distributed``): hidden by default, shown on stderr as
``mrenhance: warning: ...`` with ``-v`` (``-vv`` adds debug records). Python users get
the usual :mod:`warnings` and configure :mod:`logging` as they like.

A warning meant for the user of a command (:func:`warn_user`, e.g. an input whose voxel
size is far from the model's training voxel size) is shown even without ``-v``: it is one
``mrenhance: warning: ...`` line about their data, not a library's remark.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["LOGGER", "cli_logging", "warn_user"]

LOGGER = logging.getLogger("mrenhance")


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from mrenhance.errors import printable

        text = " ".join(record.getMessage().split())
        return printable(f"mrenhance: {record.levelname.lower()}: {text}")


def warn_user(message: str) -> None:
    """Log a warning about the user's data or options, shown by the CLI without ``-v``."""
    LOGGER.warning("%s", message, extra={_SHOWN: True})


_SHOWN = "mrenhance_shown"


class _Visible(logging.Filter):
    """At verbosity 0: errors, and the warnings of :func:`warn_user`; nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or bool(getattr(record, _SHOWN, False))


def _to_log(message: Any, category: type, filename: str, lineno: int, *_: Any) -> None:
    LOGGER.getChild("warnings").warning(
        "%s: %s (%s:%d)", category.__name__, message, Path(filename).name, lineno
    )


@contextlib.contextmanager
def cli_logging(verbosity: int = 0) -> Iterator[None]:
    """Route warnings to the ``mrenhance`` logger and show it on stderr at ``verbosity``:
    0 errors and :func:`warn_user` warnings, 1 all warnings and info, 2 debug. Restores
    everything on exit."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    level = max(0, min(verbosity, 2))
    handler.setLevel((logging.WARNING, logging.INFO, logging.DEBUG)[level])
    if level == 0:
        handler.addFilter(_Visible())
    old_level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(min(handler.level, LOGGER.getEffectiveLevel()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _to_log
            yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(old_level)
