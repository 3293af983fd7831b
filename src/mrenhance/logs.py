"""Where library warnings go: the ``mrenhance`` logger, never stray lines on the terminal.

nibabel, pydicom and PyTorch warn through :mod:`warnings` (``pixdim[0] (qfac) should be 1``,
``TypedStorage is deprecated`` ...), and a warning printed by Python is a second and third
line beside our one-line message. Under :func:`cli_logging` (the CLI installs it) every
warning is logged to ``mrenhance.warnings`` instead, together with our own log records
(``mrenhance.train``, ``mrenhance.distributed``): hidden by default, shown on stderr as
``mrenhance: warning: ...`` with ``-v`` (``-vv`` adds debug records). ``--log-file PATH``
also appends every record (info and up; debug with ``-vv``), with a time stamp, to a file,
whatever ``-q``/``-v`` show on the terminal; the CLI's one-line errors (and, with
``--debug``, their tracebacks) go there too. Python users get the usual :mod:`warnings` and
configure :mod:`logging` as they like.

A warning meant for the user of a command (:func:`warn_user`, e.g. an input whose voxel
size is far from the model's training voxel size) is shown even without ``-v``: it is one
``mrenhance: warning: ...`` line about their data, not a library's remark.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["FILE_ONLY", "LOGGER", "cli_logging", "warn_user"]

LOGGER = logging.getLogger("mrenhance")
#: ``extra=FILE_ONLY`` marks a record for the log file alone (the terminal has its own line)
FILE_ONLY = {"mrenhance_file_only": True}


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


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "mrenhance_file_only", False)


@contextlib.contextmanager
def cli_logging(verbosity: int = 0, log_file: str | os.PathLike | None = None) -> Iterator[None]:
    """Route warnings to the ``mrenhance`` logger and show it on stderr at ``verbosity``:
    -1 (``-q``) errors only, 0 errors and :func:`warn_user` warnings, 1 warnings and info,
    2 debug. ``log_file``:
    also append the records (info and up, debug at verbosity 2) to this file, opened here.
    Restores everything on exit."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    level = max(-1, min(verbosity, 2))
    handler.setLevel((logging.WARNING, logging.INFO, logging.DEBUG, logging.ERROR)[level])
    if level == 0:
        handler.addFilter(_Visible())
    handler.addFilter(_not_file_only)
    handlers: list[logging.Handler] = [handler]
    if log_file is not None:
        to_file = logging.FileHandler(log_file, mode="a", encoding="utf-8", delay=False)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        to_file.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
        handlers.append(to_file)
    old_level = LOGGER.level
    for h in handlers:
        LOGGER.addHandler(h)
    LOGGER.setLevel(min(min(h.level for h in handlers), LOGGER.getEffectiveLevel()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _to_log
            yield
    finally:
        for h in handlers:
            LOGGER.removeHandler(h)
            if h is not handler:
                h.close()
        LOGGER.setLevel(old_level)
