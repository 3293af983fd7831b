"""Image-quality metrics used by the papers: PSNR, SSIM (2D/3D), NRMSE, L1/L2, SNR, contrast.

Every function here is pure: it takes numpy arrays and returns Python floats (or an array
for maps), never reads files or globals. Images are ``(x, y, z)`` or ``(x, y)`` arrays in
voxel order; a ``mask`` is a boolean array of the same shape that selects the voxels a
metric is computed over (e.g. the brain or the white matter, PVS paper Sec. 3: "PSNR and
SSIM were measured in the white matter as well as in the whole brain region").

All comparison metrics take ``x`` (the image under test) first and ``reference`` (the
ground truth) second, mirroring ``skimage.metrics`` with the order swapped to read as
"metric of x against the reference". Without a mask, :func:`psnr`, :func:`ssim` and
:func:`nrmse` equal their ``skimage.metrics`` counterparts (tested).

Problems with the inputs (shape mismatch, empty mask, NaN or Inf in the voxels a metric
reads, a zero data range) raise :class:`mrenhance.errors.InputError` with a one-line
message that starts with the metric's name.

Recipes name metrics through :data:`METRICS` and :func:`compute_metrics`.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from mrenhance.errors import InputError

__all__ = [
    "METRICS",
    "compute_metrics",
    "contrast_ratio",
    "contrast_to_noise",
    "l1",
    "l2",
    "mae",
    "mse",
    "nrmse",
    "psnr",
    "repetition_correlation",
    "rmse",
    "snr",
    "ssim",
    "voxelwise_correlation",
]

# Wang et al. 2004, Sec. III-C: C1 = (K1 L)^2, C2 = (K2 L)^2 with K1 = 0.01, K2 = 0.03, and an
# 11-tap circular-symmetric Gaussian window of sigma 1.5 (truncated at 3.5 sigma like skimage).
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_TRUNCATE = 3.5


# ---------------------------------------------------------------------------------------------
# input checks


def _as_float_array(name: str, what: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating)
    ):
        raise InputError(f"{name}: {what} must be a real numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _as_mask(name: str, what: str, mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != shape:
        raise InputError(f"{name}: {what} has shape {m.shape} but the image has shape {shape}")
    m = m.astype(bool, copy=False)
    if not m.any():
        raise InputError(f"{name}: {what} is empty (selects no voxel)")
    return m


def _check_finite(name: str, what: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        n_bad = int(np.count_nonzero(~np.isfinite(values)))
        raise InputError(f"{name}: {what} contains {n_bad} NaN or Inf values")


def _pair(
    name: str, x: Any, reference: Any, mask: Any | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate a (x, reference, mask) triple; return float64 arrays and a bool mask or None."""
    xa = _as_float_array(name, "x", x)
    ra = _as_float_array(name, "reference", reference)
    if xa.shape != ra.shape:
        raise InputError(f"{name}: x has shape {xa.shape} but reference has shape {ra.shape}")
    if xa.size == 0:
        raise InputError(f"{name}: the images are empty (shape {xa.shape})")
    m = None if mask is None else _as_mask(name, "mask", mask, xa.shape)
    return xa, ra, m


def _select(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return a.ravel() if mask is None else a[mask]


def _pair_values(
    name: str, x: Any, reference: Any, mask: Any | None
) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D vectors of the voxels a voxel-wise metric reads; they must be finite."""
    xa, ra, m = _pair(name, x, reference, mask)
    xv, rv = _select(xa, m), _select(ra, m)
    # Only the voxels the metric reads must be finite: NaN outside a brain mask is common.
    _check_finite(name, "x" if mask is None else "x inside the mask", xv)
    _check_finite(name, "reference" if mask is None else "reference inside the mask", rv)
    return xv, rv


def _data_range(name: str, data_range: float | None, reference_values: np.ndarray) -> float:
    if data_range is None:
        r = float(reference_values.max() - reference_values.min())
    else:
        r = float(data_range)
        if not np.isfinite(r):
            raise InputError(f"{name}: data_range must be finite, got {data_range}")
    if r <= 0:
        raise InputError(
            f"{name}: data_range is {r:g}; pass a positive data_range "
            "(the reference is constant over the voxels used)"
        )
    return r


# ---------------------------------------------------------------------------------------------
# voxel-wise error metrics


def mse(x: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error, ``mean((x - reference)**2)`` over the (masked) voxels.

    Parameters
    ----------
    x, reference : (x, y, z) or (x, y) arrays
        Image under test and ground truth, same shape, intensity units.
    mask : array of the same shape, optional
        Voxels to average over (nonzero = inside); all voxels if None.

    Returns
    -------
    float
        In squared intensity units. Alias :func:`l2` (the "L2" of the stU-Net paper, Table 1).
    """
    xv, rv = _pair_values("mse", x, reference, mask)
    return float(np.mean((xv - rv) ** 2))


def rmse(x: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root mean squared error, ``sqrt(mse(x, reference, mask))``, in intensity units."""
    xv, rv = _pair_values("rmse", x, reference, mask)
    return float(np.sqrt(np.mean((xv - rv) ** 2)))


def mae(x: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error, ``mean(|x - reference|)`` over the (masked) voxels.

    In intensity units. Alias :func:`l1` (the "L1" of the stU-Net paper, Table 1; with a tumour
    mask it is their "t-L1").
    """
    xv, rv = _pair_values("mae", x, reference, mask)
    return float(np.mean(np.abs(xv - rv)))


l1 = mae
l2 = mse


def psnr(
    x: np.ndarray,
    reference: np.ndarray,
    data_range: float | None = None,
    mask: np.ndarray | None = None,
) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / mse)``.

    Parameters
    ----------
    x, reference : (x, y, z) or (x, y) arrays
        Image under test and ground truth, same shape.
    data_range : float, optional
        The peak-to-peak intensity range ``L`` (intensity units). If None it is
        ``reference.max() - reference.min()`` over the masked voxels (all voxels without a
        mask); pass it explicitly to compare numbers across images or papers.
    mask : bool array of the same shape, optional
        Only these voxels enter the MSE (and the default data range).

    Returns
    -------
    float
        PSNR in dB; ``inf`` when x equals the reference on every voxel used.
    """
    xv, rv = _pair_values("psnr", x, reference, mask)
    err = float(np.mean((xv - rv) ** 2))
    if err == 0.0:
        return float("inf")
    r = _data_range("psnr", data_range, rv)
    return float(10.0 * np.log10(r * r / err))


_NRMSE_NORMALIZATIONS = ("euclidean", "min-max", "mean")


def nrmse(
    x: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    normalization: str = "euclidean",
) -> float:
    """Normalised root mean squared error, ``rmse / denominator``.

    The denominators are those of ``skimage.metrics.normalized_root_mse`` (equal to it without
    a mask), computed from the reference over the masked voxels:

    - ``"euclidean"``: ``sqrt(mean(reference**2))``, so NRMSE = ||x - ref|| / ||ref||;
    - ``"min-max"``: ``reference.max() - reference.min()``;
    - ``"mean"``: ``reference.mean()``.

    Parameters
    ----------
    x, reference : (x, y, z) or (x, y) arrays
    mask : bool array of the same shape, optional
    normalization : {"euclidean", "min-max", "mean"}
        Case-insensitive.

    Returns
    -------
    float
        Dimensionless.
    """
    norm = str(normalization).lower()
    if norm not in _NRMSE_NORMALIZATIONS:
        raise InputError(
            f"nrmse: unknown normalization {normalization!r}; "
            f"expected one of {', '.join(_NRMSE_NORMALIZATIONS)}"
        )
    xv, rv = _pair_values("nrmse", x, reference, mask)
    if norm == "euclidean":
        denom = float(np.sqrt(np.mean(rv * rv)))
    elif norm == "min-max":
        denom = float(rv.max() - rv.min())
    else:
        denom = float(rv.mean())
    if denom == 0.0:
        raise InputError(f"nrmse: the {norm} normalisation of the reference is zero")
    return float(np.sqrt(np.mean((xv - rv) ** 2)) / denom)


# ---------------------------------------------------------------------------------------------
# SSIM


def ssim(
    x: np.ndarray,
    reference: np.ndarray,
    data_range: float | None = None,
    mask: np.ndarray | None = None,
    spatial_dims: int | None = None,
    sigma: float = 1.5,
    return_map: bool = False,
) -> float | tuple[float, np.ndarray]:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, in 2D or 3D.

    Local means, variances and the covariance are Gaussian-weighted (``sigma`` voxels,
    truncated at 3.5 sigma: an 11-tap window for sigma 1.5) with population normalisation,
    ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` where ``L`` is the data range. Image borders are
    reflected (half-sample symmetric) as in ``skimage``. Computed in float64 (skimage uses
    float32 for float32 inputs; the two agree to ~1e-7 on a T1). A whole 197x233x189 volume
    takes about 2 s on one core and ~8 volume-sized float64 arrays of memory.

    How the SSIM map is averaged:

    - without a mask, over the map cropped by the window radius ``(win_size - 1) // 2`` on every
      filtered axis; this equals ``skimage.metrics.structural_similarity(x, reference,
      gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=L)``;
    - with a mask, over the mask voxels of the full (uncropped) map. The window still sees the
      voxels around the mask, so this is "SSIM evaluated at the mask voxels", not the SSIM of
      the image with everything outside the mask removed. # choice: no border crop with a
      mask; a brain mask is normally far from the array border.

    Parameters
    ----------
    x, reference : (x, y, z) or (x, y) arrays
        Image under test and ground truth, same shape; every voxel must be finite because the
        window reads all of them.
    data_range : float, optional
        ``L``, in intensity units. If None, ``reference.max() - reference.min()`` over the
        masked voxels (all voxels without a mask).
    mask : bool array of the same shape, optional
        Voxels at which the SSIM map is averaged.
    spatial_dims : {2, 3}, optional
        Default: the array's dimension. ``spatial_dims=2`` on a 3D array computes 2D SSIM on
        each slice along the last axis (no smoothing across slices); the value is the mean of
        the per-slice means (equivalently the mean over all kept voxels, since every slice
        keeps as many).
    sigma : float
        Standard deviation of the Gaussian window, in voxels.
    return_map : bool
        Also return the full SSIM map (same shape as x, float64, not cropped).

    Returns
    -------
    float or (float, ndarray)
        Mean SSIM (dimensionless, at most 1), and the map if ``return_map``.
    """
    xa, ra, m = _pair("ssim", x, reference, mask)
    if xa.ndim not in (2, 3):
        raise InputError(f"ssim: expected a 2D or 3D image, got shape {xa.shape}")
    dims = xa.ndim if spatial_dims is None else int(spatial_dims)
    if dims not in (2, 3) or dims > xa.ndim:
        raise InputError(
            f"ssim: spatial_dims={spatial_dims} is not possible for an image of shape {xa.shape}"
        )
    if not (np.isfinite(sigma) and sigma > 0):
        raise InputError(f"ssim: sigma must be a positive number of voxels, got {sigma}")
    _check_finite("ssim", "x", xa)
    _check_finite("ssim", "reference", ra)
    r = _data_range("ssim", data_range, _select(ra, m))

    radius = int(SSIM_TRUNCATE * sigma + 0.5)  # the radius scipy.ndimage uses
    win_size = 2 * radius + 1
    filtered_axes = tuple(range(dims))  # for 2D-on-3D: the first two axes, slices along z
    small = [xa.shape[a] for a in filtered_axes if xa.shape[a] < win_size]
    if small:
        raise InputError(
            f"ssim: image of shape {xa.shape} is smaller than the {win_size}-voxel window "
            f"(sigma {sigma}) along a filtered axis"
        )
    sigmas = tuple(sigma if a in filtered_axes else 0.0 for a in range(xa.ndim))

    def smooth(a: np.ndarray) -> np.ndarray:
        # sigma 0 leaves an axis unfiltered, which gives slice-wise 2D SSIM for spatial_dims=2.
        return gaussian_filter(a, sigmas, mode="reflect", truncate=SSIM_TRUNCATE)

    # Population (co)variances, Wang et al. 2004 Eqs. (14)-(16) with a weighted window.
    # In-place arithmetic keeps the peak at about eight image-sized float64 arrays.
    ux = smooth(xa)
    uy = smooth(ra)
    vx = smooth(xa * xa)
    vx -= ux * ux
    vy = smooth(ra * ra)
    vy -= uy * uy
    vxy = smooth(xa * ra)
    del xa, ra
    c1 = (SSIM_K1 * r) ** 2
    c2 = (SSIM_K2 * r) ** 2
    # Eq. (13): SSIM = (2 ux uy + C1)(2 sxy + C2) / ((ux^2 + uy^2 + C1)(sx^2 + sy^2 + C2)).
    a1 = ux * uy
    vxy -= a1
    a1 *= 2.0
    a1 += c1
    ux *= ux
    uy *= uy
    b1 = ux
    b1 += uy
    b1 += c1
    del uy
    a2 = vxy
    a2 *= 2.0
    a2 += c2
    b2 = vx
    b2 += vy
    b2 += c2
    del vy
    a1 *= a2
    b1 *= b2
    smap = a1
    smap /= b1

    if m is None:
        pad = (win_size - 1) // 2
        crop = tuple(slice(pad, n - pad) if a in filtered_axes else slice(None)
                     for a, n in enumerate(smap.shape))  # fmt: skip
        value = float(smap[crop].mean(dtype=np.float64))
    else:
        value = float(smap[m].mean(dtype=np.float64))
    if return_map:
        return value, smap
    return value


# ---------------------------------------------------------------------------------------------
# region-of-interest measures (ASL paper, Sec. 2.4)


def _roi_values(name: str, what: str, image: np.ndarray, roi: Any) -> np.ndarray:
    m = _as_mask(name, what, roi, image.shape)
    values = image[m]
    _check_finite(name, f"image inside {what}", values)
    return values


def _image(name: str, image: Any) -> np.ndarray:
    arr = _as_float_array(name, "image", image)
    if arr.size == 0:
        raise InputError(f"{name}: the image is empty (shape {arr.shape})")
    return arr


def _noise_std(name: str, image: np.ndarray, noise_mask: Any, ddof: int) -> float:
    noise = _roi_values(name, "noise_mask", image, noise_mask)
    if noise.size <= ddof:
        raise InputError(f"{name}: noise_mask has {noise.size} voxel(s); need more than {ddof}")
    sd = float(np.std(noise, ddof=ddof))
    if sd == 0.0:
        raise InputError(f"{name}: the image is constant inside noise_mask (zero std)")
    return sd


def snr(
    image: np.ndarray, signal_mask: np.ndarray, noise_mask: np.ndarray, *, ddof: int = 1
) -> float:
    """Signal-to-noise ratio: mean inside ``signal_mask`` / std inside ``noise_mask``.

    ASL paper (Sec. 2.4): "the mean signal of a grey matter ROI divided by the standard
    deviation of a white matter ROI" (they used slice 50: pass 2D slices or a mask confined to
    one slice to reproduce that).

    Parameters
    ----------
    image : (x, y, z) or (x, y) array
    signal_mask, noise_mask : bool arrays of the image's shape
        The two regions; they may overlap.
    ddof : int
        Delta degrees of freedom of the standard deviation. # choice: 1 (sample std); the
        paper does not say.

    Returns
    -------
    float
        Dimensionless.
    """
    img = _image("snr", image)
    signal = _roi_values("snr", "signal_mask", img, signal_mask)
    return float(np.mean(signal) / _noise_std("snr", img, noise_mask, ddof))


def contrast_ratio(image: np.ndarray, roi_a: np.ndarray, roi_b: np.ndarray) -> float:
    """Ratio of region means, ``mean(image[roi_a]) / mean(image[roi_b])``.

    The ASL paper's GM/WM contrast (Sec. 2.4): "the mean value of GM masked area divided by
    the mean value of WM masked area" (``roi_a`` = GM, ``roi_b`` = WM). Dimensionless.
    """
    img = _image("contrast_ratio", image)
    a = _roi_values("contrast_ratio", "roi_a", img, roi_a)
    b = _roi_values("contrast_ratio", "roi_b", img, roi_b)
    mean_b = float(np.mean(b))
    if mean_b == 0.0:
        raise InputError("contrast_ratio: the mean of the image inside roi_b is zero")
    return float(np.mean(a) / mean_b)


def contrast_to_noise(
    image: np.ndarray,
    roi_a: np.ndarray,
    roi_b: np.ndarray,
    noise_mask: np.ndarray,
    *,
    ddof: int = 1,
) -> float:
    """Contrast-to-noise ratio: difference of region means over the noise standard deviation.

    ``(mean(image[roi_a]) - mean(image[roi_b])) / std(image[noise_mask])``. Signed: negative
    when region b is brighter. ``ddof`` as in :func:`snr`. Dimensionless.
    """
    img = _image("contrast_to_noise", image)
    a = _roi_values("contrast_to_noise", "roi_a", img, roi_a)
    b = _roi_values("contrast_to_noise", "roi_b", img, roi_b)
    sd = _noise_std("contrast_to_noise", img, noise_mask, ddof)
    return float((np.mean(a) - np.mean(b)) / sd)


# ---------------------------------------------------------------------------------------------
# correlation measures


def _standardise_rows(name: str, rows: np.ndarray, labels: Iterable[str]) -> np.ndarray:
    """Centre each row and scale it to unit norm, so that row_i . row_j is Pearson's r."""
    centred = rows - rows.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.sum(centred * centred, axis=1))
    for label, norm in zip(labels, norms, strict=True):
        if norm == 0.0:
            raise InputError(f"{name}: {label} is constant over the voxels used")
    return centred / norms[:, None]


def repetition_correlation(repeats: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Consistency of repeated measurements: mean pairwise Pearson correlation across voxels.

    For every pair of repetitions ``(i, j)`` with ``i < j``, Pearson's correlation
    coefficient ``r_ij`` is computed between the two images over the voxels in ``mask`` (each
    voxel is one observation); the result is the unweighted mean of the ``n (n - 1) / 2``
    coefficients. Identical repetitions give 1; independent noise gives about 0.

    Use it to compare how reproducible CBF maps are across repeated (subsets of) label/control
    pairs before and after denoising (ASL paper, Sec. 2.4, learning from noisy repetitions).
    The paper's Fig. 4 map, a correlation *per voxel* across subjects between two methods,
    is :func:`voxelwise_correlation`.

    Parameters
    ----------
    repeats : (n, x, y, z) or (n, x, y) array, n >= 2
        The repetitions stacked on the first axis.
    mask : bool array of shape ``repeats.shape[1:]``, optional
        Voxels to correlate over (e.g. the brain); all voxels if None.

    Returns
    -------
    float
        Mean correlation, in [-1, 1].
    """
    name = "repetition_correlation"
    arr = _as_float_array(name, "repeats", repeats)
    if arr.ndim < 2 or arr.shape[0] < 2:
        raise InputError(f"{name}: expected (n >= 2, ...) stacked repetitions, got {arr.shape}")
    m = None if mask is None else _as_mask(name, "mask", mask, arr.shape[1:])
    rows = arr.reshape(arr.shape[0], -1) if m is None else arr[:, m]
    if rows.shape[1] < 2:
        raise InputError(f"{name}: need at least 2 voxels to correlate, got {rows.shape[1]}")
    _check_finite(name, "repeats" if m is None else "repeats inside the mask", rows)
    z = _standardise_rows(name, rows, (f"repetition {i}" for i in range(rows.shape[0])))
    pairs = list(itertools.combinations(range(z.shape[0]), 2))
    r = [float(np.dot(z[i], z[j])) for i, j in pairs]
    return float(np.clip(np.mean(r), -1.0, 1.0))


def voxelwise_correlation(
    x: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Per-voxel Pearson correlation across the first axis (e.g. subjects), as a map.

    The ASL paper's Fig. 4: "Correlation coefficient at each voxel was calculated between the
    pseudo gold standard and network output", across the test subjects.

    Parameters
    ----------
    x, reference : (n, x, y, z) or (n, x, y) arrays, n >= 2
        The same n subjects (or repetitions) from two methods, on a common grid.
    mask : bool array of shape ``x.shape[1:]``, optional
        Voxels to compute; the others are NaN.

    Returns
    -------
    (x, y, z) or (x, y) float64 array
        r per voxel; NaN where either series is constant (or outside the mask).
    """
    name = "voxelwise_correlation"
    xa, ra, _ = _pair(name, x, reference, None)
    if xa.ndim < 2 or xa.shape[0] < 2:
        raise InputError(f"{name}: expected (n >= 2, ...) stacked images, got {xa.shape}")
    m = (
        np.ones(xa.shape[1:], dtype=bool)
        if mask is None
        else _as_mask(name, "mask", mask, xa.shape[1:])
    )
    xv, rv = xa[:, m], ra[:, m]
    _check_finite(name, "x", xv)
    _check_finite(name, "reference", rv)
    xc = xv - xv.mean(axis=0)
    rc = rv - rv.mean(axis=0)
    denom = np.sqrt(np.sum(xc * xc, axis=0) * np.sum(rc * rc, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, np.sum(xc * rc, axis=0) / denom, np.nan)
    out = np.full(xa.shape[1:], np.nan)
    out[m] = np.clip(r, -1.0, 1.0)
    return out


# ---------------------------------------------------------------------------------------------
# registry


def _ssim_2d(
    x: np.ndarray,
    reference: np.ndarray,
    data_range: float | None = None,
    mask: np.ndarray | None = None,
) -> float:
    """Mean 2D SSIM over the slices along the last axis (see :func:`ssim`)."""
    return float(ssim(x, reference, data_range=data_range, mask=mask, spatial_dims=2))


#: Metrics that compare ``x`` with a ``reference``, by the name a recipe uses. Each takes
#: ``(x, reference, mask=...)`` and, where it has one, ``data_range=...``; each returns a float.
METRICS: dict[str, Callable[..., float]] = {
    "psnr": psnr,
    "ssim": ssim,
    "ssim_2d": _ssim_2d,
    "nrmse": nrmse,
    "mae": mae,
    "l1": l1,
    "mse": mse,
    "l2": l2,
    "rmse": rmse,
}


def compute_metrics(
    x: np.ndarray,
    reference: np.ndarray,
    names: Iterable[str] = ("psnr", "ssim", "nrmse"),
    data_range: float | None = None,
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """Compute several :data:`METRICS` of ``x`` against ``reference``.

    Parameters
    ----------
    x, reference : (x, y, z) or (x, y) arrays
    names : iterable of str
        Keys of :data:`METRICS`, e.g. ``("psnr", "ssim", "nrmse")``.
    data_range : float, optional
        Passed to the metrics that use one (psnr, ssim, ssim_2d); see :func:`psnr`.
    mask : bool array, optional
        Passed to every metric.

    Returns
    -------
    dict
        ``{name: value}`` in the order of ``names``.
    """
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise InputError(
            f"compute_metrics: unknown metric(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(METRICS))}"
        )
    out: dict[str, float] = {}
    for name in names:
        fn = METRICS[name]
        kwargs: dict[str, Any] = {"mask": mask}
        if "data_range" in inspect.signature(fn).parameters:
            kwargs["data_range"] = data_range
        out[name] = float(fn(x, reference, **kwargs))
    return out
