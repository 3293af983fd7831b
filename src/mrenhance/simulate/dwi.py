"""Diffusion-weighted images of a synthetic subject, and the DTI SR paper's LR images.

Forward model (pure functions; one ``numpy.random.Generator`` is the only randomness):

* **Tissue diffusion.** A voxel is a partial-volume mix of the subject's tissues
  (:mod:`mrenhance.simulate.subjects` fractions). GM and CSF are isotropic with their
  diffusivities; WM holds up to two cylindrically symmetric tensors (fibre populations)
  along two smooth direction fields, weighted ``1 - w2`` and ``w2`` where a smooth
  crossing map ``w2`` in [0, 0.45] is large, so the voxel's single-tensor fit has its FA
  lowered and its direction pulled where fibres cross (crossing-aware). Each population's
  FA lies in [0.4, 0.8] (a per-subject level plus a smooth spatial variation).
* **S0** is the subject's T2-weighted spin-echo contrast (``subjects.draw_contrast``),
  the b = 0 image of an EPI DWI acquisition; scalp fat is suppressed (choice: x 0.1).
* **Signal** ``S(b, g) = sum_t f_t S0_t A_t(b, g)``, ``A = exp(-b g^T D g)`` (a mixture of
  such terms in WM), for any gradient table (``small_64D``'s by default).
* **Noise** Rician, one sigma for all volumes: ``sigma = mean brain b0 / snr``.

Degradation (the paper, Sec. 3): Gaussian noise, then 4x downsampling of every 2D slice
(:func:`degrade_dwi`; area averaging of 4x4 blocks, or k-space truncation as an option).

Shapes: DWIs are (x, y, z, n) float32, n volumes of the gradient table; b-values (n,)
s/mm^2, b-vectors (n, 3) unit (zero for b = 0); diffusivities in mm^2/s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrenhance.errors import InputError

__all__ = [
    "DIFFUSIVITY",
    "DWIParams",
    "degrade_dwi",
    "draw_dwi_params",
    "fibre_fields",
    "fa_md_from_eigenvalues",
    "load_gradient_table",
    "simulate_dwi",
    "tensor_signal",
]

#: Mean diffusivities at 37 degC, mm^2/s. WM 0.70e-3 and GM 0.80e-3: order of adult values
#: (Pierpaoli et al., Radiology 1996: ~0.7e-3 in WM, ~0.8e-3 in cortex); CSF: free water
#: at body temperature, 3.0e-3. Non-brain tissue (scalp, fat-suppressed): 0.5e-3, choice.
DIFFUSIVITY = {"gm": 0.80e-3, "wm": 0.70e-3, "csf": 3.0e-3, "other": 0.5e-3}


@dataclass(frozen=True)
class DWIParams:
    """What one subject's DWI draw used (all uniform draws; ranges are choices).

    fa_level: per-subject FA of a WM fibre population, in [0.55, 0.70] (+-0.1 spatial
    variation, clipped to [0.4, 0.8]). diffusivity_jitter: per-tissue factors (lognormal
    sigma 5 %). snr: b0 SNR in the brain (default range [15, 40]). fibre_spacing_mm: knot
    spacing of the direction fields (20-30 mm: bundles bend over centimetres).
    """

    fa_level: float
    diffusivity_jitter: dict[str, float]
    snr: float
    fibre_spacing_mm: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "fa_level": self.fa_level,
            "diffusivity_jitter": dict(self.diffusivity_jitter),
            "snr": self.snr,
            "fibre_spacing_mm": self.fibre_spacing_mm,
        }


def load_gradient_table(spec: str = "sample:small_64D") -> tuple[np.ndarray, np.ndarray]:
    """b-values (n,) s/mm^2 and unit b-vectors (n, 3) from a sample or FSL files.

    ``spec``: ``"sample:small_64D"`` (dipy's table: one b = 0 and 64 directions at ~1000),
    or ``"path.bval,path.bvec"`` (FSL: one row of b-values; 3 rows or n rows of vectors).
    """
    if spec.lower() == "sample:small_64d":
        from mrenhance.samples import dipy_small_64d

        vol = dipy_small_64d()
        bvals, bvecs = np.asarray(vol.meta["bvals"], float), np.asarray(vol.meta["bvecs"], float)
    else:
        parts = [p.strip() for p in spec.split(",")]
        if len(parts) != 2:
            raise InputError(f"gradients {spec!r}: expected 'sample:small_64D' or 'x.bval,x.bvec'")
        try:
            bvals = np.loadtxt(parts[0], dtype=float).reshape(-1)
            bvecs = np.loadtxt(parts[1], dtype=float)
        except (OSError, ValueError) as err:
            raise InputError(f"gradients {spec!r}: cannot read ({err})") from err
        if bvecs.shape == (3, bvals.size):
            bvecs = bvecs.T
        if bvecs.shape != (bvals.size, 3):
            raise InputError(
                f"{parts[1]}: {bvecs.shape} b-vectors for {bvals.size} b-values (want 3 x n)"
            )
    bvecs = np.nan_to_num(bvecs, nan=0.0)
    norms = np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvecs = np.where(norms > 1e-6, bvecs / np.maximum(norms, 1e-12), 0.0)
    bvecs[bvals <= 50] = 0.0
    if not (bvals <= 50).any():
        raise InputError(f"gradients {spec!r}: no b = 0 volume (needed for S0 and tensor fits)")
    return bvals.astype(np.float64), bvecs.astype(np.float64)


def draw_dwi_params(
    rng: np.random.Generator, *, snr: Sequence[float] | float = (15.0, 40.0)
) -> DWIParams:
    """Draw one subject's diffusion parameters (see :class:`DWIParams`)."""
    lo, hi = (float(snr), float(snr)) if np.isscalar(snr) else (float(snr[0]), float(snr[1]))
    jitter = {
        k: float(np.exp(np.clip(rng.normal(0.0, 0.05), -0.1, 0.1))) for k in ("gm", "wm", "csf")
    }
    return DWIParams(
        fa_level=float(rng.uniform(0.55, 0.70)),
        diffusivity_jitter=jitter,
        snr=float(rng.uniform(lo, hi)),
        fibre_spacing_mm=float(rng.uniform(20.0, 30.0)),
    )


def _axes_mm(shape: Sequence[int], affine: np.ndarray) -> list[np.ndarray]:
    # choice: the lattice lives in voxel-axis mm (the subjects' grids are axis-aligned up to
    # their own deformation), so fields are smooth over mm whatever the voxel size
    sizes = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    return [np.arange(n) * s for n, s in zip(shape, sizes, strict=True)]


def _smooth_field(
    rng: np.random.Generator,
    shape: Sequence[int],
    affine: np.ndarray,
    spacing_mm: float,
    n_components: int | None = None,
) -> np.ndarray:
    from mrenhance.simulate.fields import Lattice, evaluate_field, random_coefficients

    axes = _axes_mm(shape, affine)
    lattice = Lattice.covering([a[0] for a in axes], [a[-1] for a in axes], spacing_mm)
    return evaluate_field(random_coefficients(rng, lattice, n_components), lattice, axes)


def fibre_fields(
    rng: np.random.Generator,
    shape: Sequence[int],
    affine: np.ndarray,
    *,
    spacing_mm: float = 25.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two smooth fibre-direction fields and a crossing-weight map.

    Returns
    -------
    e1, e2 : (x, y, z, 3) float32 unit vectors (sign is immaterial: the signal depends on
        (g . e)^2). Each is a B-spline random vector field (knots every ``spacing_mm``) plus
        a per-subject mean direction (half the field's std), normalised.
    w2 : (x, y, z) float32 in [0, 0.45], the second population's weight: a smooth map,
        > 0.2 in about a third of the voxels (choice; crossings are common in WM,
        Jeurissen et al., HBM 2013).
    """
    fields = []
    for _ in range(2):
        v = _smooth_field(rng, shape, affine, spacing_mm, 3)
        mean = rng.standard_normal(3)
        v = v + (0.5 * mean / np.linalg.norm(mean)).astype(np.float32)[:, None, None, None]
        v = np.moveaxis(v, 0, -1)
        fields.append(v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6))
    c = _smooth_field(rng, shape, affine, spacing_mm)
    w2 = 0.45 / (1.0 + np.exp(-3.0 * (c - 0.5)))
    return fields[0].astype(np.float32), fields[1].astype(np.float32), w2.astype(np.float32)


def _axial_radial(fa: np.ndarray, md: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of a cylindrical tensor with this FA and MD: (lambda_par, lambda_perp).

    With lambda_par = MD (1 + 2k), lambda_perp = MD (1 - k): FA = sqrt(3) k / sqrt(1 + 2k^2),
    so k = FA / sqrt(3 - 2 FA^2).
    """
    k = fa / np.sqrt(3.0 - 2.0 * fa**2)
    return md * (1.0 + 2.0 * k), md * (1.0 - k)


def tensor_signal(
    bvals: np.ndarray,
    bvecs: np.ndarray,
    direction: np.ndarray,
    lambda_par: np.ndarray,
    lambda_perp: np.ndarray,
) -> np.ndarray:
    """Attenuation ``exp(-b g^T D g)`` of cylindrical tensors, for every voxel and volume.

    direction: (v, 3) unit; lambda_par, lambda_perp: (v,) mm^2/s. Returns (v, n) float32.
    """
    cos2 = (direction @ bvecs.T) ** 2  # (v, n)
    adc = lambda_perp[:, None] + (lambda_par - lambda_perp)[:, None] * cos2
    return np.exp(-bvals[None, :] * adc).astype(np.float32)


def fa_md_from_eigenvalues(evals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FA and MD from (..., 3) eigenvalues."""
    md = evals.mean(axis=-1)
    num = np.sqrt(((evals - md[..., None]) ** 2).sum(axis=-1))
    den = np.sqrt((evals**2).sum(axis=-1))
    fa = np.sqrt(1.5) * np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return fa, md


def simulate_dwi(
    subject: Any,
    rng: np.random.Generator,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    snr: Sequence[float] | float = (15.0, 40.0),
    params: DWIParams | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A whole-brain DWI series of ``subject`` (a :class:`~mrenhance.simulate.subjects.Subject`).

    Parameters
    ----------
    subject : its ``fractions`` ((x, y, z) each), ``affine`` and ``brain_mask`` are used.
    bvals, bvecs : (n,) s/mm^2 and (n, 3) unit directions.
    snr : b0 SNR in the brain, a value or a range to draw from.
    params : fixed parameters instead of drawing them.

    Returns
    -------
    dwi : (x, y, z, n) float32, Rician noise.
    truth : ``noise_free`` (x, y, z, n), ``s0`` (x, y, z), ``fa``/``md`` of the WM
        populations' mix per voxel as set (x, y, z; GM/CSF: 0 and their diffusivity),
        ``e1`` (x, y, z, 3) the first population's direction, ``w2`` crossing weight,
        ``sigma`` (noise), ``params`` (dict), ``intensities`` (S0 per tissue).
    """
    from mrenhance.simulate.subjects import draw_contrast

    bvals = np.asarray(bvals, np.float64)
    bvecs = np.asarray(bvecs, np.float64)
    if bvecs.shape != (bvals.size, 3):
        raise InputError(f"simulate_dwi: bvecs {bvecs.shape} for {bvals.size} b-values")
    p = params if params is not None else draw_dwi_params(rng, snr=snr)
    intensities, _ = draw_contrast(rng, "t2")
    shape = subject.shape
    fr = subject.fractions
    e1, e2, w2 = fibre_fields(rng, shape, subject.affine, spacing_mm=p.fibre_spacing_mm)
    fa_var = _smooth_field(rng, shape, subject.affine, 2 * p.fibre_spacing_mm)
    fa_map = np.clip(p.fa_level + 0.1 * np.tanh(fa_var), 0.4, 0.8).astype(np.float32)

    n = bvals.size
    noise_free = np.zeros((*shape, n), np.float32)
    s0 = np.zeros(shape, np.float32)
    for tissue in ("gm", "csf"):
        f = fr.get(tissue)
        if f is None:
            continue
        w = (f * intensities[tissue]).astype(np.float32)
        d = DIFFUSIVITY[tissue] * p.diffusivity_jitter[tissue]
        noise_free += w[..., None] * np.exp(-bvals * d).astype(np.float32)
        s0 += w
    other = sum(fr[t] * intensities[t] for t in fr if t not in ("gm", "wm", "csf"))
    if not np.isscalar(other):
        # choice: fat-suppressed EPI: scalp and skull keep a tenth of their T2w signal
        w = (0.1 * other).astype(np.float32)
        noise_free += w[..., None] * np.exp(-bvals * DIFFUSIVITY["other"]).astype(np.float32)
        s0 += w
    wm = fr["wm"]
    where = np.flatnonzero(wm > 1e-3)
    if where.size:
        md = DIFFUSIVITY["wm"] * p.diffusivity_jitter["wm"]
        par, perp = _axial_radial(fa_map.reshape(-1)[where].astype(np.float64), md)
        a1 = tensor_signal(bvals, bvecs, e1.reshape(-1, 3)[where], par, perp)
        a2 = tensor_signal(bvals, bvecs, e2.reshape(-1, 3)[where], par, perp)
        wv = w2.reshape(-1)[where][:, None]
        amp = (wm.reshape(-1)[where] * intensities["wm"]).astype(np.float32)[:, None]
        flat = noise_free.reshape(-1, n)
        flat[where] += amp * ((1.0 - wv) * a1 + wv * a2)
        s0.reshape(-1)[where] += amp[:, 0]
    brain = subject.brain_mask
    reference = float(s0[brain].mean()) if brain.any() else float(s0.max() or 1.0)
    sigma = np.float32(reference / p.snr)
    real = noise_free + sigma * rng.standard_normal(noise_free.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(noise_free.shape, dtype=np.float32)
    dwi = np.hypot(real, imag).astype(np.float32)
    truth = {
        "noise_free": noise_free,
        "s0": s0,
        "fa": np.where(wm > 0.5, fa_map, 0.0).astype(np.float32),
        "e1": e1,
        "w2": w2,
        "sigma": float(sigma),
        "params": p.as_dict(),
        "intensities": intensities,
    }
    return dwi, truth


def _area_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of the first two axes (FOV-aligned)."""
    x, y = image.shape[:2]
    if x % factor or y % factor:
        raise InputError(
            f"degrade_dwi: in-plane size {x}x{y} is not a multiple of the factor {factor}"
        )
    rest = image.shape[2:]
    blocks = image.reshape(x // factor, factor, y // factor, factor, *rest)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def degrade_dwi(
    hr: np.ndarray,
    factor: int = 4,
    *,
    method: str = "area",
    noise_sigma: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The paper's LR image (Sec. 3): Gaussian noise, then ``factor``x downsampling in-plane.

    Parameters
    ----------
    hr : (x, y, z) or (x, y, z, n) float32; x and y multiples of ``factor``.
    method : ``"area"`` (mean of factor x factor blocks: a coarser in-plane matrix with the
        same field of view) or ``"kspace"`` (the outer k-space truncated in x and y first,
        ``simulate.kspace.truncate_kspace``, then the block mean; option).
    noise_sigma : standard deviation of the added Gaussian noise, intensity units.

    Returns
    -------
    (x / factor, y / factor, z[, n]) float32. LR pixel i covers HR pixels
    [factor i, factor (i + 1)): the FOV-aligned grid of
    :func:`mrenhance.engine.infer.scaled_affine`.
    """
    if method not in ("area", "kspace"):
        raise InputError(f"degrade_dwi: method must be 'area' or 'kspace', got {method!r}")
    image = np.asarray(hr, dtype=np.float32)
    if noise_sigma > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        image = image + np.float32(noise_sigma) * rng.standard_normal(image.shape, np.float32)
    if method == "kspace":
        from mrenhance.simulate.kspace import truncate_kspace

        f = (factor, factor, 1)
        if image.ndim == 4:
            image = np.stack(
                [
                    truncate_kspace(image[..., t], f, output="same_grid")
                    for t in range(image.shape[3])
                ],
                axis=-1,
            )
        else:
            image = truncate_kspace(image, f, output="same_grid")
    return _area_downsample(image, factor)
