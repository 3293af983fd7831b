"""Diffusion tensors of a DWI series (dipy) and how two tensor maps differ.

Pure functions on arrays: ``dwi`` (x, y, z, n) float32 with its ``bvals`` (n,) s/mm^2 and
``bvecs`` (n, 3) (FSL image-frame convention, as :mod:`mrenhance.io` loads them); maps are
(x, y, z) (FA, MD in mm^2/s) or (x, y, z, 3) (principal eigenvector V1, colour FA).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mrenhance.errors import InputError

__all__ = ["angular_error_deg", "fit_tensors", "tensor_map_errors"]


def fit_tensors(
    dwi: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    fit_method: str = "WLS",
) -> dict[str, np.ndarray]:
    """Fit a diffusion tensor per voxel (dipy ``TensorModel``, weighted least squares).

    Returns ``{"fa", "md", "v1", "cfa"}``: FA (x, y, z) in [0, 1], MD (x, y, z) mm^2/s,
    V1 (x, y, z, 3) unit principal eigenvector, colour FA (x, y, z, 3) = FA * |V1|.
    Outside ``mask`` every map is 0.
    """
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    dwi = np.asarray(dwi, dtype=np.float32)
    if dwi.ndim != 4 or dwi.shape[3] != np.size(bvals):
        raise InputError(f"fit_tensors: {dwi.shape} DWI for {np.size(bvals)} b-values")
    bvals = np.asarray(bvals, float)
    bvecs = np.asarray(bvecs, float)
    if bvals.min() > 50:
        raise InputError("fit_tensors: the series has no b = 0 volume")
    # dipy wants unit vectors on DW volumes; b = 0 rows may be anything
    gtab = gradient_table(
        bvals, bvecs=np.where((bvals <= 50)[:, None], 0.0, bvecs), b0_threshold=50
    )
    mask = np.ones(dwi.shape[:3], bool) if mask is None else np.asarray(mask, bool)
    fit = TensorModel(gtab, fit_method=fit_method).fit(np.clip(dwi, 0, None), mask=mask)
    fa = np.nan_to_num(np.clip(fit.fa, 0, 1)).astype(np.float32)
    md = np.nan_to_num(fit.md).astype(np.float32)
    v1 = np.nan_to_num(fit.evecs[..., 0]).astype(np.float32)
    fa[~mask], md[~mask], v1[~mask] = 0, 0, 0
    cfa = (fa[..., None] * np.abs(v1)).astype(np.float32)  # as dipy.reconst.dti.color_fa
    return {"fa": fa, "md": md, "v1": v1, "cfa": cfa}


def angular_error_deg(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """Angle in degrees between two axial direction fields (..., 3), in [0, 90]."""
    n1 = np.linalg.norm(v1, axis=-1)
    n2 = np.linalg.norm(v2, axis=-1)
    cos = np.abs((v1 * v2).sum(axis=-1)) / np.maximum(n1 * n2, 1e-12)
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))


def tensor_map_errors(
    estimate: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    regions: Mapping[str, np.ndarray],
    *,
    angle_regions: tuple[str, ...] = ("wm",),
) -> dict[str, float]:
    """Mean absolute FA and MD errors per region, and V1 angular error where asked.

    ``estimate``/``reference``: :func:`fit_tensors` outputs on one grid; ``regions``: name ->
    (x, y, z) bool. Keys: ``fa_mae_<region>``, ``md_mae_<region>`` (in 1e-3 mm^2/s, i.e.
    um^2/ms), ``angle_<region>_deg`` (mean over the region).
    """
    out: dict[str, float] = {}
    for name, region in regions.items():
        if not np.any(region):
            continue
        out[f"fa_mae_{name}"] = float(np.abs(estimate["fa"] - reference["fa"])[region].mean())
        out[f"md_mae_{name}"] = float(1e3 * np.abs(estimate["md"] - reference["md"])[region].mean())
        if name in angle_regions:
            angle = angular_error_deg(estimate["v1"], reference["v1"])[region]
            out[f"angle_{name}_deg"] = float(angle.mean())
    return out
