"""Checks shared by the loaders: finite voxels, sane shapes, usable affines.

Every check raises :class:`mrenhance.errors.InputError` with one line that starts with the
offending file, so a batch job over patient data can log the line and go on.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from mrenhance.errors import InputError

NAN_POLICIES = ("error", "zero")

# choice: 64 Mi voxels per chunk keeps the temporary boolean mask of the finite test small
# (64 MiB) for any volume size.
_CHUNK_VOXELS = 1 << 26


def check_nan_policy(nan_policy: str, source: str | os.PathLike) -> str:
    """Return ``nan_policy`` if it is one of :data:`NAN_POLICIES`, else raise InputError."""
    if nan_policy not in NAN_POLICIES:
        raise InputError(
            f"{source}: unknown nan_policy {nan_policy!r} "
            f"(expected one of {', '.join(NAN_POLICIES)})"
        )
    return nan_policy


def _chunks(data: np.ndarray):
    """Views of ``data`` along its first axis, each about ``_CHUNK_VOXELS`` voxels."""
    if data.ndim == 0 or data.size <= _CHUNK_VOXELS:
        yield data
        return
    per_row = max(1, data.size // data.shape[0])
    step = max(1, _CHUNK_VOXELS // per_row)
    for start in range(0, data.shape[0], step):
        yield data[start : start + step]


def count_nonfinite(data: np.ndarray) -> int:
    """Number of NaN or +-Inf voxels in ``data`` (any shape); 0 for integer arrays."""
    if not np.issubdtype(data.dtype, np.inexact):
        return 0
    return int(sum(int(np.count_nonzero(~np.isfinite(c))) for c in _chunks(data)))


def check_finite(
    data: np.ndarray, source: str | os.PathLike, nan_policy: str = "error"
) -> np.ndarray:
    """Apply the NaN/Inf policy to an image.

    Parameters
    ----------
    data:
        Image array of any shape, typically float32 (x, y, z[, t]).
    source:
        The file the data came from; it starts every error message.
    nan_policy:
        ``"error"``: raise :class:`InputError` if any voxel is NaN or +-Inf.
        ``"zero"``: replace those voxels by 0 (in place when ``data`` is writeable).

    Returns
    -------
    numpy.ndarray
        ``data`` itself (possibly modified in place) or a writeable copy with the
        non-finite voxels set to 0. Loaders record ``"nan_policy=zero: replaced N
        non-finite voxels"`` in ``meta["provenance"]``; use :func:`count_nonfinite`
        before calling to know N.
    """
    check_nan_policy(nan_policy, source)
    n_bad = count_nonfinite(data)
    if n_bad == 0:
        return data
    if nan_policy == "error":
        raise InputError(
            f"{source}: {n_bad} NaN/Inf voxels (use --nan-policy zero to replace them with 0)"
        )
    if not data.flags.writeable:
        data = data.copy()
    for c in _chunks(data):
        c[~np.isfinite(c)] = 0
    return data


def one_line(message: str) -> str:
    """``message`` with line breaks and other control characters replaced by ``?``.

    Error messages quote file names and header strings, which a damaged or hostile file
    can fill with newlines; the CLI promises one line per error. The bytes of a file name
    that is not UTF-8 are spelled out (``caf\\xe9.nii.gz``), not replaced.
    """
    from mrenhance.errors import printable

    return "".join(ch if ch.isprintable() else "?" for ch in printable(message))


def one_line_error(error: InputError) -> InputError:
    """The same error with a one-line message (the same object if it already is)."""
    msg = str(error)
    clean = one_line(msg)
    if clean == msg:
        return error
    new = type(error)(clean)
    new.__cause__ = error
    return new


def check_spatial_shape(
    shape: tuple[int, ...], source: str | os.PathLike, max_voxels: int
) -> tuple[int, ...]:
    """Validate an image shape before any data is read.

    Trailing singleton axes beyond the third are dropped ((x, y, z, 1) -> (x, y, z);
    (x, y, z, t, 1) -> (x, y, z, t)). The result must be 3D or 4D with every axis >= 1 and
    at most ``max_voxels`` voxels in all.

    Returns
    -------
    tuple of int
        The squeezed shape, (x, y, z) or (x, y, z, t).
    """
    dims = tuple(int(d) for d in shape)
    if any(d < 1 for d in dims):
        raise InputError(f"{source}: image has a zero-length or negative axis, shape {dims}")
    squeezed = dims
    while len(squeezed) > 3 and squeezed[-1] == 1:
        squeezed = squeezed[:-1]
    if len(squeezed) not in (3, 4):
        raise InputError(f"{source}: expected a 3D or 4D image, got shape {dims}")
    n_vox = math.prod(squeezed)
    if n_vox > max_voxels:
        raise InputError(
            f"{source}: image shape {dims} has {n_vox} voxels, more than the limit of "
            f"{max_voxels} (max_voxels)"
        )
    return squeezed


def check_affine(affine: np.ndarray, source: str | os.PathLike) -> np.ndarray:
    """Return ``affine`` as float64 (4, 4) if it is finite and its 3x3 part invertible.

    "Invertible" here means the smallest singular value of the 3x3 part is above 1e-6 mm
    and above 1e-8 times the largest one: a degenerate voxel axis makes every later
    resampling and orientation step meaningless.
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise InputError(f"{source}: affine must be 4x4, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{source}: affine has NaN/Inf entries")
    sv = np.linalg.svd(a[:3, :3], compute_uv=False)
    # choice: 1e-6 mm / 1e-8 relative; real voxel sizes are 1e-3..1e2 mm.
    if sv[-1] <= 1e-6 or sv[-1] <= 1e-8 * sv[0]:
        raise InputError(
            f"{source}: affine is not invertible (voxel axes degenerate, singular values "
            f"{', '.join(f'{v:.3g}' for v in sv)})"
        )
    return a


SERIES_KINDS = ("t1", "dwi", "dsc")
# choice: 10 frames is the fewest from which a DSC curve has a baseline (a few frames
# before the bolus), a first pass and a recirculation tail; clinical series hold 40-120.
DSC_MIN_FRAMES = 10


def check_series(volume: Any, kind: str, source: str | os.PathLike | None = None) -> Any:
    """Check that a loaded image is the kind of series a method needs.

    Parameters
    ----------
    volume:
        A :class:`~mrenhance.volume.Volume`: ``data`` (x, y, z) or (x, y, z, t) and
        ``meta`` (``bvals`` (t,) s/mm^2, ``bvecs`` (t, 3) for diffusion series).
    kind:
        ``"t1"``: a 3D image. ``"dwi"``: 4D, with one b-value per volume (``meta["bvals"]``,
        from ``.bval`` sidecars or DICOM) and, if present, one gradient direction per
        volume (``meta["bvecs"]`` (t, 3)). ``"dsc"``: 4D with at least
        :data:`DSC_MIN_FRAMES` time frames.
    source:
        The file named in errors; default ``volume.meta["source"]``.

    Returns
    -------
    Volume
        ``volume`` itself.

    Raises
    ------
    InputError
        One line naming the file and what is missing.
    """
    src = source if source is not None else volume.meta.get("source", "input")
    if kind not in SERIES_KINDS:
        raise InputError(
            f"{src}: unknown series kind {kind!r} (expected one of {', '.join(SERIES_KINDS)})"
        )
    shape = tuple(volume.data.shape)
    if kind == "t1":
        if len(shape) != 3:
            raise InputError(f"{src}: a T1 image must be 3D, got shape {shape}")
        return volume
    if len(shape) != 4:
        raise InputError(f"{src}: a {kind.upper()} series must be 4D (x, y, z, t), got {shape}")
    n = shape[3]
    if kind == "dsc":
        if n < DSC_MIN_FRAMES:
            raise InputError(
                f"{src}: DSC series has {n} time frames, at least {DSC_MIN_FRAMES} are needed"
            )
        return volume
    bvals = volume.meta.get("bvals")
    if bvals is None:
        raise InputError(f"{src}: DWI series has no b-values (put a .bval file beside it)")
    n_b = int(np.size(bvals))
    if n_b != n:
        raise InputError(f"{src}: {n_b} b-values for {n} volumes")
    bvecs = volume.meta.get("bvecs")
    if bvecs is not None and np.shape(bvecs) != (n, 3):
        raise InputError(
            f"{src}: gradient directions have shape {np.shape(bvecs)}, expected ({n}, 3)"
        )
    return volume
