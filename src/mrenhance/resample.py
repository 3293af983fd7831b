"""The training voxel size: the check ``enhance`` warns with, and ``--resample``.

A network learnt its features at one voxel size (the card's ``preprocessing.voxel_size_mm``:
1 mm isotropic for the SR T1 models, the MNI152 template they were trained on). An input
whose voxels are much larger or smaller shows it structures at another scale in voxels;
:func:`voxel_size_mismatch` tells when that is beyond :data:`VOXEL_SIZE_FACTOR` on an axis,
and :func:`resample_to_voxel_size` puts an image onto the training voxel size first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mrenhance.volume import Volume

__all__ = ["VOXEL_SIZE_FACTOR", "resample_to_voxel_size", "voxel_size_mismatch"]

#: choice: an input voxel over 1.5x (or under 1/1.5) the training one on any axis is warned
#: about; within it, scanners' usual 0.8-1.2 mm protocols pass for a 1 mm model.
VOXEL_SIZE_FACTOR = 1.5
_SAME_SIZE = 0.02  # relative: closer than this, --resample leaves an axis alone


def voxel_size_mismatch(voxel_mm: Sequence[float], training_mm: Sequence[float] | None) -> bool:
    """Whether ``voxel_mm`` (x, y, z) differs from ``training_mm`` by more than
    :data:`VOXEL_SIZE_FACTOR` on any axis the card gives (False without a training size)."""
    if not training_mm:
        return False
    for have, want in zip(voxel_mm, training_mm, strict=False):
        ratio = float(have) / float(want)
        if ratio > VOXEL_SIZE_FACTOR or ratio < 1.0 / VOXEL_SIZE_FACTOR:
            return True
    return False


def resample_to_voxel_size(volume: Volume, voxel_mm: Sequence[float]) -> Volume:
    """``volume`` resampled along its own axes to voxels of about ``voxel_mm`` (x, y, z).

    The field of view is kept (FOV-aligned grids, :func:`mrenhance.baselines.interpolate.
    interpolate_volume` with ``alignment="fov"``): each axis gets ``round(n * have / want)``
    voxels, so the new voxel size is ``want`` up to that rounding, and the orientation is
    the input's. Cubic spline interpolation; an axis that gets coarser is first smoothed
    with a Gaussian of FWHM sqrt(want^2 - have^2) (anti-aliasing, so the new voxel averages
    what it covers). An image >= 0 stays >= 0 (the cubic overshoot is clipped). A 4D image
    is resampled volume by volume. Axes within 2 % of ``want`` are left as they are.

    Returns the input itself when no axis changes, else a new Volume with a provenance step.
    """
    from scipy.ndimage import gaussian_filter

    from mrenhance.baselines.interpolate import interpolate_volume

    have = volume.voxel_size
    want = [float(w) for w in voxel_mm][:3]
    want += list(have[len(want) :])  # a card giving fewer axes says nothing of the others
    spatial = volume.shape[:3]
    target = tuple(
        n if abs(h / w - 1) <= _SAME_SIZE else max(1, int(round(n * h / w)))
        for n, h, w in zip(spatial, have, want, strict=True)
    )
    if target == spatial:
        return volume
    fwhm_to_sigma = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    sigma = [
        math.sqrt(max((n / m) ** 2 - 1.0, 0.0)) * fwhm_to_sigma  # in input voxels
        for n, m in zip(spatial, target, strict=True)
    ]
    data = volume.data
    if any(s > 0 for s in sigma):
        frames = data[..., None] if data.ndim == 3 else data
        n_frames = frames.shape[3]
        smooth = np.stack(
            [gaussian_filter(frames[..., t], sigma, mode="nearest") for t in range(n_frames)],
            axis=-1,
        )
        data = smooth[..., 0] if volume.ndim == 3 else smooth
    before = volume.with_data(
        data, step=f"resample to the training voxel size {[round(w, 4) for w in want]} mm"
    )
    out = interpolate_volume(before, target_shape=target, method="cubic", alignment="fov")
    if float(volume.data.min()) >= 0:
        out.data = np.clip(out.data, 0, None)
    return out
