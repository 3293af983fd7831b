"""Classical PVS / vessel enhancers: the baselines of the PVS task.

Each returns ``(enhanced, response)``: ``response`` is the filter's own tubular-structure
map (what one thresholds to detect PVS) and ``enhanced`` an image in the input's units
with the response added back, ``image + gain * response`` (choice: so that every method,
network or filter, yields an "enhanced image" that PSNR/SSIM can compare with the target,
as the paper compares Hou et al.'s output). Images are (x, y, z) float32, bright tubes on
a darker background (T2w); sizes are in mm and converted with ``voxel_mm``.

* :func:`white_tophat` - Uchiyama et al. 2008: image minus its grey opening by a ball
  larger than the PVS; keeps bright structures thinner than the ball.
* :func:`frangi_vesselness` - Frangi et al. 1998 through scikit-image, bright ridges,
  scales spanning the PVS radii.
* :func:`nlm_tophat` - non-local means (scikit-image, noise estimated from the image)
  followed by the white top-hat: the denoise-then-enhance order of Hou et al.'s pipeline
  with a standard denoiser.

RORPO (Merveille et al. 2018) has no maintained Python package on the index (checked with
``pip download rorpo`` / ``pyrorpo``), so it is not offered.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ball", "frangi_vesselness", "nlm_tophat", "noise_sigma_mad", "white_tophat"]


def noise_sigma_mad(image: np.ndarray) -> float:
    """Noise std from the median absolute deviation of neighbour differences along x.

    (choice: scikit-image's ``estimate_sigma`` needs PyWavelets, not a dependency here.)
    """
    img = np.asarray(image, np.float32)
    d = (img[1:] - img[:-1]).ravel() / np.sqrt(2.0)
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def ball(radius_vox: float) -> np.ndarray:
    """(n, n, n) bool ball footprint of ``radius_vox`` voxels (centre included)."""
    r = int(np.floor(radius_vox))
    g = np.arange(-r, r + 1)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    return (x**2 + y**2 + z**2) <= radius_vox**2 + 1e-6


def white_tophat(
    image: np.ndarray, *, voxel_mm: float = 0.5, radius_mm: float = 2.0, gain: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """White top-hat with a ball of ``radius_mm`` (choice: 2 mm > the largest PVS radius).

    image : (x, y, z). Returns (image + gain * tophat, tophat), float32.
    """
    from scipy import ndimage

    img = np.asarray(image, np.float32)
    opened = ndimage.grey_opening(img, footprint=ball(radius_mm / voxel_mm), mode="reflect")
    response = np.maximum(img - opened, 0).astype(np.float32)
    return (img + np.float32(gain) * response).astype(np.float32), response


def frangi_vesselness(
    image: np.ndarray,
    *,
    voxel_mm: float = 0.5,
    radii_mm: Sequence[float] = (0.35, 0.7, 1.2),
    gain: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Frangi vesselness of bright tubes at scales ``radii_mm`` (sigma = radius / sqrt(2)).

    Returns (image * (1 + gain * V / max V), V) (choice: the vesselness has no intensity
    unit, so it modulates the image); float32.
    """
    from skimage.filters import frangi

    img = np.asarray(image, np.float32)
    sigmas = [max(r / np.sqrt(2.0) / voxel_mm, 0.5) for r in radii_mm]
    v = frangi(img, sigmas=sigmas, black_ridges=False, mode="reflect").astype(np.float32)
    v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(v.max())
    norm = v / np.float32(top) if top > 0 else v
    return (img * (1.0 + np.float32(gain) * norm)).astype(np.float32), v


def nlm_tophat(
    image: np.ndarray,
    *,
    voxel_mm: float = 0.5,
    radius_mm: float = 2.0,
    gain: float = 1.0,
    h_factor: float = 0.8,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-local means (patch 3^3, search 7^3, h = ``h_factor`` x estimated sigma), then
    :func:`white_tophat` on the denoised image. Returns (denoised + gain * tophat, tophat)."""
    from skimage.restoration import denoise_nl_means

    img = np.asarray(image, np.float32)
    sigma = noise_sigma_mad(img)
    den = denoise_nl_means(
        img,
        patch_size=3,
        patch_distance=3,
        h=h_factor * sigma,
        sigma=sigma,
        fast_mode=True,
        channel_axis=None,
    ).astype(np.float32)
    return white_tophat(den, voxel_mm=voxel_mm, radius_mm=radius_mm, gain=gain)
