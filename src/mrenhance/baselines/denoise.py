"""Classical denoisers of 2D maps: Gaussian smoothing, non-local means, BM3D (optional).

The ASL paper's comparisons beyond networks (issue: the 10-pair mean, Gaussian smoothing at
the best FWHM, non-local means, BM3D where a maintained package installs). Pure functions
of (x, y) or (x, y, z) arrays; 3D arrays are denoised slice by slice along the last axis,
as the 2D networks are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrenhance.errors import InputError

__all__ = ["bm3d_denoise", "gaussian_denoise", "has_bm3d", "nlm_denoise", "noise_sigma"]


def _slices(image: np.ndarray, fn) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        return fn(arr).astype(np.float32)
    if arr.ndim != 3:
        raise InputError(f"expected an (x, y) or (x, y, z) map, got shape {arr.shape}")
    return np.stack([fn(arr[:, :, k]) for k in range(arr.shape[2])], axis=-1).astype(np.float32)


def gaussian_denoise(
    image: np.ndarray, fwhm_mm: float, pixel_mm: Sequence[float] = (2.0, 2.0)
) -> np.ndarray:
    """In-plane Gaussian smoothing with a FWHM in mm (each axial slice on its own).

    image : (x, y) or (x, y, z); pixel_mm : in-plane pixel size (x, y).
    """
    from scipy.ndimage import gaussian_filter

    if fwhm_mm <= 0:
        return np.asarray(image, dtype=np.float32)
    sigma = [fwhm_mm / 2.3548 / float(p) for p in pixel_mm[:2]]
    return _slices(image, lambda s: gaussian_filter(s, sigma, mode="nearest"))


def noise_sigma(image: np.ndarray) -> float:
    """Noise standard deviation of a 2D map from its finest Haar wavelet band (Donoho's MAD).

    ``median(|HH|) / 0.6745`` of the diagonal detail coefficients of 2 x 2 blocks
    (``(a - b - c + d) / 2``), as ``skimage.restoration.estimate_sigma`` does with a
    wavelet transform (here without PyWavelets).
    """
    arr = np.asarray(image, dtype=np.float64)
    nx, ny = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
    a = arr[:nx:2, :ny:2]
    b = arr[1:nx:2, :ny:2]
    c = arr[:nx:2, 1:ny:2]
    d = arr[1:nx:2, 1:ny:2]
    hh = (a - b - c + d) / 2.0
    return float(np.median(np.abs(hh)) / 0.6745) if hh.size else 0.0


def nlm_denoise(
    image: np.ndarray,
    *,
    h_factor: float = 0.8,
    strength: float = 1.0,
    patch_size: int = 5,
    patch_distance: int = 6,
) -> np.ndarray:
    """Non-local means (Buades et al. 2005; scikit-image), per slice.

    ``h = h_factor * sigma`` with ``sigma = strength *`` the per-slice estimate
    (:func:`noise_sigma`); # choice: skimage's suggested h ~ 0.8 sigma with ``fast_mode``.
    """
    from skimage.restoration import denoise_nl_means

    def one(s: np.ndarray) -> np.ndarray:
        sigma = strength * noise_sigma(s)
        if sigma <= 0:
            return s
        return denoise_nl_means(
            s.astype(np.float64),
            h=h_factor * sigma,
            sigma=sigma,
            patch_size=patch_size,
            patch_distance=patch_distance,
            fast_mode=True,
        )

    return _slices(image, one)


def has_bm3d() -> bool:
    """Whether the optional ``bm3d`` package (``pip install mrenhance[bm3d]``) imports."""
    try:
        import bm3d  # noqa: F401
    except Exception:
        return False
    return True


def bm3d_denoise(
    image: np.ndarray, *, sigma: float | None = None, strength: float = 1.0
) -> np.ndarray:
    """BM3D (Dabov et al. 2007; the ``bm3d`` package of Tampere University), per slice.

    ``sigma``: the noise std in the image's units (default: ``strength`` x the per-slice
    estimate of :func:`noise_sigma`). The
    package's licence allows non-commercial use only; it is an optional extra.
    """
    if not has_bm3d():
        raise InputError("bm3d_denoise needs the optional package: pip install 'mrenhance[bm3d]'")
    import bm3d

    def one(s: np.ndarray) -> np.ndarray:
        sd = strength * noise_sigma(s) if sigma is None else float(sigma)
        if sd <= 0:
            return s
        return np.asarray(bm3d.bm3d(s.astype(np.float64), sigma_psd=sd), dtype=np.float32)

    return _slices(image, one)
