"""Pseudo-continuous ASL with a known truth: subjects, label/control series, per-pair CBF.

No ASL scans ship offline, so the ASL denoising task (Xie et al. 2020, "learning from
noise" DWAN) simulates them from the synthetic subjects of :mod:`mrenhance.simulate.subjects`.
That also gives what the paper never had: the true CBF.

The chain, one subject (all pure functions of a seeded ``numpy.random.Generator``):

1. :func:`draw_perfusion` -- anatomy on the 2 mm MNI grid (91 x 109 x 91, FSL's box) and a
   true CBF map (ml/100 g/min) from its tissue fractions: GM and WM values around asldro's
   ground-truth brain (GM 60, WM 20), varied per subject by a global scale, a GM/WM ratio,
   a smooth spatial variation, an optional hypo-perfused (stroke-like) territory and an
   optional hyper-perfused region (tumour-like; beyond the paper, so that networks see
   high CBF).
2. :func:`acquire_pairs` -- the paper's protocol (Sec. 2.3): pCASL, 40 label/control pairs,
   label duration 1.5 s, PLD 1.5 s, 64 x 64 x 20 voxels of 3.4 x 3.4 x 6 mm (5 mm slices,
   1 mm gap), TR 4 s. Images from the single-compartment model of the ASL white paper
   (Alsop et al. 2015, Eq. 1) with M0, per-image thermal noise, physiological fluctuation,
   a small rigid motion per pair and outlier pairs (a motion spike in a few slices of the
   label image).
3. :func:`quantify_pairs` -- per-pair CBF by the white-paper formula with the control image
   as voxel-wise M0 (Sec. 2.3: "M0 is approximated by the control image in each pair").
4. :func:`robust_pair_rejection` -- slice-wise outlier cleaning, SCORE-like (Dolui et al.
   2017; the paper used Li et al. 2018's prior-guided slice-wise cleaning).
5. :func:`simulate_asl_subject` -- all of it, then the paper's sets: four segment means of 10
   pairs, the pseudo gold standard (40-pair mean after cleaning, Gaussian FWHM 3 mm), each
   "normalised" to the 2 mm MNI grid.

Choices where the paper is silent are marked ``# choice``. Shapes: images are (x, y, z) in
voxel order (RAS), series (x, y, z, t).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import InputError

__all__ = [
    "CALIBRATED_THERMAL_NOISE",
    "AslProtocol",
    "AslSubject",
    "Perfusion",
    "PAPER_SLICES",
    "SNR_SLICE",
    "acquire_pairs",
    "cbf_from_difference",
    "difference_from_cbf",
    "draw_perfusion",
    "mni_2mm_affine",
    "pseudo_gold_snr",
    "quantify_pairs",
    "robust_pair_rejection",
    "simulate_asl_subject",
]

#: The 2 mm MNI grid of the paper (FSL's MNI152 2 mm box: x -90..90, y -126..90, z -72..108).
MNI_SHAPE = (91, 109, 91)
#: Axial slices the paper extracts (Sec. 2.3: "one out of every three axial slices from slice
#: 36 to slice 60"). # choice: read as 0-based indices of the 91-slice grid (z = 0.5..48.5 mm).
PAPER_SLICES = tuple(range(36, 61, 3))
#: The slice of the SNR measurement (Sec. 2.4: "in slice 50"), same indexing.
SNR_SLICE = 50
#: Thermal noise (std per image x the mean GM M0) at which the pseudo gold standard's SNR
#: (:func:`pseudo_gold_snr`) is nearest the paper's 5.87 (Sec. 3), measured on 20
#: calibration subjects by ``benchmarks/asl_calibration.py`` (table in docs/asl.md). The one
#: source of the simulator default; the recipe ``asl_dwan``, the task's data default,
#: ``mrenhance asl-simulate`` and the demo use it (tests/test_asl_simulate.py checks).
CALIBRATED_THERMAL_NOISE = 0.00575

# Residual misregistration after spatial normalisation to MNI: the subject grid stands for
# the MNI space, and its deformation for what SPM's normalisation leaves (choice: about a
# third of the subject generator's default head-positioning ranges).
_RESIDUAL_DEFORMATION = {
    "rotation_deg": 3.0,
    "scale": 0.05,
    "shear": 0.02,
    "translation_mm": 2.0,
    "elastic_mm": 1.5,
}


# ---------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class AslProtocol:
    """Acquisition and quantification parameters (the paper's Sec. 2.3 unless marked).

    Times in s, sizes in mm. ``labelling_efficiency`` (alpha), ``partition_coefficient``
    (lambda, ml/g) and ``t1_blood_s`` at 3 T are the white paper's (Alsop et al. 2015,
    Table 1). ``slice_time_s``: the readout delay per slice of a 2D multi-slice readout, so
    slice k has PLD ``pld_s + k * slice_time_s`` (white paper) # choice: 35 ms (20 slices
    in 0.7 s of a 4 s TR).
    """

    n_pairs: int = 40
    label_duration_s: float = 1.5
    pld_s: float = 1.5
    tr_s: float = 4.0
    te_s: float = 0.011
    matrix: tuple[int, int, int] = (64, 64, 20)
    voxel_mm: tuple[float, float, float] = (3.4, 3.4, 6.0)
    slice_thickness_mm: float = 5.0
    slice_time_s: float = 0.035
    labelling_efficiency: float = 0.85
    partition_coefficient: float = 0.9
    t1_blood_s: float = 1.65

    def pld_per_slice(self) -> np.ndarray:
        """(z,) post-labelling delay of each native slice, s."""
        return self.pld_s + self.slice_time_s * np.arange(self.matrix[2])


def difference_from_cbf(
    cbf: np.ndarray, m0: np.ndarray, protocol: AslProtocol, pld_s: np.ndarray | float
) -> np.ndarray:
    """Control - label signal of the single-compartment model (white paper, Eq. 1 inverted).

    ``dM = CBF * 2 alpha T1b M0 exp(-PLD / T1b) (1 - exp(-tau / T1b)) / (6000 lambda)``

    cbf : ml/100 g/min, any shape; m0 : same shape (arbitrary units); pld_s : broadcasts
    against them (e.g. (z,) per slice). Returns dM in M0's units.
    """
    p = protocol
    t1b = p.t1_blood_s
    k = (
        2.0
        * p.labelling_efficiency
        * t1b
        * np.exp(-np.asarray(pld_s) / t1b)
        * (1.0 - np.exp(-p.label_duration_s / t1b))
        / (6000.0 * p.partition_coefficient)
    )
    return (np.asarray(cbf) * np.asarray(m0) * k).astype(np.float32)


def cbf_from_difference(
    difference: np.ndarray, m0: np.ndarray, protocol: AslProtocol, pld_s: np.ndarray | float
) -> np.ndarray:
    """CBF (ml/100 g/min) by the white paper's Eq. 1 from control - label and M0.

    Zero where ``m0 <= 0``. Shapes as :func:`difference_from_cbf`.
    """
    p = protocol
    t1b = p.t1_blood_s
    k = (
        6000.0
        * p.partition_coefficient
        * np.exp(np.asarray(pld_s) / t1b)
        / (2.0 * p.labelling_efficiency * t1b * (1.0 - np.exp(-p.label_duration_s / t1b)))
    )
    m0 = np.asarray(m0, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(m0 > 0, k * np.asarray(difference) / m0, 0.0)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------- anatomy
def mni_2mm_affine() -> np.ndarray:
    """(4, 4) voxel -> world of the 2 mm MNI grid as the subject generator lays it out.

    FSL's box starts at (-90, -126, -72) mm; the generator's 2 mm lattice is offset by half
    a millimetre from it (first voxel centre at (-89.5, -125.5, -71.5)).
    """
    from mrenhance.simulate import subjects as S

    _, affine = S._subject_grid(2.0)
    start = _mni_region_start(affine)
    out = affine.copy()
    out[:3, 3] = affine[:3, 3] + 2.0 * np.asarray(start)
    return out


def _mni_region_start(grid_affine: np.ndarray) -> tuple[int, int, int]:
    want = np.array([-90.0, -126.0, -72.0])
    return tuple(int(v) for v in np.round((want - grid_affine[:3, 3]) / 2.0))  # type: ignore[return-value]


@dataclass
class Perfusion:
    """A subject's anatomy and true perfusion on the 2 mm MNI grid (91, 109, 91).

    cbf : true CBF, ml/100 g/min. m0 : equilibrium magnetisation (PD mix, arbitrary units,
    times a smooth receive field). gm, wm, csf : tissue fractions. brain_mask : bool.
    territory_mask : bool, the hypo-perfused territory (all False when none was drawn).
    hyper_mask : bool, the hyper-perfused region (all False when none was drawn).
    params : the drawn numbers.
    """

    cbf: np.ndarray
    m0: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain_mask: np.ndarray
    territory_mask: np.ndarray
    affine: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    hyper_mask: np.ndarray | None = None


def _smooth_field(
    rng: np.random.Generator, affine: np.ndarray, shape: Sequence[int], spacing_mm: float
) -> np.ndarray:
    """A unit-std cubic B-spline random field on a grid (``simulate.fields``)."""
    from mrenhance.simulate.fields import Lattice, evaluate_field, random_coefficients

    axes = [affine[a, 3] + affine[a, a] * np.arange(n) for a, n in enumerate(shape)]
    lo = [ax.min() for ax in axes]
    hi = [ax.max() for ax in axes]
    lattice = Lattice.covering(lo, hi, spacing_mm)
    return evaluate_field(random_coefficients(rng, lattice), lattice, axes)


def draw_perfusion(
    rng: np.random.Generator,
    *,
    gm_cbf: tuple[float, float] = (60.0, 60.0),
    global_scale: tuple[float, float] = (0.8, 1.2),
    gm_wm_ratio: tuple[float, float] = (2.4, 3.0),
    spatial_variation: tuple[float, float] = (0.0, 0.15),
    territory_probability: float = 0.3,
    territory_factor: tuple[float, float] = (0.2, 0.6),
    territory_radius_mm: tuple[float, float] = (15.0, 30.0),
    hyper_probability: float = 0.0,
    hyper_factor: tuple[float, float] = (1.5, 3.5),
    hyper_radius_mm: tuple[float, float] = (6.0, 15.0),
    hyper_slices: tuple[int, int] | None = None,
    label_probability: float = 0.0,
) -> Perfusion:
    """Draw a subject (mild residual deformation, no lesions) and its true CBF.

    ``CBF = s (g f_GM + g / r f_WM) (1 + a z(x))`` with ``s`` the global scale, ``g`` the GM
    value (asldro's ground-truth GM 60, WM 20 ml/100 g/min as the reference), ``r`` the
    GM/WM ratio (2.4-3.0: WM 20-25 at g = 60), ``z`` a unit-std B-spline field (50 mm
    knots) of amplitude ``a``; CSF has no perfusion. With ``territory_probability`` a
    hypo-perfused territory multiplies CBF by ``territory_factor`` inside a lobed ball
    (radius ``territory_radius_mm``) centred on a cortical GM voxel, with a 3 mm soft edge
    (stroke-like; choice). With ``hyper_probability`` a hyper-perfused region (tumour- or
    luxury-perfusion-like; choice) multiplies CBF by ``hyper_factor`` inside a lobed ball
    of radius ``hyper_radius_mm`` centred on a GM or WM voxel (of the axial slices
    ``hyper_slices`` (first, last), default the paper's, where the task trains and
    scores; choice): GM 60 x 1.5-3.5 gives
    90-210 ml/100 g/min, the range of high-grade gliomas and hyperaemia. It is drawn last,
    and only when ``hyper_probability > 0``, so the default subjects are unchanged by it.
    With ``label_probability`` (choice, beyond the paper) the CBF's tissue term uses hard
    labels (each voxel all GM or all WM, the larger fraction of GM/WM/CSF; CSF 0) instead of
    fractions: piecewise-constant perfusion with sharp edges, as ASLDRO's label-based
    ground truth; drawn last and only when ``label_probability > 0`` (default subjects
    unchanged).
    Ranges are choices around the issue's GM ~60, WM ~20-25.
    """
    from mrenhance.simulate import subjects as S

    strength = S.DeformStrength(**_RESIDUAL_DEFORMATION)
    params = S.draw_subject_params(rng, voxel_mm=2.0, lesions=(), deform=strength)
    start = _mni_region_start(params.affine)
    subject = S.build_subject(params, region_start=start, region_shape=MNI_SHAPE)
    gm, wm, csf = (subject.fraction(k) for k in ("gm", "wm", "csf"))
    affine = subject.affine

    g = float(rng.uniform(*gm_cbf))
    s = float(rng.uniform(*global_scale))
    r = float(rng.uniform(*gm_wm_ratio))
    a = float(rng.uniform(*spatial_variation))
    variation = 1.0 + a * _smooth_field(rng, affine, MNI_SHAPE, 50.0)
    cbf = s * (g * gm + (g / r) * wm) * np.clip(variation, 0.3, None)

    territory = np.zeros(MNI_SHAPE, dtype=bool)
    info: dict[str, Any] = {
        "gm_cbf": g,
        "global_scale": s,
        "gm_wm_ratio": r,
        "spatial_variation": a,
        "territory": None,
    }
    if rng.random() < territory_probability:
        weight, info["territory"] = _lobed_region(
            rng, (gm > 0.6) & subject.brain_mask, territory_radius_mm, territory_factor
        )
        cbf = cbf * (1.0 - (1.0 - info["territory"]["factor"]) * weight)
        territory = (weight > 0.5) & subject.brain_mask

    # M0: proton density mix (subjects' PD: GM 0.8, WM 0.7, CSF 1.0, scalp fat 0.9) times a
    # smooth receive field (+-10 %; choice). Control-as-M0 calibration cancels the field.
    pd = 0.8 * gm + 0.7 * wm + 1.0 * csf + 0.9 * subject.fraction("scalp")
    receive = np.exp(0.1 * _smooth_field(rng, affine, MNI_SHAPE, 80.0))
    hyper = np.zeros(MNI_SHAPE, dtype=bool)
    info["hyper"] = None
    if hyper_probability > 0 and rng.random() < hyper_probability:
        tissue = ((gm + wm) > 0.6) & subject.brain_mask
        first, last = hyper_slices or (PAPER_SLICES[0], PAPER_SLICES[-1])
        tissue[:, :, : int(first)] = False
        tissue[:, :, int(last) + 1 :] = False
        weight, info["hyper"] = _lobed_region(rng, tissue, hyper_radius_mm, hyper_factor)
        cbf = cbf * (1.0 + (info["hyper"]["factor"] - 1.0) * weight)
        hyper = (weight > 0.5) & subject.brain_mask
    hard = label_probability > 0 and bool(rng.random() < label_probability)
    if hard:  # drawn last: the same subject with its tissue term on hard labels
        label = np.argmax(np.stack([gm, wm, csf]), axis=0)
        tissue = (gm + wm + csf) > 0.5
        soft = g * gm + (g / r) * wm
        sharp = g * ((label == 0) & tissue) + (g / r) * ((label == 1) & tissue)
        cbf = np.where(sharp > 0, cbf / np.maximum(soft, 1e-6) * sharp, 0.0)
    info["hard_labels"] = hard
    return Perfusion(
        cbf=cbf.astype(np.float32),
        m0=(pd * receive).astype(np.float32),
        gm=gm,
        wm=wm,
        csf=csf,
        brain_mask=subject.brain_mask,
        territory_mask=territory,
        affine=affine,
        params=info,
        hyper_mask=hyper,
    )


def _lobed_region(
    rng: np.random.Generator,
    candidates: np.ndarray,
    radius_mm: tuple[float, float],
    factor: tuple[float, float],
) -> tuple[np.ndarray, dict[str, Any]]:
    """A soft lobed ball on the 2 mm MNI grid: (weight in [0, 1] (x, y, z), its numbers).

    Centre: a random voxel of ``candidates``; radius and factor uniform in their ranges;
    lobes +-20 % of the radius along a random direction and a ~3 mm logistic edge (choices).
    """
    where = np.argwhere(candidates)
    centre = where[rng.integers(len(where))]
    radius = float(rng.uniform(*radius_mm))
    value = float(rng.uniform(*factor))
    grid = np.indices(MNI_SHAPE, dtype=np.float32)
    offset = (grid - centre[:, None, None, None].astype(np.float32)) * 2.0  # mm
    dist = np.sqrt((offset**2).sum(axis=0))
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    cos = np.tensordot(direction, offset, axes=1) / np.maximum(dist, 1e-3)
    local_radius = radius * (1.0 + 0.2 * cos)
    weight = 1.0 / (1.0 + np.exp((dist - local_radius) / 1.5))
    return weight, {"centre_vox": [int(v) for v in centre], "radius_mm": radius, "factor": value}


# ---------------------------------------------------------------------------- acquisition
def native_affine(perfusion: Perfusion, protocol: AslProtocol) -> np.ndarray:
    """(4, 4) voxel -> world of the axial acquisition grid, centred on the brain."""
    idx = np.argwhere(perfusion.brain_mask)
    centre_vox = (idx.min(0) + idx.max(0)) / 2.0
    centre = perfusion.affine[:3, :3] @ centre_vox + perfusion.affine[:3, 3]
    vox = np.asarray(protocol.voxel_mm, dtype=np.float64)
    out = np.diag([*vox, 1.0])
    out[:3, 3] = centre - vox * (np.asarray(protocol.matrix) - 1) / 2.0
    return out


def _rotation(angles_deg: Sequence[float]) -> np.ndarray:
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class AslSeries:
    """What the scanner gives: the label/control series and an M0 scan, native grid.

    images : (x, y, z, 2 n) float32, control then label for each pair (BIDS order
    "control", "label", ...). m0scan : (x, y, z). affine : native grid. planted_outliers :
    (n, z) bool, the slices of each pair that hold a motion spike. motion : (n, 6) rotation
    (deg) and translation (mm) of each pair.
    """

    images: np.ndarray
    m0scan: np.ndarray
    affine: np.ndarray
    planted_outliers: np.ndarray
    motion: np.ndarray
    protocol: AslProtocol

    @property
    def control(self) -> np.ndarray:
        return self.images[..., 0::2]

    @property
    def label(self) -> np.ndarray:
        return self.images[..., 1::2]


def acquire_pairs(
    perfusion: Perfusion,
    rng: np.random.Generator,
    *,
    protocol: AslProtocol | None = None,
    thermal_noise: float = CALIBRATED_THERMAL_NOISE,
    physiological_noise: float = 0.002,
    perfusion_fluctuation: float = 0.05,
    motion_mm: float = 0.5,
    outlier_fraction: float = 0.1,
    outlier_shift_mm: tuple[float, float] = (1.0, 3.0),
    psf_scale: float = 1.0,
) -> AslSeries:
    """Simulate the label/control series on the native 64 x 64 x 20 grid.

    Signal per pair ``p`` (white paper single-compartment model, Eq. 1)::

        control_p = M0 (1 + g_c + h_c(x)) + n_c
        label_p   = (M0 - dM (1 + f_p)) (1 + g_l + h_l(x)) + n_l

    * ``M0`` and ``dM`` are sampled at the moved acquisition grid from maps blurred by the
      voxel's point-spread function (in-plane box of 3.4 mm ~ Gaussian sigma 3.4/sqrt(12);
      slice profile FWHM 5 mm); # choice: the control image has the full M0 (TR 4 s, no
      background suppression: saturation of a few per cent is ignored, so calibrating with
      the control image is unbiased). ``psf_scale`` multiplies the PSF widths (choice,
      beyond the paper: 0 = point sampling of the 2 mm maps, as a resampling simulator
      such as ASLDRO does; 1 = the default above).
    * thermal noise ``n``: Gaussian, std ``thermal_noise`` x the mean GM M0, independent per
      image (magnitude images at this SNR are Gaussian). Calibrated so the pseudo gold
      standard's SNR is near the paper's 5.87 (:data:`CALIBRATED_THERMAL_NOISE`, the default).
    * physiological fluctuation: per image a global gain ``g`` and a smooth field ``h`` (60 mm
      knots), each with std ``physiological_noise`` (choice: 0.2 % of the signal, which
      survives the subtraction as an M0-shaped offset, as in real data before ASLtbx's
      global-signal regression); and a per-pair perfusion fluctuation ``f`` of std
      ``perfusion_fluctuation``.
    * motion: each pair at a rigid position, a random walk of std ``motion_mm`` mm / 0.4
      ``motion_mm`` deg per pair around the first (residual motion after realignment;
      choice).
    * outliers: each pair with probability ``outlier_fraction`` has a motion spike: 1-4
      contiguous slices of its label image acquired with an extra in-plane shift of
      ``outlier_shift_mm`` and up to 2 deg of rotation (planted_outliers marks them).
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    p = protocol or AslProtocol()
    n, (nx, ny, nz) = p.n_pairs, p.matrix
    aff = native_affine(perfusion, p)
    grid_mm = 2.0
    vox = np.asarray(p.voxel_mm)
    sigma_mm = np.array([vox[0] / np.sqrt(12.0), vox[1] / np.sqrt(12.0), 0.0])
    sigma_mm[2] = p.slice_thickness_mm / 2.3548
    sigma_mm = sigma_mm * float(psf_scale)
    sigma_vox = np.sqrt(np.maximum(sigma_mm**2 - (grid_mm**2) / 12.0, 0.0)) / grid_mm
    m0_b = gaussian_filter(perfusion.m0, sigma_vox, mode="constant")
    # dM is proportional to CBF * M0 (tissue M0 at the voxel): blur the product
    pld = p.pld_per_slice()
    cbf_m0_b = gaussian_filter(perfusion.cbf * perfusion.m0, sigma_vox, mode="constant")

    idx = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), 0)
    world = np.tensordot(aff[:3, :3], idx.astype(np.float64), axes=1) + aff[:3, 3, None, None, None]
    centre = aff[:3, :3] @ ((np.asarray(p.matrix) - 1) / 2.0) + aff[:3, 3]
    to_grid = np.linalg.inv(perfusion.affine)

    def sample(maps: Sequence[np.ndarray], angles: np.ndarray, shift: np.ndarray, sl=slice(None)):
        r = _rotation(angles)
        w = world[:, :, :, sl].reshape(3, -1) - centre[:, None] - shift[:, None]
        q = r.T @ w + centre[:, None]
        g = to_grid[:3, :3] @ q + to_grid[:3, 3, None]
        shape = world[:, :, :, sl].shape[1:]
        return [
            map_coordinates(m, g, order=1, mode="constant").reshape(shape).astype(np.float32)
            for m in maps
        ]

    gm_m0 = float(np.mean(perfusion.m0[perfusion.gm > 0.7])) if (perfusion.gm > 0.7).any() else 1.0
    sigma = thermal_noise * gm_m0
    steps = rng.normal(0.0, 1.0, (n, 6)) * np.array([0.4 * motion_mm] * 3 + [motion_mm] * 3)
    steps[0] = 0.0
    motion = np.cumsum(steps, axis=0) / np.sqrt(np.arange(1, n + 1))[:, None]  # bounded walk
    images = np.empty((nx, ny, nz, 2 * n), dtype=np.float32)
    planted = np.zeros((n, nz), dtype=bool)
    spacing_native = np.diag(aff)[:3]
    axes = [aff[a, 3] + spacing_native[a] * np.arange(m) for a, m in enumerate(p.matrix)]
    from mrenhance.simulate.fields import Lattice, evaluate_field, random_coefficients

    lattice = Lattice.covering([a.min() for a in axes], [a.max() for a in axes], 60.0)
    for k in range(n):
        angles, shift = motion[k, :3], motion[k, 3:]
        m0_k, cm_k = sample((m0_b, cbf_m0_b), angles, shift)
        dm_k = difference_from_cbf(cm_k, 1.0, p, pld[None, None, :]) * (
            1.0 + perfusion_fluctuation * rng.standard_normal()
        )
        label_m0, label_dm = m0_k.copy(), dm_k.copy()
        if rng.random() < outlier_fraction:
            length = int(rng.integers(1, 5))
            first = int(rng.integers(0, nz - length + 1))
            sl = slice(first, first + length)
            direction = rng.standard_normal(2)
            direction /= np.linalg.norm(direction)
            extra = np.zeros(3)
            extra[:2] = direction * rng.uniform(*outlier_shift_mm)
            spin = angles + np.array([0.0, 0.0, rng.uniform(-2.0, 2.0)])
            m0_s, cm_s = sample((m0_b, cbf_m0_b), spin, shift + extra, sl)
            label_m0[:, :, sl] = m0_s
            label_dm[:, :, sl] = difference_from_cbf(cm_s, 1.0, p, pld[None, None, sl])
            planted[k, sl] = True
        gains = []
        for _ in range(2):
            h = evaluate_field(random_coefficients(rng, lattice), lattice, axes)
            gains.append(1.0 + physiological_noise * (rng.standard_normal() + h))
        control = m0_k * gains[0] + rng.normal(0.0, sigma, m0_k.shape)
        label = (label_m0 - label_dm) * gains[1] + rng.normal(0.0, sigma, m0_k.shape)
        images[..., 2 * k] = control
        images[..., 2 * k + 1] = label
    (m0_scan,) = sample((m0_b,), np.zeros(3), np.zeros(3))
    m0_scan = m0_scan + rng.normal(0.0, sigma, m0_scan.shape).astype(np.float32)
    return AslSeries(images, m0_scan.astype(np.float32), aff, planted, motion, p)


def quantify_pairs(
    control: np.ndarray,
    label: np.ndarray,
    protocol: AslProtocol | None = None,
    *,
    mask_fraction: float = 0.2,
    pld_s: np.ndarray | float | None = None,
) -> np.ndarray:
    """Per-pair CBF (ml/100 g/min) with each control image as the voxel-wise M0 (Sec. 2.3).

    control, label : (x, y, z, n). Voxels whose mean control is below ``mask_fraction`` of
    its 99th percentile are set to 0 (outside the head; choice). ``pld_s`` overrides the
    protocol's per-slice PLD (a scalar, or (z,) per slice).
    Returns (x, y, z, n) float32.
    """
    p = protocol or AslProtocol()
    control = np.asarray(control, dtype=np.float32)
    label = np.asarray(label, dtype=np.float32)
    if control.shape != label.shape or control.ndim != 4:
        raise InputError(
            f"quantify_pairs: control {control.shape} and label {label.shape} must be the same "
            "(x, y, z, n) shape"
        )
    if pld_s is None:
        pld = p.pld_s + p.slice_time_s * np.arange(control.shape[2])
    else:
        pld = np.broadcast_to(np.asarray(pld_s, dtype=np.float64), (control.shape[2],))
    mean_c = control.mean(axis=-1)
    positive = mean_c[mean_c > 0]
    level = float(np.percentile(positive, 99)) if positive.size else 0.0
    head = mean_c > mask_fraction * level
    cbf = cbf_from_difference(control - label, control, p, pld[None, None, :, None])
    cbf[~head] = 0.0
    return cbf


# ---------------------------------------------------------------------------- cleaning
def robust_pair_rejection(
    cbf_pairs: np.ndarray,
    mask: np.ndarray,
    *,
    threshold: float = 3.0,
    min_keep_fraction: float = 0.5,
) -> np.ndarray:
    """Slice-wise outlier rejection of per-pair CBF maps, SCORE-like; a (n, z) keep mask.

    For each slice z (the native acquisition's slices: a motion spike hits slices):

    1. robust screen: each pair's RMS deviation from the voxel-wise median over the
       slice's mask voxels, ``e_p``; pairs with ``(e_p - median(e)) / (1.4826 MAD(e)) >
       threshold`` are rejected (median/MAD: the outliers do not hide themselves);
    2. SCORE-style refinement (Dolui et al. 2017): among the kept pairs, repeatedly drop the
       one least correlated with the mean of the others while that lowers the estimated
       variance of the mean, ``mean_voxels(var_p) / n_kept``, never below
       ``min_keep_fraction`` of the pairs.

    Parameters
    ----------
    cbf_pairs : (x, y, z, n) per-pair CBF.
    mask : (x, y, z) bool, e.g. the brain or head in the native grid.

    Returns
    -------
    (n, z) bool: True = kept. Slices with fewer than 10 mask voxels keep every pair.
    """
    data = np.asarray(cbf_pairs, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if data.ndim != 4 or mask.shape != data.shape[:3]:
        raise InputError(
            f"robust_pair_rejection: expected (x, y, z, n) pairs and an (x, y, z) mask, got "
            f"{data.shape} and {mask.shape}"
        )
    n, nz = data.shape[3], data.shape[2]
    keep = np.ones((n, nz), dtype=bool)
    floor = max(2, int(np.ceil(min_keep_fraction * n)))
    for z in range(nz):
        m = mask[:, :, z]
        if m.sum() < 10:
            continue
        values = data[:, :, z][m].T  # (n, voxels)
        med = np.median(values, axis=0)
        err = np.sqrt(np.mean((values - med) ** 2, axis=1))
        centre = np.median(err)
        mad = 1.4826 * np.median(np.abs(err - centre))
        score = (err - centre) / max(mad, 1e-12 * max(centre, 1.0))
        kept = score <= threshold
        if kept.sum() < floor:  # keep the floor best pairs
            kept = np.zeros(n, dtype=bool)
            kept[np.argsort(score)[:floor]] = True
        while kept.sum() > floor:
            idx = np.flatnonzero(kept)
            sub = values[idx]
            total = sub.sum(axis=0)
            worst, worst_r = -1, np.inf
            for j, row in zip(idx, sub, strict=True):
                others = (total - row) / (len(idx) - 1)
                a, b = row - row.mean(), others - others.mean()
                r = float(a @ b / max(np.sqrt((a @ a) * (b @ b)), 1e-12))
                if r < worst_r:
                    worst, worst_r = j, r
            before = np.mean(np.var(sub, axis=0, ddof=1)) / len(idx)
            rest = values[[i for i in idx if i != worst]]
            after = np.mean(np.var(rest, axis=0, ddof=1)) / len(rest)
            if after >= before:
                break
            kept[worst] = False
        keep[:, z] = kept
    return keep


# ---------------------------------------------------------------------------- the subject
@dataclass
class AslSubject:
    """One simulated ASL subject on the 2 mm MNI grid, with the paper's derived maps.

    All maps (x, y, z) = (91, 109, 91) float32 in ml/100 g/min unless noted:

    truth : the true CBF. segments : (4, x, y, z) means of pairs 1-10, 11-20, 21-30, 31-40
    (uncleaned: the paper's network input is the plain 10-pair mean). pseudo_gold : 40-pair
    mean after :func:`robust_pair_rejection`, Gaussian FWHM 3 mm (Sec. 2.3). gm, wm :
    tissue fractions; brain_mask, territory_mask, hyper_mask : bool (the hypo- and the
    hyper-perfused region; hyper_mask None or all False when none). affine : the MNI grid's.
    series : the native label/control series (kept when asked). keep : (n, z) cleaning
    result; planted : (n, z) planted outliers. native_mask : (64, 64, 20) head mask.
    """

    name: str
    truth: np.ndarray
    segments: np.ndarray
    pseudo_gold: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    brain_mask: np.ndarray
    territory_mask: np.ndarray
    affine: np.ndarray
    keep: np.ndarray
    planted: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    series: AslSeries | None = None
    hyper_mask: np.ndarray | None = None

    @property
    def input_10(self) -> np.ndarray:
        """The paper's test input: the mean of pairs 1-10 (Sec. 2.3)."""
        return self.segments[0]

    def rois(self, z: int = SNR_SLICE) -> tuple[np.ndarray, np.ndarray]:
        """(GM ROI, WM ROI) bool (x, y) masks in axial slice ``z`` (Sec. 2.4).

        # choice: GM fraction > 0.7 and WM fraction > 0.95 (pure tissue), outside any
        hypo- or hyper-perfused region.
        """
        outside = ~self.territory_mask[:, :, z]
        if self.hyper_mask is not None:
            outside &= ~self.hyper_mask[:, :, z]
        return (self.gm[:, :, z] > 0.7) & outside, (self.wm[:, :, z] > 0.95) & outside


def to_mni(native: np.ndarray, native_aff: np.ndarray, mni_aff: np.ndarray) -> np.ndarray:
    """Resample a native-grid map (x, y, z[, n]) onto the MNI grid (trilinear, 0 outside).

    The "spatial normalisation" of the simulation: the nominal acquisition geometry, no
    unwarping of the subject's residual deformation (that is the residual misregistration).
    """
    from scipy.ndimage import map_coordinates

    idx = np.indices(MNI_SHAPE, dtype=np.float64).reshape(3, -1)
    world = mni_aff[:3, :3] @ idx + mni_aff[:3, 3, None]
    inv = np.linalg.inv(native_aff)
    g = inv[:3, :3] @ world + inv[:3, 3, None]
    arr = np.asarray(native, dtype=np.float32)
    if arr.ndim == 3:
        return map_coordinates(arr, g, order=1, mode="constant").reshape(MNI_SHAPE)
    return np.stack(
        [
            map_coordinates(arr[..., k], g, order=1, mode="constant").reshape(MNI_SHAPE)
            for k in range(arr.shape[-1])
        ],
        axis=0,
    )


def gaussian_fwhm(image: np.ndarray, fwhm_mm: float, voxel_mm: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing with a FWHM in mm (the pseudo gold standard's 3 mm)."""
    from scipy.ndimage import gaussian_filter

    if fwhm_mm <= 0:
        return np.asarray(image, dtype=np.float32)
    sigma = [fwhm_mm / 2.3548 / float(v) for v in voxel_mm]
    return gaussian_filter(np.asarray(image, dtype=np.float32), sigma, mode="nearest")


#: The default protocol's field of view (mm): 64 x 3.4 in-plane, 20 x 6 through-plane.
FOV_MM = (217.6, 217.6, 120.0)


def draw_acquisition(
    rng: np.random.Generator,
    *,
    voxel_mm: Sequence[Sequence[float]] = ((3.4, 3.4), (3.4, 3.4), (6.0, 6.0)),
    psf: Sequence[float] = (1.0, 1.0),
    gap: Sequence[float] = (0.0, 0.2),
) -> dict[str, Any]:
    """Random acquisition geometry (choice, beyond the paper): ``acquire_pairs`` options.

    Each voxel edge is drawn uniformly in its (low, high) range (mm), the matrix keeps the
    default field of view :data:`FOV_MM` (rounded up), the slice profile's FWHM is the
    slice spacing times (1 - gap) with the gap drawn in ``gap``, and the PSF widths are
    scaled by a factor drawn in ``psf`` (:func:`acquire_pairs`). Returns ``{"protocol":
    AslProtocol, "psf_scale": float}``.
    """
    vox = tuple(float(rng.uniform(float(lo), float(hi))) for lo, hi in voxel_mm)
    matrix = tuple(int(np.ceil(f / v - 1e-6)) for f, v in zip(FOV_MM, vox, strict=True))
    thickness = vox[2] * (1.0 - float(rng.uniform(*gap)))
    protocol = AslProtocol(matrix=matrix, voxel_mm=vox, slice_thickness_mm=thickness)  # type: ignore[arg-type]
    return {"protocol": protocol, "psf_scale": float(rng.uniform(*psf))}


def simulate_asl_subject(
    seed: int | Sequence[int],
    *,
    name: str | None = None,
    outlier_fraction: float = 0.1,
    thermal_noise: float = CALIBRATED_THERMAL_NOISE,
    keep_series: bool = False,
    perfusion_options: dict[str, Any] | None = None,
    acquisition_options: dict[str, Any] | None = None,
) -> AslSubject:
    """One subject: perfusion truth -> 40 pairs -> per-pair CBF -> the paper's maps (MNI).

    The per-pair maps are averaged in the native space and the means resampled to the MNI
    grid (trilinear resampling commutes with averaging); the cleaning runs on the native
    slices, where a motion spike lives.
    """
    rng = np.random.default_rng(seed)
    perf = draw_perfusion(rng, **(perfusion_options or {}))
    series = acquire_pairs(
        perf,
        rng,
        thermal_noise=thermal_noise,
        outlier_fraction=outlier_fraction,
        **(acquisition_options or {}),
    )
    p = series.protocol
    cbf = quantify_pairs(series.control, series.label, p)
    head = cbf.any(axis=-1)
    keep = robust_pair_rejection(cbf, head)
    n = p.n_pairs
    seg = n // 4
    native_means = [cbf[..., k * seg : (k + 1) * seg].mean(axis=-1) for k in range(4)]
    weights = keep.T[None, None].astype(np.float32)  # (1, 1, z, n)
    cleaned = (cbf * weights).sum(axis=-1) / np.maximum(weights.sum(axis=-1), 1.0)
    mni = to_mni(np.stack([*native_means, cleaned], axis=-1), series.affine, perf.affine)
    gold = gaussian_fwhm(mni[4], 3.0, (2.0, 2.0, 2.0))
    return AslSubject(
        name=name or f"sub-{seed}",
        truth=perf.cbf,
        segments=mni[:4].astype(np.float32),
        pseudo_gold=gold.astype(np.float32),
        gm=perf.gm,
        wm=perf.wm,
        brain_mask=perf.brain_mask,
        territory_mask=perf.territory_mask,
        affine=perf.affine,
        keep=keep,
        planted=series.planted_outliers,
        params={
            **perf.params,
            "outlier_fraction": outlier_fraction,
            "thermal_noise": thermal_noise,
        },
        series=series if keep_series else None,
        hyper_mask=perf.hyper_mask,
    )


def pseudo_gold_snr(subject: AslSubject, image: np.ndarray | None = None) -> float:
    """The paper's SNR (Sec. 2.4) of ``image`` (default: the pseudo gold standard).

    Mean of the GM ROI / std of the WM ROI in axial slice :data:`SNR_SLICE`.
    """
    from mrenhance.metrics import snr

    img = subject.pseudo_gold if image is None else image
    gm, wm = subject.rois()
    return snr(img[:, :, SNR_SLICE], gm, wm)
