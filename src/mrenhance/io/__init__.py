"""Geometry-preserving image I/O: NIfTI files and DICOM series to and from a Volume."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from mrenhance.errors import InputError
from mrenhance.io.atomic import check_file_name
from mrenhance.io.dicom import load_dicom
from mrenhance.io.nifti import is_nifti_name, load_nifti, save_nifti, sniff_nifti
from mrenhance.io.validate import check_nan_policy, one_line_error
from mrenhance.volume import Volume

__all__ = ["input_dtype", "load", "save", "load_nifti", "save_nifti", "load_dicom"]

_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def load(path: str | os.PathLike, *, nan_policy: str = "error", max_voxels: int = 2**31) -> Volume:
    """Load an image, dispatching on what ``path`` is.

    Parameters
    ----------
    path:
        A ``.nii``/``.nii.gz`` file, a folder holding one DICOM series, or a single DICOM
        file (e.g. an Enhanced MR multi-frame file).
    nan_policy:
        ``"error"`` (default) or ``"zero"``, see :func:`mrenhance.io.validate.check_finite`.
    max_voxels:
        Refuse images with more voxels, checked before the data are read.

    Returns
    -------
    Volume
        float32 (x, y, z[, t]) data, RAS+ mm affine, and meta (``source``, ``voxel_size``,
        ``provenance``, plus format-specific keys).

    Raises
    ------
    InputError
        A missing, unreadable, unknown or broken input; one line starting with the path.
    """
    try:
        return _load(Path(path).expanduser(), nan_policy, max_voxels)
    except InputError as e:
        raise one_line_error(e) from e.__cause__
    except (OSError, UnicodeError) as e:  # a reader's own: still the user's file
        raise InputError(f"{path}: cannot read file ({_reason(e)})") from e


def check_input_file(path: str | os.PathLike) -> os.stat_result:
    """The ``stat`` of an input that is a regular file or a folder, checked before it is
    opened; else a one-line InputError.

    A FIFO, socket or device is refused without being opened (reading one blocks for
    ever or never ends); so is a name the file system cannot hold (too long), rather than
    an ``OSError`` from deep inside a reader.
    """
    p = check_file_name(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{p}: no such file or folder") from None
    except NotADirectoryError:
        raise InputError(f"{p}: no such file or folder (a parent is not a folder)") from None
    except PermissionError:
        raise InputError(f"{p}: cannot read file (permission denied)") from None
    except OSError as e:
        reason = "file name too long" if e.errno == errno.ENAMETOOLONG else e.strerror or e
        raise InputError(f"{p}: cannot read file ({reason})") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        kind = _SPECIAL_KINDS.get(stat.S_IFMT(st.st_mode), "special file")
        raise InputError(f"{p}: is a {kind}, not a regular file (not read)")
    return st


_SPECIAL_KINDS = {
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def _load(p: Path, nan_policy: str, max_voxels: int) -> Volume:
    check_nan_policy(nan_policy, p)
    st = check_input_file(p)
    if stat.S_ISDIR(st.st_mode):
        return load_dicom(p, nan_policy=nan_policy, max_voxels=max_voxels)
    try:
        # O_NONBLOCK: should the file be swapped for a FIFO after the check, the open
        # does not wait for a writer; fstat below then refuses it
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise InputError(f"{p}: not a regular file (not read)")
            head = fh.read(352)
    except PermissionError as e:
        raise InputError(f"{p}: cannot read file (permission denied)") from e
    except OSError as e:
        raise InputError(f"{p}: cannot read file ({e.strerror or e})") from e
    if is_nifti_name(p) or sniff_nifti(head):
        from mrenhance.io.bids_asl import attach_asl_context

        # a BIDS *_asl.nii.gz: its aslcontext.tsv / asl.json beside it go into meta
        return attach_asl_context(load_nifti(p, nan_policy=nan_policy, max_voxels=max_voxels), p)
    if head[128:132] == b"DICM" or p.suffix.lower() in _DICOM_SUFFIXES:
        return load_dicom(p, nan_policy=nan_policy, max_voxels=max_voxels)
    raise InputError(
        f"{p}: unknown file type (expected .nii, .nii.gz, a DICOM file or a folder "
        "holding one DICOM series)"
    )


def save(
    volume: Volume,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: Any = None,
    format: str = "nifti",  # the name of the CLI option (--format)
) -> Path:
    """Save ``volume`` atomically: NIfTI (.nii or .nii.gz, :func:`save_nifti`; ``dtype``
    the on-disk type, or ``"input"`` for :func:`input_dtype`) or, with ``format="dicom"``,
    a DICOM series folder (:func:`mrenhance.io.dicom_write.save_dicom`: 16-bit pixels with
    a rescale, whatever ``dtype``)."""
    try:
        if format == "dicom":
            from mrenhance.io.dicom_write import save_dicom

            return save_dicom(volume, path, overwrite=overwrite)
        if format != "nifti":
            raise InputError(f"{path}: unknown output format {format!r} (use nifti or dicom)")
        if isinstance(dtype, str) and dtype == "input":
            dtype = input_dtype(volume)
        return save_nifti(volume, path, overwrite=overwrite, dtype=dtype)
    except InputError as e:
        raise one_line_error(e) from e.__cause__
    except (OSError, UnicodeError) as e:  # disk full, read-only file system, ...
        raise InputError(f"{path}: cannot write file ({_reason(e)})") from e


def input_dtype(volume: Volume) -> np.dtype:
    """The on-disk type ``--dtype input`` writes: the input's integer type
    (``meta["stored_dtype"]``: int16, uint8, ...), float32 for a float or unknown one.

    An integer type gets scl_slope/scl_inter chosen to fit the output's range (nothing is
    clipped; each value is within half a step of the float result); see :func:`save_nifti`.
    """
    try:
        dt = np.dtype(volume.meta.get("stored_dtype") or "float32")
    except TypeError:
        return np.dtype(np.float32)
    return dt if dt.kind in "iu" and dt.itemsize <= 4 else np.dtype(np.float32)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
