"""Low-resolution acquisitions simulated from high-resolution images.

Two forward models:

* :func:`truncate_kspace` -- the mDCSRN paper's LR generation (Sec. 2.6, after Chen et al.,
  ISBI 2018): FFT of the HR image, keep the centre of k-space, inverse FFT. This is what a
  scanner does when it acquires a smaller matrix over the same field of view.
* :func:`thick_slice` -- an anisotropic 2D multi-slice acquisition: a slice profile blurs
  along one axis, slices are ``factor`` voxels apart, and the stack is interpolated back.

All functions take and return plain numpy arrays (x, y, z) and are pure;
:func:`degrade_volume` wraps them for a :class:`~mrenhance.volume.Volume`.

k-space conventions (``truncate_kspace``, ``kept_kspace_mask``)
--------------------------------------------------------------
* Along an axis of ``n`` voxels with factor ``f`` the low matrix has
  ``m = floor(n / f + 0.5)`` voxels (at least 1). Integer frequencies ``k`` run over
  ``numpy.fft.fftfreq(n) * n``; DC is at index 0 (fftn order, apply ``numpy.fft.fftshift``
  to display it centred).
* The kept band is symmetric: ``|k| <= K`` with ``K = (m - 1) // 2``, i.e. ``2K + 1`` lines,
  ``m`` lines for odd ``m`` and ``m - 1`` for even ``m``.
  # choice: the Nyquist line of an even low matrix (k = -m/2) has no partner +m/2, so
  # keeping it would make the result of a real image complex; we drop it (1 line of m).
  The band being symmetric, a real image's truncated version is real before the magnitude
  (up to rounding), and an image band-limited inside the band passes unchanged.
* ``f == 1`` leaves the axis untouched, including an even axis' own Nyquist line, so factors
  of 1 are exactly the identity.
* ``output="same_grid"`` zero-fills back to ``n`` (the LR image on the HR grid, what the
  paper feeds the network); ``output="low_matrix"`` inverse-transforms the ``m`` kept lines
  on an ``m`` grid, scaled by ``m / n`` per axis so the mean intensity is preserved. Low voxel
  ``i`` then sits at HR index ``i * n / m`` (the grids share voxel 0 and are periodic; see
  :mod:`mrenhance.baselines.interpolate`), so ``upsample(low, shape, "sinc")`` gives the
  ``same_grid`` result back.
* Both outputs are magnitudes (an MR magnitude image), float32.

The paper's step 3 reads "inverse FFT and linearly interpolating to the original image
size": literally ``upsample(truncate_kspace(x, f, output="low_matrix"), x.shape,
"linear")``; zero-filling (``same_grid``) is the sinc-interpolated reading of the same step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mrenhance.errors import InputError
from mrenhance.volume import Volume

TAPERS = (None, "hamming", "tukey")
OUTPUTS = ("same_grid", "low_matrix")
PROFILES = ("gaussian", "boxcar")
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def low_matrix_size(n: int, factor: float) -> int:
    """Number of voxels ``m = floor(n / factor + 0.5)`` (>= 1) of the low matrix along an axis."""
    return max(1, int(np.floor(n / factor + 0.5)))


def _check_factors(shape: tuple[int, ...], factors: Sequence[float]) -> tuple[float, ...]:
    try:
        fs = tuple(float(f) for f in factors)
    except TypeError:
        raise InputError(
            f"factors must be one number per axis, e.g. (2, 2, 1); got {factors!r}"
        ) from None
    if len(fs) != len(shape):
        raise InputError(
            f"factors {fs} has {len(fs)} entries for an image of shape {shape}; give one per axis"
        )
    for f in fs:
        if not np.isfinite(f) or f < 1:
            raise InputError(f"factors must be >= 1 (1 leaves an axis untouched); got {fs}")
    return fs


def _band_halfwidth(n: int, factor: float) -> int | None:
    """K of the kept band ``|k| <= K``; None for an untouched axis (factor 1)."""
    if factor == 1:
        return None
    return (low_matrix_size(n, factor) - 1) // 2


def _integer_frequencies(n: int) -> np.ndarray:
    """(n,) integer frequencies in fftn order: 0, 1, ..., -2, -1."""
    return np.rint(np.fft.fftfreq(n) * n).astype(np.int64)


def _taper_values(k: np.ndarray, half: int, taper: str | None, tukey_alpha: float) -> np.ndarray:
    """Weights of the kept frequencies ``k`` (|k| <= half) for the chosen taper."""
    if taper is None:
        return np.ones(k.shape, dtype=np.float64)
    from scipy.signal import windows

    length = 2 * half + 1
    if taper == "hamming":
        win = windows.hamming(length, sym=True)
    else:
        win = windows.tukey(length, alpha=tukey_alpha, sym=True)
    return win[k + half]


def _axis_weights(
    n: int, factor: float, taper: str | None, tukey_alpha: float
) -> tuple[np.ndarray, int | None]:
    """(n,) k-space weights of one axis in fftn order, and the band half-width."""
    half = _band_halfwidth(n, factor)
    if half is None:
        return np.ones(n, dtype=np.float64), None
    k = _integer_frequencies(n)
    w = np.zeros(n, dtype=np.float64)
    kept = np.abs(k) <= half
    w[kept] = _taper_values(k[kept], half, taper, tukey_alpha)
    return w, half


def kept_kspace_mask(shape: Sequence[int], factors: Sequence[float]) -> np.ndarray:
    """Which k-space samples :func:`truncate_kspace` keeps.

    Parameters
    ----------
    shape:
        Image shape, e.g. (x, y, z).
    factors:
        One factor >= 1 per axis (see :func:`truncate_kspace`).

    Returns
    -------
    bool array of ``shape`` in ``numpy.fft.fftn`` order (DC at index 0).
    """
    shape = tuple(int(s) for s in shape)
    fs = _check_factors(shape, factors)
    mask = np.ones(shape, dtype=bool)
    for axis, (n, f) in enumerate(zip(shape, fs, strict=True)):
        w, _ = _axis_weights(n, f, None, 0.5)
        view = [1] * len(shape)
        view[axis] = n
        mask = mask & (w > 0).reshape(view)
    return mask


def _truncate_complex(
    image: np.ndarray,
    factors: Sequence[float],
    *,
    taper: str | None = None,
    tukey_alpha: float = 0.5,
    output: str = "same_grid",
) -> np.ndarray:
    """:func:`truncate_kspace` before the magnitude: the complex image (for tests)."""
    from scipy import fft

    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    if taper not in TAPERS:
        raise InputError(f"taper must be None, 'hamming' or 'tukey'; got {taper!r}")
    if not 0.0 <= tukey_alpha <= 1.0:
        raise InputError(f"tukey_alpha must be in [0, 1]; got {tukey_alpha}")
    if output not in OUTPUTS:
        raise InputError(f"output must be 'same_grid' or 'low_matrix'; got {output!r}")
    fs = _check_factors(image.shape, factors)

    # Only the truncated axes are transformed: factor-1 axes stay bit-exact and cost nothing.
    axes = [a for a, f in enumerate(fs) if f != 1]
    if not axes:
        return image.astype(np.result_type(image.dtype, np.complex64))
    spectrum = fft.fftn(image, axes=axes, workers=1)
    for axis in axes:
        n, f = image.shape[axis], fs[axis]
        w, half = _axis_weights(n, f, taper, tukey_alpha)
        view = [1] * image.ndim
        if output == "same_grid":
            view[axis] = n
            spectrum *= w.reshape(view).astype(spectrum.real.dtype)
            continue
        # low_matrix: move the kept lines k = -K..K to their places k mod m of an m grid,
        # scaled by m / n so the DC term (hence the mean) is preserved by the smaller IFFT.
        m = low_matrix_size(n, f)
        k = np.arange(-half, half + 1)
        kept = np.take(spectrum, k % n, axis=axis)
        view[axis] = k.size
        kept *= (w[k % n] * (m / n)).reshape(view).astype(spectrum.real.dtype)
        new_shape = list(spectrum.shape)
        new_shape[axis] = m
        low = np.zeros(new_shape, dtype=spectrum.dtype)
        index = [slice(None)] * image.ndim
        index[axis] = k % m
        low[tuple(index)] = kept
        spectrum = low
    return fft.ifftn(spectrum, axes=axes, workers=1, overwrite_x=True)


def truncate_kspace(
    image: np.ndarray,
    factors: Sequence[float] = (2, 2, 1),
    *,
    taper: str | None = None,
    tukey_alpha: float = 0.5,
    output: str = "same_grid",
) -> np.ndarray:
    """Simulate a lower-resolution acquisition by keeping only the centre of k-space.

    mDCSRN Sec. 2.6: FFT, truncate the outer part of k-space by ``factors``, inverse FFT.
    Conventions (band, Nyquist line, grid alignment) are in the module docstring.

    Parameters
    ----------
    image:
        (x, y, z) real image (any number of axes, one factor each).
    factors:
        Resolution reduction per axis, each >= 1; 1 leaves that axis untouched. ``(2, 2, 1)``
        is the paper's 2x2 in-plane degradation.
    taper:
        None (sharp cut-off, Gibbs ringing), ``"hamming"`` or ``"tukey"``: a window over the
        kept band of each truncated axis, as scanners apply to reduce ringing.
    tukey_alpha:
        Fraction of the band that the Tukey window tapers (0: boxcar, 1: Hann).
    output:
        ``"same_grid"``: zero-filled back to the input shape (LR on the HR grid);
        ``"low_matrix"``: the reduced matrix, ``floor(n / f + 0.5)`` voxels per axis, with
        the mean intensity preserved.

    Returns
    -------
    float32 magnitude image, ``image.shape`` or the low-matrix shape.
    """
    complex_image = _truncate_complex(
        image, factors, taper=taper, tukey_alpha=tukey_alpha, output=output
    )
    return np.abs(complex_image).astype(np.float32)


def _slice_weights(n: int, factor: int, profile: str, fwhm_vox: float) -> np.ndarray:
    """(n_low, n) weights: row i is slice i's profile integrated over each HR voxel.

    Slice i is centred at HR coordinate ``i * factor + (factor - 1) / 2``, so slice i of a
    boxcar of width ``factor`` covers HR voxels ``[i * factor, (i + 1) * factor)`` exactly.
    Rows are normalised to sum 1 (a partial slab at the end averages what is in the FOV).
    """
    from scipy.special import ndtr

    n_low = -(-n // factor)  # ceil: the last slab may stick out of the FOV
    centres = np.arange(n_low) * factor + (factor - 1) / 2.0
    lo = np.arange(n)[None, :] - 0.5 - centres[:, None]  # voxel edges relative to centre
    hi = lo + 1.0
    if profile == "gaussian":
        sigma = fwhm_vox / _FWHM_PER_SIGMA
        weights = ndtr(hi / sigma) - ndtr(lo / sigma)
    else:  # boxcar of width fwhm_vox: overlap of each voxel with the slab
        half = fwhm_vox / 2.0
        weights = np.clip(np.minimum(hi, half) - np.maximum(lo, -half), 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def thick_slice(
    image: np.ndarray,
    factor: int,
    axis: int = 2,
    *,
    profile: str = "gaussian",
    fwhm_vox: float | None = None,
) -> np.ndarray:
    """Simulate a thick-slice (anisotropic) acquisition on the input grid.

    The image is integrated along ``axis`` with the slice profile, sampled every ``factor``
    voxels, and interpolated back to the input grid with cubic splines.

    Parameters
    ----------
    image:
        (x, y, z) image.
    factor:
        Slice spacing in input voxels (integer >= 1); 1 returns a blurred copy.
    axis:
        The slice axis (2 = z).
    profile:
        ``"gaussian"`` (a smooth RF slice profile) or ``"boxcar"`` (an ideal one).
    fwhm_vox:
        Slice thickness in input voxels: the Gaussian's FWHM or the boxcar's width.
        Default ``factor`` (contiguous slices, no gap, no overlap).

    Returns
    -------
    float32 array of ``image.shape``.

    Notes
    -----
    Slice i is centred at input coordinate ``i * factor + (factor - 1) / 2`` (so a boxcar
    slab of width ``factor`` averages input voxels ``i * factor ... (i + 1) * factor - 1``);
    there are ``ceil(n / factor)`` slices. Back-interpolation repeats the edge slices beyond
    the first and last slice centres.
    # choice: the slices tile the field of view ("fov" alignment) as a 2D multi-slice
    # protocol does, unlike k-space truncation which follows the DFT grid.
    """
    from mrenhance.baselines.interpolate import resample_axis

    image = np.asarray(image)
    if image.ndim == 0 or not -image.ndim <= axis < image.ndim:
        raise InputError(f"thick_slice: axis {axis} does not exist in shape {image.shape}")
    axis = axis % image.ndim
    if int(factor) != factor or factor < 1:
        raise InputError(f"thick_slice: factor must be an integer >= 1, got {factor}")
    factor = int(factor)
    if profile not in PROFILES:
        raise InputError(f"thick_slice: profile must be 'gaussian' or 'boxcar', got {profile!r}")
    fwhm = float(factor if fwhm_vox is None else fwhm_vox)
    if not np.isfinite(fwhm) or fwhm <= 0:
        raise InputError(f"thick_slice: fwhm_vox must be positive, got {fwhm_vox}")

    n = image.shape[axis]
    weights = _slice_weights(n, factor, profile, fwhm)
    moved = np.moveaxis(image.astype(np.float64), axis, -1)
    slices = np.moveaxis(moved @ weights.T, -1, axis)
    # HR voxel j sits at slice coordinate (j - (factor - 1) / 2) / factor.
    positions = (np.arange(n) - (factor - 1) / 2.0) / factor
    return resample_axis(slices, axis, positions, "cubic", boundary="nearest")


def degrade_volume(volume: Volume, kind: str = "kspace", **kwargs: Any) -> Volume:
    """Apply :func:`truncate_kspace` (``kind="kspace"``) or :func:`thick_slice`
    (``kind="thick_slice"``) to a Volume, recording the step in its provenance.

    Parameters
    ----------
    volume:
        3D Volume, or 4D (each frame degraded the same way along the spatial axes).
    kind:
        ``"kspace"`` or ``"thick_slice"``.
    **kwargs:
        Passed on (e.g. ``factors=(2, 2, 1), output="low_matrix"`` or ``factor=3, axis=2``).

    Returns
    -------
    Volume. For ``output="low_matrix"`` the affine becomes ``affine @ diag(n / m)``: voxel 0
    keeps its world position and the voxels grow by ``n / m`` (the DFT grid convention).
    """
    funcs = {"kspace": truncate_kspace, "thick_slice": thick_slice}
    if kind not in funcs:
        raise InputError(f"degrade_volume: kind must be 'kspace' or 'thick_slice', got {kind!r}")
    func = funcs[kind]
    if volume.ndim == 4:
        frames = [func(volume.data[..., t], **kwargs) for t in range(volume.shape[3])]
        data = np.stack(frames, axis=-1)
    else:
        data = func(volume.data, **kwargs)

    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    out = volume.with_data(data, step=f"{func.__name__}({args})")
    if data.shape[:3] != volume.shape[:3]:
        from mrenhance.baselines.interpolate import resampled_affine

        # low voxel i sits at input index i * n / m (DFT grid): affine @ diag(n / m)
        out.affine = resampled_affine(volume.affine, volume.shape, data.shape, "dft")
        out.meta["voxel_size"] = out.voxel_size
    return out
