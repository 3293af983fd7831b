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


def check_same_grid(
    other: Any, image: Any, what: str = "mask", *, nonempty: bool = True
) -> np.ndarray:
    """The data of ``other`` (a mask or label image) if it lies on ``image``'s voxel grid.

    Parameters
    ----------
    other, image:
        :class:`~mrenhance.volume.Volume` s; ``other`` must be 3D (x, y, z) with the shape of
        ``image``'s first three axes and the same affine (within 1% of the smallest voxel).
    what:
        What ``other`` is, for the message (``"mask"``, ``"AIF mask"``, ``"label image"``).
    nonempty:
        Also refuse a mask with no voxel > 0 (every result would be empty or zero).

    Returns
    -------
    numpy.ndarray
        ``other.data`` (x, y, z), unchanged.

    Raises
    ------
    InputError
        One line naming ``other``'s file and the image it does not match.
    """
    src = other.meta.get("source", what)
    img = image.meta.get("source", "the image")
    shape, want = tuple(other.data.shape), tuple(image.data.shape[:3])
    if len(shape) != 3:
        raise InputError(f"{src}: a {what} must be 3D (x, y, z), got shape {shape}")
    if shape != want:
        raise InputError(f"{src}: {what} shape {shape} differs from the image's {want} ({img})")
    a, b = np.asarray(other.affine, float), np.asarray(image.affine, float)
    # choice: 1% of the smallest voxel; a float32 header stores an affine to ~1e-5 mm
    tol = 0.01 * float(np.linalg.norm(b[:3, :3], axis=0).min())
    diff = float(np.abs(a[:3] - b[:3]).max())
    if not diff <= tol:
        raise InputError(
            f"{src}: {what} is on another grid than {img} (the affines differ by up to "
            f"{diff:.3g} mm); resample it onto the image's grid first"
        )
    if nonempty and not np.any(other.data > 0):
        raise InputError(f"{src}: the {what} is empty (no voxel > 0)")
    return other.data


#: b-values up to this many s/mm^2 count as b = 0 volumes (as dipy's ``b0_threshold``)
B0_THRESHOLD = 50.0
#: choice: dipy's ``gradient_table`` tolerance, so a table accepted here also fits tensors
BVEC_UNIT_TOLERANCE = 1e-2


def check_bvals(bvals: np.ndarray, source: str | os.PathLike) -> None:
    """Refuse b-values (N,) s/mm^2 that are not finite or are negative."""
    b = np.asarray(bvals, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(b)):
        raise InputError(f"{source}: b-values hold NaN/Inf")
    if np.any(b < 0):
        i = int(np.flatnonzero(b < 0)[0])
        raise InputError(f"{source}: b-value {b[i]:g} of volume {i} is negative")


def check_bvecs(bvecs: np.ndarray, bvals: np.ndarray | None, source: str | os.PathLike) -> None:
    """Refuse gradient directions (N, 3) of diffusion-weighted volumes (b > 50 s/mm^2; every
    non-zero direction when ``bvals`` is None) that are not unit vectors."""
    g = np.asarray(bvecs, dtype=np.float64)
    norms = np.linalg.norm(g, axis=1)
    if bvals is None:
        weighted = norms > 1e-6
    else:
        weighted = np.asarray(bvals, dtype=np.float64).reshape(-1) > B0_THRESHOLD
    bad = weighted & ~(np.abs(norms - 1.0) <= BVEC_UNIT_TOLERANCE)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        b = "" if bvals is None else f" (b = {np.asarray(bvals).reshape(-1)[i]:g})"
        raise InputError(
            f"{source}: the gradient direction of volume {i}{b} has length {norms[i]:.4g}; "
            f"b-vectors must be unit vectors ({int(bad.sum())} of {g.shape[0]} are not)"
        )


SERIES_KINDS = ("t1", "dwi", "dsc")
# choice: 10 frames is the fewest from which a DSC curve has a baseline (a few frames
# before the bolus), a first pass and a recirculation tail; clinical series hold 40-120.
DSC_MIN_FRAMES = 10
# choice: frame intervals may vary by 10% (DICOM acquisition times are rounded); the
# deconvolution and the networks assume one frame interval
DSC_FRAME_JITTER = 0.1
# choice: a JSON sidecar's RepetitionTime agrees with the header within 1%
TR_TOLERANCE = 0.01


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
        _check_dsc_timing(volume, n, src)
        data = np.asarray(volume.data)
        if not np.any(data != data[..., :1]):  # (NaN differs from itself: refused later)
            raise InputError(
                f"{src}: the DSC series does not change over time (every frame is the same: "
                "no contrast bolus passes)"
            )
        return volume
    bvals = volume.meta.get("bvals")
    if bvals is None:
        raise InputError(f"{src}: DWI series has no b-values (put a .bval file beside it)")
    n_b = int(np.size(bvals))
    if n_b != n:
        raise InputError(f"{src}: {n_b} b-values for {n} volumes")
    check_bvals(bvals, src)
    bvecs = volume.meta.get("bvecs")
    if bvecs is not None and np.shape(bvecs) != (n, 3):
        raise InputError(
            f"{src}: gradient directions have shape {np.shape(bvecs)}, expected ({n}, 3)"
        )
    if bvecs is not None:
        check_bvecs(bvecs, bvals, src)
    return volume


def dsc_frame_interval(volume: Any) -> float | None:
    """The frame interval (s) of a DSC series: the median step of ``meta["times_s"]``
    (DICOM frame times), else ``meta["tr_s"]`` (the NIfTI header); None when unknown."""
    times = volume.meta.get("times_s")
    if times is not None and np.size(times) > 1:
        return float(np.median(np.diff(np.asarray(times, dtype=np.float64))))
    tr = volume.meta.get("tr_s")
    return float(tr) if tr is not None and np.isfinite(tr) and tr > 0 else None


def _check_dsc_timing(volume: Any, n: int, src: Any) -> None:
    """Frame times (DICOM) one per frame, increasing and evenly spaced; a JSON sidecar's
    ``RepetitionTime`` and ``VolumeTiming`` (BIDS) in agreement with the series."""
    from mrenhance.io.sidecar import read_sidecar, sidecar_path

    times = volume.meta.get("times_s")
    if times is not None:
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        if t.size != n:
            raise InputError(f"{src}: {t.size} frame times for {n} frames")
        step = np.diff(t)
        if not np.all(np.isfinite(step)) or np.any(step <= 0):
            raise InputError(f"{src}: the frame times are not increasing")
        median = float(np.median(step))
        if np.any(np.abs(step - median) > DSC_FRAME_JITTER * median):
            raise InputError(
                f"{src}: uneven frame times (intervals {step.min():.3g} to {step.max():.3g} "
                "s); a DSC series needs one frame interval"
            )
    path = volume.meta.get("source")
    doc = read_sidecar(path) if path else None
    if not doc:
        return
    side = sidecar_path(path)
    tr_side = doc.get("RepetitionTime")
    tr = volume.meta.get("tr_s")
    if tr_side is not None:
        if isinstance(tr_side, bool) or not isinstance(tr_side, (int, float)) or not tr_side > 0:
            raise InputError(f"{side}: RepetitionTime {tr_side!r} is not a time in seconds")
        if tr is not None and abs(float(tr_side) - tr) > TR_TOLERANCE * tr:
            raise InputError(
                f"{side}: RepetitionTime {float(tr_side):g} s differs from the frame interval "
                f"{tr:g} s in the header of {src}"
            )
    for key in ("VolumeTiming", "FrameTimesStart"):
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            raise InputError(f"{side}: {key} must be a list of times, got {value!r:.40}")
        if len(value) != n:
            raise InputError(f"{side}: {key} lists {len(value)} times, the series has {n} frames")
