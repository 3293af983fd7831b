"""Where library warnings go: the ``mrenhance`` logger, never stray lines on the terminal.

nibabel, pydicom and PyTorch warn through :mod:`warnings` (``pixdim[0] (qfac) should be 1``,
``TypedStorage is deprecated`` ...), and a warning printed by Python is a second and third
line beside our one-line message. Under :func:`cli_logging` (the CLI installs it) every
warning is logged to ``mrenhance.warnings`` instead, together with our own log records
(``mrenhance.train``, ``mrenhance.distributed``): hidden by default, shown on stderr as
``mrenhance: warning: ...`` with ``-v`` (``-vv`` adds debug records). Python users get
the usual :mod:`warnings` and configure :mod:`logging` as they like.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["LOGGER", "cli_logging"]

LOGGER = logging.getLogger("mrenhance")


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from mrenhance.errors import printable

        text = " ".join(record.getMessage().split())
        return printable(f"mrenhance: {record.levelname.lower()}: {text}")


def _to_log(message: Any, category: type, filename: str, lineno: int, *_: Any) -> None:
    LOGGER.getChild("warnings").warning(
        "%s: %s (%s:%d)", category.__name__, message, Path(filename).name, lineno
    )


@contextlib.contextmanager
def cli_logging(verbosity: int = 0) -> Iterator[None]:
    """Route warnings to the ``mrenhance`` logger and show it on stderr at ``verbosity``:
    0 errors only, 1 warnings and info, 2 debug. Restores everything on exit."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    handler.setLevel((logging.ERROR, logging.INFO, logging.DEBUG)[max(0, min(verbosity, 2))])
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
