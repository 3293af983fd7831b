"""Thermal noise at a chosen SNR: Gaussian (complex-channel) and Rician (magnitude) noise.

SNR convention: ``SNR = mean(image[signal_mask]) / sigma``, with ``sigma`` the standard
deviation of the Gaussian noise on each (real and imaginary) channel. For Rician noise the
magnitude image is ``|image + sigma * (n1 + i * n2)|`` with ``n1, n2`` independent standard
normals, the usual model of a single-coil magnitude MR image; at low SNR it is biased
upwards (its background mean is ``sigma * sqrt(pi / 2)``).

All functions are pure and draw only from the ``numpy.random.Generator`` they are given.
"""

from __future__ import annotations

import numpy as np

from mrenhance.errors import InputError


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def noise_sigma_for_snr(
    image: np.ndarray, snr: float, *, signal_mask: np.ndarray | None = None
) -> float:
    """The noise standard deviation that gives ``image`` the requested SNR.

    Parameters
    ----------
    image:
        (x, y, z) noise-free image (any shape).
    snr:
        Target SNR = mean signal inside the mask / sigma; ``inf`` gives sigma 0.
    signal_mask:
        bool-like array of ``image.shape`` marking the signal region.
        Default: the voxels with ``image > 0``.
        # choice: "> 0" suits skull-stripped and simulated images whose background is 0;
        # pass a mask for images with a non-zero background.

    Returns
    -------
    sigma, in the image's intensity units.
    """
    image = np.asarray(image)
    snr = float(snr)
    if np.isnan(snr) or snr <= 0:
        raise InputError(f"snr must be positive (inf means no noise); got {snr}")
    if signal_mask is None:
        mask = image > 0
    else:
        mask = np.asarray(signal_mask)
        if mask.shape != image.shape:
            raise InputError(
                f"signal_mask shape {mask.shape} does not match the image shape {image.shape}"
            )
        mask = mask.astype(bool)
    if not mask.any():
        raise InputError("signal_mask selects no voxel (or the image has no positive voxel)")
    mean_signal = float(np.mean(image[mask], dtype=np.float64))
    if not mean_signal > 0:
        raise InputError(f"the mean signal inside the mask must be positive; got {mean_signal}")
    return 0.0 if np.isinf(snr) else mean_signal / snr


def add_gaussian_noise(
    image: np.ndarray,
    snr: float,
    rng: np.random.Generator,
    *,
    signal_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Add zero-mean Gaussian noise with ``sigma = mean signal / snr``.

    Parameters
    ----------
    image:
        (x, y, z) noise-free image (any shape).
    snr:
        Target SNR (see :func:`noise_sigma_for_snr`).
    rng:
        The only source of randomness.
    signal_mask:
        Signal region for the SNR; default ``image > 0``.

    Returns
    -------
    float32 array of ``image.shape`` (may be negative).
    """
    rng = _check_rng(rng)
    image = np.asarray(image)
    sigma = noise_sigma_for_snr(image, snr, signal_mask=signal_mask)
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    return (image.astype(np.float32) + np.float32(sigma) * noise).astype(np.float32)


def add_rician_noise(
    image: np.ndarray,
    snr: float,
    rng: np.random.Generator,
    *,
    signal_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (Rician distributed).

    Parameters
    ----------
    image:
        (x, y, z) noise-free magnitude image, taken as the real channel.
    snr:
        Target SNR = mean signal in the mask / sigma of each channel.
    rng:
        The only source of randomness.
    signal_mask:
        Signal region for the SNR; default ``image > 0``.

    Returns
    -------
    float32 non-negative array of ``image.shape``.
    """
    rng = _check_rng(rng)
    image = np.asarray(image)
    sigma = np.float32(noise_sigma_for_snr(image, snr, signal_mask=signal_mask))
    real = image.astype(np.float32) + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.hypot(real, imag).astype(np.float32)
