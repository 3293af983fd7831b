"""Intensity normalisation shared by training, evaluation and ``enhance``: one rule, one place.

A network only works on intensities like those it was trained on. The scale is therefore a
function of the *network input alone* (the image a user has), never of the training target:
the ``percentile`` of the voxels inside a mask of the input. The rule is recorded in the
model card (:class:`mrenhance.models.card.Normalisation`) and applied by
:func:`intensity_scale` in every path.

The default mask, ``"head"``, is an automatic head mask (:func:`head_mask`): real scans are
not skull-stripped and carry background noise, and a percentile over "all voxels > 0" then
depends on how much air the field of view holds. Otsu's threshold separates the head from
air on magnitude images; the largest connected component, closed and hole-filled, keeps the
dark ventricles and CSF inside.
"""

from __future__ import annotations

import numpy as np

from mrenhance.models.card import Normalisation

__all__ = ["has_air", "head_mask", "head_or_field_of_view", "intensity_scale", "mask_for_rule"]

# choice: Otsu's threshold from at most this many voxels (a strided subsample): the
# threshold of a 197x233x189 volume then costs ~10 ms and moves < 0.5 %.
_OTSU_SAMPLES = 1 << 18


def head_mask(data: np.ndarray) -> np.ndarray:
    """Automatic head (foreground) mask of a magnitude image.

    Parameters
    ----------
    data : (x, y, z) array, any intensity units.

    Returns
    -------
    (x, y, z) bool: voxels above Otsu's threshold, the connected components of at least 10 %
    of the largest, closed by one
    voxel and hole-filled. Falls back to ``data > 0`` (then to everything) when no foreground
    is found, so it never returns an empty mask for a non-empty image.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    values = np.asarray(data, dtype=np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or float(finite.max()) == float(finite.min()):
        return _fallback(values)
    step = max(1, finite.size // _OTSU_SAMPLES)
    threshold = float(threshold_otsu(finite.ravel()[::step]))
    mask = values > threshold
    if not mask.any():
        return _fallback(values)
    labels, n = ndimage.label(mask)
    if n > 1:
        # choice: keep every component of at least 10 % of the largest one: drops specks of
        # background noise, keeps a head cut in pieces by the field of view
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = sizes >= 0.1 * sizes.max()
        keep[0] = False
        mask = keep[labels]
    if min(mask.shape) >= 3:
        mask = ndimage.binary_closing(mask, iterations=1, border_value=0) | mask
    filled = ndimage.binary_fill_holes(mask)
    return filled if filled is not None else mask


#: choice: an image "holds air" when the voxels below Otsu's threshold are dark, their median
#: under this fraction of the 99th percentile. Air in a magnitude image is the noise floor
#: (~1-5 % of the tissue's 99th percentile at SNR >= 10); in a field of view cut inside the
#: brain the lower class is tissue (WM in a T2w crop, ~30-40 % of the CSF percentile).
AIR_MEDIAN_FRACTION = 0.1


def has_air(data: np.ndarray) -> bool:
    """Whether a magnitude image holds background (air) around the head.

    Parameters
    ----------
    data : (x, y, z) array, any intensity units.

    Returns
    -------
    True when the median of the voxels below Otsu's threshold is under
    :data:`AIR_MEDIAN_FRACTION` times the 99th percentile of the finite voxels. A crop
    inside the brain (no air) returns False: Otsu's threshold then splits tissue classes
    (CSF from the rest on a T2w image), not the head from air.
    """
    from skimage.filters import threshold_otsu

    finite = np.asarray(data, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0 or float(finite.max()) == float(finite.min()):
        return False
    sample = finite.ravel()[:: max(1, finite.size // _OTSU_SAMPLES)]
    low = sample[sample <= float(threshold_otsu(sample))]
    top = float(np.percentile(sample, 99))
    return bool(low.size) and top > 0 and float(np.median(low)) < AIR_MEDIAN_FRACTION * top


def head_or_field_of_view(data: np.ndarray) -> np.ndarray:
    """The head mask (:func:`head_mask`) of an image that holds air, else every finite voxel.

    Use where a mask decides *where to look* (a detection domain): on a crop inside the brain
    Otsu's threshold keeps only the brightest tissue class, which would hide everything else.
    Normalisation keeps :func:`head_mask` (its rule is recorded in the model cards).

    Returns (x, y, z) bool.
    """
    values = np.asarray(data, dtype=np.float32)
    if has_air(values):
        return head_mask(values)
    finite = np.isfinite(values)
    return finite if finite.any() else np.ones(values.shape, dtype=bool)


def _fallback(values: np.ndarray) -> np.ndarray:
    positive = values > 0
    return positive if positive.any() else np.ones(values.shape, dtype=bool)


def mask_for_rule(data: np.ndarray, rule: str) -> np.ndarray:
    """The voxels a normalisation rule's percentile is taken over: "head", "nonzero", "all"."""
    if rule == "head":
        return head_mask(data)
    if rule == "nonzero":
        return _fallback(np.asarray(data))
    return np.ones(np.shape(data), dtype=bool)


def intensity_scale(data: np.ndarray, rule: Normalisation | None = None) -> float:
    """The divisor that normalises ``data`` under ``rule`` (default: 99.5th pct in the head).

    Parameters
    ----------
    data : (x, y, z) array, the network input (not the training target).
    rule : Normalisation from the model card or the recipe.

    Returns
    -------
    float > 0 (1.0 when the rule is "none" or the image is all zero).
    """
    rule = rule or Normalisation()
    if rule.method == "none":
        return 1.0
    mask = mask_for_rule(data, rule.mask)
    values = np.asarray(data)[mask]
    if values.size == 0:
        return 1.0
    scale = float(np.percentile(values, rule.percentile))
    return scale if np.isfinite(scale) and scale > 0 else 1.0
