"""Geometry-preserving image I/O: NIfTI files and DICOM series to and from a Volume."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mrenhance.errors import InputError
from mrenhance.io.dicom import load_dicom
from mrenhance.io.nifti import is_nifti_name, load_nifti, save_nifti, sniff_nifti
from mrenhance.io.validate import check_nan_policy, one_line_error
from mrenhance.volume import Volume

__all__ = ["load", "save", "load_nifti", "save_nifti", "load_dicom"]

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


def _load(p: Path, nan_policy: str, max_voxels: int) -> Volume:
    check_nan_policy(nan_policy, p)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        return load_dicom(p, nan_policy=nan_policy, max_voxels=max_voxels)
    try:
        with open(p, "rb") as fh:
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
    volume: Volume, path: str | os.PathLike, *, overwrite: bool = False, dtype: Any = None
) -> Path:
    """Save ``volume`` as NIfTI (.nii or .nii.gz), atomically; see :func:`save_nifti`."""
    try:
        return save_nifti(volume, path, overwrite=overwrite, dtype=dtype)
    except InputError as e:
        raise one_line_error(e) from e.__cause__
