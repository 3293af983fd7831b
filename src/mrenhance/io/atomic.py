"""Atomic writes: a temp file in the destination folder, fsync, then ``os.replace``.

A reader (or a crash) sees either the old file or the complete new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mrenhance.errors import InputError, OutputExistsError


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output path before any work is done; raise a one-line error if unusable."""
    p = Path(path)
    if p.exists() and p.is_dir():
        raise InputError(f"{p}: output path is a directory")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: output exists (use --overwrite to replace it)")
    if not p.parent.exists():
        raise InputError(f"{p}: output folder {p.parent} does not exist")
    if not os.access(p.parent, os.W_OK):
        raise InputError(f"{p}: output folder {p.parent} is not writable")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The temp name keeps the final suffixes (``.nii.gz``) so writers that look at the
    extension behave. On any exception the temp file is removed and ``path`` is untouched.
    """
    final = check_output_path(path, overwrite)
    suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".gz") else final.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        if final.exists() and not overwrite:
            raise OutputExistsError(f"{final}: output exists (use --overwrite to replace it)")
        os.replace(tmp_path, final)
        with contextlib.suppress(OSError):
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite)
