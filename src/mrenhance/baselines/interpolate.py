"""Interpolation baselines for super-resolution: nearest, (tri)linear, (tri)cubic and sinc.

These are the classical references the SR papers compare against (mDCSRN Table 2 and
Fig. 2: nearest neighbour and bicubic interpolation) and the last step of the paper's LR
generation ("linearly interpolating to the original image size", Sec. 2.6).

Grid conventions
----------------
A low-matrix image of ``m`` voxels along an axis is resampled onto ``n`` voxels. Two ways to
line the grids up are offered (``alignment``):

``"dft"`` (default)
    The way the discrete Fourier transform samples a field of view: low voxel ``i`` sits at
    output index ``i * n / m`` (``i * f`` for an integer factor ``f = n / m``); the grids
    share voxel 0 and are periodic with period ``n`` output voxels. This is how
    :func:`mrenhance.simulate.kspace.truncate_kspace` with ``output="low_matrix"`` relates to
    its input, and how a scanner's zero-filled (ZIP) reconstruction relates to the acquired
    matrix; with it, ``upsample(low, shape, "sinc")`` reproduces
    ``truncate_kspace(image, f, output="same_grid")``.
``"fov"``
    The field-of-view edges coincide: output index ``j`` sits at low coordinate
    ``(j + 0.5) * m / n - 0.5`` (what ``scipy.ndimage.zoom(grid_mode=True)`` and
    ``torch.nn.functional.interpolate(align_corners=False)`` do).

nearest/linear/cubic are ``scipy.ndimage.map_coordinates`` with ``order`` 0/1/3 applied one
axis at a time (a tensor-product spline sampled on a tensor grid is separable, so this equals
one 3D ``map_coordinates`` call; it needs no (3, x, y, z) coordinate array). Outside the
low grid the image is continued by repeating its edge voxels (``boundary="nearest"``).
# choice: "nearest" rather than "grid-wrap": an MR volume is not periodic in image space
# (the top slice of a slab has nothing to do with the bottom one), so wrapping would blend
# opposite edges into the last ``f - 1`` output voxels; "grid-wrap" is offered for
# periodic test data. sinc is periodic by construction (it is the DFT).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrenhance.errors import InputError
from mrenhance.volume import Volume

METHODS = ("nearest", "linear", "cubic", "sinc")
_SPLINE_ORDER = {"nearest": 0, "linear": 1, "cubic": 3}
ALIGNMENTS = ("dft", "fov")
BOUNDARIES = ("nearest", "grid-wrap")


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def source_coordinates(n_in: int, n_out: int, alignment: str = "dft") -> np.ndarray:
    """Low-grid coordinates of the output voxels along one axis.

    Parameters
    ----------
    n_in, n_out:
        Number of voxels along the axis before and after resampling.
    alignment:
        ``"dft"``: output ``j`` at ``j * n_in / n_out``; ``"fov"``: at
        ``(j + 0.5) * n_in / n_out - 0.5`` (see the module docstring).

    Returns
    -------
    (n_out,) float64 array of coordinates in input-voxel units.
    """
    _check_choice("alignment", alignment, ALIGNMENTS)
    j = np.arange(n_out, dtype=np.float64)
    scale = n_in / n_out
    if alignment == "dft":
        return j * scale
    return (j + 0.5) * scale - 0.5


def interpolation_matrix(
    n_in: int, positions: np.ndarray, method: str = "cubic", *, boundary: str = "nearest"
) -> np.ndarray:
    """The linear map from ``n_in`` samples to their interpolated values at ``positions``.

    Built by interpolating each unit impulse with ``scipy.ndimage.map_coordinates``, so it is
    exactly scipy's spline interpolation (prefilter included) along one axis.

    Parameters
    ----------
    n_in:
        Number of input samples.
    positions:
        (n_out,) coordinates in input-sample units (0 is the first sample).
    method:
        ``"nearest"``, ``"linear"`` or ``"cubic"`` (spline order 0, 1, 3).
    boundary:
        ``map_coordinates`` mode: ``"nearest"`` (repeat the edge) or ``"grid-wrap"``
        (periodic).

    Returns
    -------
    (n_out, n_in) float64 matrix ``M`` with ``out = M @ samples``.
    """
    from scipy.ndimage import map_coordinates

    _check_choice("method", method, tuple(_SPLINE_ORDER))
    _check_choice("boundary", boundary, BOUNDARIES)
    positions = np.asarray(positions, dtype=np.float64)
    n_out = positions.shape[0]
    # Column c of M is the interpolant of the impulse e_c: interpolate the identity
    # matrix along its first axis only (second coordinate = the column itself).
    rows = np.broadcast_to(positions[:, None], (n_out, n_in))
    cols = np.broadcast_to(np.arange(n_in, dtype=np.float64)[None, :], (n_out, n_in))
    mat = map_coordinates(
        np.eye(n_in),
        np.stack([rows, cols]),
        order=_SPLINE_ORDER[method],
        mode=boundary,
        prefilter=True,
    )
    # The cubic prefilter's weights decay as 0.27**distance; far ones become float32
    # denormals, which make the matrix product ~10x slower. They are far below rounding.
    mat[np.abs(mat) < 1e-12] = 0.0
    return mat


def resample_axis(
    image: np.ndarray,
    axis: int,
    positions: np.ndarray,
    method: str = "cubic",
    *,
    boundary: str = "nearest",
) -> np.ndarray:
    """Interpolate ``image`` along one axis at the given coordinates.

    Parameters
    ----------
    image:
        Array of any shape; float32 result.
    axis:
        The axis to resample.
    positions:
        (n_out,) coordinates along ``axis`` in voxel units.
    method, boundary:
        As in :func:`interpolation_matrix`.

    Returns
    -------
    float32 array, ``image.shape`` with ``shape[axis] = n_out``.
    """
    image = np.asarray(image)
    mat = interpolation_matrix(image.shape[axis], positions, method, boundary=boundary)
    moved = np.moveaxis(image, axis, -1)
    out = moved @ mat.T.astype(np.float32 if image.dtype == np.float32 else np.float64)
    return np.ascontiguousarray(np.moveaxis(out, -1, axis), dtype=np.float32)


def _as_target_shape(low_shape: tuple[int, ...], target_shape: Sequence[int]) -> tuple[int, ...]:
    target = tuple(int(s) for s in target_shape)
    if len(target) != len(low_shape):
        raise InputError(
            f"upsample: target_shape {target} has {len(target)} axes, the image has "
            f"{len(low_shape)} (shape {low_shape})"
        )
    if any(s < 1 for s in target):
        raise InputError(f"upsample: target_shape must be positive, got {target}")
    return target


def upsample(
    low: np.ndarray,
    target_shape: Sequence[int],
    method: str = "cubic",
    *,
    alignment: str = "dft",
    boundary: str = "nearest",
) -> np.ndarray:
    """Interpolate an image onto a finer (or any) grid covering the same field of view.

    Parameters
    ----------
    low:
        (x, y, z) image (any number of axes), e.g. from
        ``truncate_kspace(image, f, output="low_matrix")``.
    target_shape:
        Output shape, one entry per axis of ``low``; axes whose size does not change are
        left untouched.
    method:
        ``"nearest"``, ``"linear"``, ``"cubic"`` (spline interpolation, order 0/1/3) or
        ``"sinc"`` (Fourier zero-padding with ``scipy.signal.resample``; the Nyquist line of
        an even-sized input is split in two so a real input stays real).
    alignment:
        ``"dft"`` (low voxel ``i`` at output index ``i * n / m``, periodic) or ``"fov"``
        (field-of-view edges coincide); see the module docstring. ``"sinc"`` needs
        ``"dft"``.
    boundary:
        For the spline methods: ``"nearest"`` (repeat the edge voxels, default) or
        ``"grid-wrap"`` (periodic).

    Returns
    -------
    float32 array of ``target_shape``.
    """
    low = np.asarray(low)
    _check_choice("method", method, METHODS)
    _check_choice("alignment", alignment, ALIGNMENTS)
    target = _as_target_shape(low.shape, target_shape)
    out = low.astype(np.float32 if low.dtype != np.float64 else np.float64, copy=True)
    if method == "sinc":
        if alignment != "dft":
            raise InputError("upsample: method 'sinc' samples the DFT grid; use alignment='dft'")
        from scipy.signal import resample

        for axis, (m, n) in enumerate(zip(low.shape, target, strict=True)):
            if m != n:
                out = resample(out, n, axis=axis)
        return np.ascontiguousarray(out, dtype=np.float32)
    for axis, (m, n) in enumerate(zip(low.shape, target, strict=True)):
        if m != n:
            out = resample_axis(
                out, axis, source_coordinates(m, n, alignment), method, boundary=boundary
            )
    return np.ascontiguousarray(out, dtype=np.float32)


def _index_map(n_in: int, n_out: int, alignment: str) -> tuple[float, float]:
    """(scale, offset) with low coordinate = scale * output index + offset along one axis."""
    scale = n_in / n_out
    offset = 0.0 if alignment == "dft" else 0.5 * scale - 0.5
    return scale, offset


def resampled_affine(
    affine: np.ndarray,
    in_shape: Sequence[int],
    out_shape: Sequence[int],
    alignment: str = "dft",
) -> np.ndarray:
    """The affine of a grid resampled from ``in_shape`` to ``out_shape`` (same field of view).

    The new voxel-to-world matrix is ``affine @ T`` where ``T`` maps an output index to the
    input coordinate it was sampled at (:func:`source_coordinates`), so every output voxel's
    world position is the world position it was interpolated at.

    Parameters
    ----------
    affine:
        (4, 4) voxel-to-world matrix of the input grid.
    in_shape, out_shape:
        The three spatial sizes before and after.
    alignment:
        ``"dft"`` or ``"fov"`` (module docstring).

    Returns
    -------
    (4, 4) float64 affine.
    """
    _check_choice("alignment", alignment, ALIGNMENTS)
    t = np.eye(4)
    for axis, (m, n) in enumerate(zip(in_shape[:3], out_shape[:3], strict=True)):
        t[axis, axis], t[axis, 3] = _index_map(int(m), int(n), alignment)
    return np.asarray(affine, dtype=np.float64) @ t


def interpolate_volume(
    volume: Volume,
    zoom: Sequence[float] | None = None,
    *,
    target_shape: Sequence[int] | None = None,
    method: str = "cubic",
    alignment: str = "dft",
    boundary: str = "nearest",
) -> Volume:
    """Resample a :class:`Volume` onto a finer grid and update its affine accordingly.

    This is what the CLI's ``--upsample 2,2,1`` calls: voxels shrink by the zoom factor, the
    field of view stays, and the affine places every new voxel where it was interpolated.

    Parameters
    ----------
    volume:
        3D or 4D Volume; a 4D one is resampled frame by frame along its spatial axes.
    zoom:
        Three factors, output size = ``round(size * zoom)`` (e.g. ``(2, 2, 1)``).
    target_shape:
        Three output sizes instead of ``zoom`` (give exactly one of them).
    method, alignment, boundary:
        As in :func:`upsample`.

    Returns
    -------
    Volume with the new data, affine, ``voxel_size`` and a provenance entry.
    """
    if (zoom is None) == (target_shape is None):
        raise InputError("interpolate_volume: give exactly one of zoom or target_shape")
    spatial = volume.shape[:3]
    if zoom is not None:
        zoom = tuple(float(z) for z in zoom)
        if len(zoom) != 3 or not all(np.isfinite(z) and z > 0 for z in zoom):
            raise InputError(f"interpolate_volume: zoom must be three positive numbers, got {zoom}")
        target = tuple(
            max(1, int(np.floor(s * z + 0.5))) for s, z in zip(spatial, zoom, strict=True)
        )
    else:
        target = _as_target_shape(spatial, target_shape)  # type: ignore[arg-type]
    if volume.ndim == 3:
        data = upsample(volume.data, target, method, alignment=alignment, boundary=boundary)
    else:
        frames = [
            upsample(volume.data[..., t], target, method, alignment=alignment, boundary=boundary)
            for t in range(volume.shape[3])
        ]
        data = np.stack(frames, axis=-1)
    affine = resampled_affine(volume.affine, spatial, target, alignment)
    step = (
        f"interpolate_volume(target_shape={target}, method={method!r}, "
        f"alignment={alignment!r}, boundary={boundary!r})"
    )
    out = volume.with_data(data, step=step)
    out.affine = affine
    out.meta["voxel_size"] = out.voxel_size
    return out
