"""Perivascular spaces (PVS) on a synthetic subject: a 7T-like T2w phantom with its truth.

Jung et al. 2019 (MICCAI, "Enhancement of perivascular spaces using a very deep 3D dense
network") trained on 7T T2w images whose targets came from Hou et al.'s filter; neither the
images nor the filter are available, so this module builds a phantom that also gives the
truth the paper lacked (every tube, its radius, length and region).

Pipeline (:func:`simulate_pvs_case`):

1. a subject from :mod:`mrenhance.simulate.subjects` (deformed MNI tissue maps), 0.5 mm
   isotropic on a crop around one hemisphere's centrum semiovale and basal ganglia, or any
   voxel size on the whole brain (``crop_shape=None``);
2. regions from the subject's anatomy (:func:`pvs_regions`): the template (MNI) coordinate
   of every voxel is carried with the subject's deformation, so

   * centrum semiovale = WM fraction >= 0.5 at MNI z in [22, 55] mm (the WM above the
     lateral ventricles' bodies; choice),
   * basal ganglia = brain voxels with CSF < 0.5 inside an ellipsoid per hemisphere
     centred at MNI (+-21, 3, 1) mm with semi-axes (10, 16, 10) mm (caudate head, putamen,
     pallidum; choice: no offline subcortical atlas);

3. tubes (:func:`draw_tubes`): per region a count ~ Poisson(density x region volume), the
   density per subject log-uniform (few to hundreds per brain, as from healthy ageing to
   small-vessel disease); radius log-uniform in [0.25, 1.5] mm, length uniform in [3, 20] mm;
   centrum semiovale tubes radial in the coronal plane (from MNI x = 0, z = 5 mm),
   basal ganglia tubes vertical, each tilted by up to ~15 deg and slightly curved (a
   random walk of the direction); directions are drawn in MNI space and carried by the
   affine part of the subject's deformation;
4. partial-volume rasterisation (:func:`rasterise_tubes`): 27 (thin tubes: 216) sub-voxel
   samples per voxel near the centreline; PVS replace parenchyma only (fraction <= GM +
   WM), so they sit in WM and the basal ganglia and are fluid, i.e. CSF-like on T2w;
5. the observed image (:func:`render_pvs`): T2w spin-echo intensities (CSF bright, GM >
   WM), texture, a smooth bias field, blur by k-space truncation and Rician noise at the
   chosen SNR;
6. the target ("enhanced image"): the noise-free, unblurred phantom with the PVS contrast
   over the surrounding tissue raised by ``1 + pvs_gain`` (what Hou et al.'s filter aims
   at: brighter thin tubes, no background noise).

Arrays are (x, y, z) float32 on the subject's grid; tubes are described in mm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import InputError

__all__ = [
    "REGIONS",
    "PVSCase",
    "Tube",
    "draw_tubes",
    "pvs_regions",
    "rasterise_tubes",
    "render_pvs",
    "simulate_pvs_case",
    "subject_mni_mm",
]

#: Region names (instance table and per-region scores use them).
REGIONS = ("centrum_semiovale", "basal_ganglia")

# choice: anatomical definitions in MNI152 mm (see the module docstring)
CSO_Z_MM = (22.0, 55.0)
BG_CENTRE_MM = (21.0, 3.0, 1.0)  # x is mirrored for the left hemisphere
BG_SEMI_AXES_MM = (10.0, 16.0, 10.0)
RADIAL_ORIGIN_MM = (0.0, 5.0)  # (x, z) of the coronal-plane origin of radial CSO tubes
CROP_CENTRE_MM = (22.0, -4.0, 16.0)  # a crop holds one hemisphere's CSO and basal ganglia

DEFAULT_DENSITY_PER_CM3 = {"centrum_semiovale": (0.05, 3.0), "basal_ganglia": (0.1, 4.0)}


@dataclass(frozen=True)
class Tube:
    """One PVS: a curved tube of constant radius along a centreline.

    points_mm : (n, 3) centreline in the subject's world mm, about 0.05 mm apart.
    """

    region: str
    radius_mm: float
    length_mm: float
    points_mm: np.ndarray


@dataclass
class PVSCase:
    """One phantom with all its truth.

    image : observed (x, y, z) float32 (blur + Rician noise).
    target : the enhanced noise-free image (x, y, z) float32.
    noise_free : the phantom with PVS as drawn, bias, no blur, no noise.
    pvs_fraction : (x, y, z) float32 in [0, 1], PVS partial volume.
    instances : (x, y, z) int32, 0 = no PVS, k = tube k (1-based, ``tubes[k - 1]``).
    regions : name -> (x, y, z) bool (:data:`REGIONS`).
    wm, brain : (x, y, z) bool masks (WM fraction >= 0.5; the subject's brain mask).
    tube_table : one dict per tube (id, region, radius_mm, length_mm, volume_mm3, voxels).
    affine : (4, 4) voxel -> world mm.
    """

    image: np.ndarray
    target: np.ndarray
    noise_free: np.ndarray
    pvs_fraction: np.ndarray
    instances: np.ndarray
    regions: dict[str, np.ndarray]
    wm: np.ndarray
    brain: np.ndarray
    tubes: list[Tube]
    tube_table: list[dict[str, Any]]
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def voxel_mm(self) -> float:
        return float(abs(self.affine[0, 0]))

    @property
    def pvs_mask(self) -> np.ndarray:
        return self.instances > 0

    @property
    def possible(self) -> np.ndarray:
        """Where PVS may be drawn: WM or basal ganglia, in the brain (the detection domain)."""
        return (self.wm | self.regions["basal_ganglia"]) & self.brain


# ------------------------------------------------------------------------------ regions
def subject_mni_mm(subject: Any) -> np.ndarray:
    """(3, x, y, z) float32 MNI mm of every voxel (the template coordinate it samples)."""
    from mrenhance.simulate.subjects import _template

    a = _template().affine  # diagonal, 1 mm (checked when the template is loaded)
    vox = subject.template_vox
    return np.stack([vox[i] * np.float32(a[i, i]) + np.float32(a[i, 3]) for i in range(3)])


def pvs_regions(subject: Any) -> dict[str, np.ndarray]:
    """Centrum semiovale and basal ganglia masks of a subject (module docstring)."""
    mni = subject_mni_mm(subject)
    wm = subject.fraction("wm")
    csf = subject.fraction("csf")
    cso = (wm >= 0.5) & (mni[2] >= CSO_Z_MM[0]) & (mni[2] <= CSO_Z_MM[1]) & subject.brain_mask
    cx, cy, cz = BG_CENTRE_MM
    ax, ay, az = BG_SEMI_AXES_MM
    inside = ((np.abs(mni[0]) - cx) / ax) ** 2 + ((mni[1] - cy) / ay) ** 2 + (
        (mni[2] - cz) / az
    ) ** 2 <= 1.0
    bg = inside & (csf < 0.5) & subject.brain_mask
    return {"centrum_semiovale": cso, "basal_ganglia": bg}


# ------------------------------------------------------------------------------ tubes
def _uniform(rng: np.random.Generator, spec: float | Sequence[float]) -> float:
    if isinstance(spec, (tuple, list)):
        return float(rng.uniform(spec[0], spec[1]))
    return float(spec)


def _log_uniform(rng: np.random.Generator, spec: float | Sequence[float]) -> float:
    if isinstance(spec, (tuple, list)):
        return float(np.exp(rng.uniform(np.log(spec[0]), np.log(spec[1]))))
    return float(spec)


def _tilt(rng: np.random.Generator, d: np.ndarray, max_deg: float) -> np.ndarray:
    """``d`` turned by an angle up to ``max_deg`` about a random perpendicular axis."""
    d = d / np.linalg.norm(d)
    r = rng.standard_normal(3)
    perp = r - d * (r @ d)
    perp /= np.linalg.norm(perp) + 1e-12
    angle = np.deg2rad(rng.uniform(0.0, max_deg))
    return np.cos(angle) * d + np.sin(angle) * perp


def _centreline(
    rng: np.random.Generator,
    middle_mm: np.ndarray,
    direction: np.ndarray,
    length_mm: float,
    curvature_per_mm: float,
    step_mm: float = 0.05,
) -> np.ndarray:
    """A curved centreline of ``length_mm`` through ``middle_mm``: a random walk of the
    direction (angular std ``curvature_per_mm * sqrt(step)`` per step) both ways."""
    n = max(2, int(round(length_mm / step_mm / 2)))
    halves = []
    for sign in (1.0, -1.0):
        d = sign * direction / np.linalg.norm(direction)
        kicks = rng.standard_normal((n, 3)) * curvature_per_mm * np.sqrt(step_mm)
        pts = np.empty((n, 3))
        p = middle_mm.astype(np.float64).copy()
        for i in range(n):
            d = d + kicks[i] - d * (kicks[i] @ d)
            d /= np.linalg.norm(d)
            p = p + step_mm * d
            pts[i] = p
        halves.append(pts)
    return np.concatenate([halves[1][::-1], middle_mm[None].astype(np.float64), halves[0]])


def draw_tubes(
    rng: np.random.Generator,
    subject: Any,
    regions: dict[str, np.ndarray],
    *,
    density_per_cm3: dict[str, Sequence[float]] | None = None,
    radius_mm: Sequence[float] = (0.25, 1.5),
    length_mm: Sequence[float] = (3.0, 20.0),
    curvature_per_mm: Sequence[float] = (0.0, 0.15),
    tilt_deg: float = 15.0,
) -> tuple[list[Tube], dict[str, float]]:
    """Draw the PVS tubes of one subject.

    Parameters
    ----------
    subject : a :class:`mrenhance.simulate.subjects.Subject` (a crop or the whole brain).
    regions : from :func:`pvs_regions`.
    density_per_cm3 : region -> (low, high) tubes per cm^3 of region, drawn log-uniform
        once per subject (default :data:`DEFAULT_DENSITY_PER_CM3`: ~5-450 in both centra
        semiovale, ~2-90 in both basal ganglia of a whole brain; choice).
    radius_mm, length_mm : ranges (radius log-uniform, length uniform).
    curvature_per_mm : range of the direction's random-walk strength, rad / sqrt(mm).
    tilt_deg : largest deviation from the radial / vertical axis.

    Returns
    -------
    (tubes, densities): the tubes (centre voxels drawn uniformly in the region) and the
    drawn densities per region.
    """
    density_per_cm3 = density_per_cm3 or DEFAULT_DENSITY_PER_CM3
    voxel_mm = float(abs(subject.affine[0, 0]))
    voxel_cm3 = voxel_mm**3 / 1000.0
    linear = subject.params.deformation.linear()  # MNI directions -> subject world
    mni = subject_mni_mm(subject)
    tubes: list[Tube] = []
    densities: dict[str, float] = {}
    for name in REGIONS:
        mask = regions[name]
        density = _log_uniform(rng, density_per_cm3[name])
        densities[name] = density
        n = int(rng.poisson(density * mask.sum() * voxel_cm3))
        if n == 0:
            continue
        idx = np.argwhere(mask)
        chosen = idx[rng.integers(len(idx), size=n)]
        for v in chosen:
            centre_vox = v + rng.uniform(-0.5, 0.5, 3)
            middle = subject.affine[:3, :3] @ centre_vox + subject.affine[:3, 3]
            p = mni[:, v[0], v[1], v[2]].astype(np.float64)
            if name == "centrum_semiovale":
                axis = np.array([p[0] - RADIAL_ORIGIN_MM[0], 0.0, p[2] - RADIAL_ORIGIN_MM[1]])
            else:
                axis = np.array([0.0, 0.0, 1.0])
            d_mni = _tilt(rng, axis, tilt_deg)
            d = linear @ d_mni
            radius = _log_uniform(rng, radius_mm)
            length = _uniform(rng, length_mm)
            curv = _uniform(rng, curvature_per_mm)
            pts = _centreline(rng, middle, d, length, curv)
            tubes.append(Tube(name, radius, length, pts))
    return tubes, densities


def _subgrid(n: int) -> np.ndarray:
    """(n^3, 3) sub-voxel sample offsets, a regular n x n x n grid inside the voxel."""
    g = (np.arange(n) + 0.5) / n - 0.5
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)


_SUB_COARSE, _SUB_FINE = _subgrid(3), _subgrid(6)


def rasterise_tubes(
    tubes: Sequence[Tube],
    shape: Sequence[int],
    affine: np.ndarray,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Partial-volume PVS fraction and instance labels of ``tubes`` on a grid.

    Each voxel near a centreline is sampled at 27 sub-voxel points (216 for tubes thinner
    than a voxel); its fraction is the share of points within the radius (distance to the
    densely sampled centreline).
    ``allowed`` (x, y, z) in [0, 1] caps the fraction (PVS replace parenchyma only).
    A voxel belongs to tube k where k's fraction is the largest and >= 0.5, and every
    tube also keeps the voxels its centreline passes through (choice: so that tubes
    thinner than a voxel still have a truth), where ``allowed`` >= 0.5.

    Returns
    -------
    (fraction (x, y, z) float32, instances (x, y, z) int32, table: one dict per tube).
    """
    from scipy.spatial import cKDTree

    shape = tuple(int(s) for s in shape)
    inv = np.linalg.inv(affine)
    voxel_mm = float(abs(affine[0, 0]))
    fraction = np.zeros(shape, np.float32)
    instances = np.zeros(shape, np.int32)
    best = np.zeros(shape, np.float32)
    table: list[dict[str, Any]] = []
    grid_hi = np.asarray(shape) - 1
    for k, tube in enumerate(tubes, start=1):
        pts_vox = tube.points_mm @ inv[:3, :3].T + inv[:3, 3]
        reach = int(np.ceil(tube.radius_mm / voxel_mm + 1.0))
        core = np.unique(np.rint(pts_vox).astype(np.int64), axis=0)
        off = np.stack(
            np.meshgrid(*([np.arange(-reach, reach + 1)] * 3), indexing="ij"), -1
        ).reshape(-1, 3)
        off = off[(off**2).sum(1) <= (reach + 0.5) ** 2]
        cand = np.unique((core[:, None, :] + off[None]).reshape(-1, 3), axis=0)
        cand = cand[np.all((cand >= 0) & (cand <= grid_hi), axis=1)]
        row = {
            "id": k,
            "region": tube.region,
            "radius_mm": round(tube.radius_mm, 4),
            "length_mm": round(tube.length_mm, 3),
            "volume_mm3": 0.0,
            "voxels": 0,
        }
        if len(cand) == 0:
            table.append(row)
            continue
        sub = _SUB_FINE if tube.radius_mm < voxel_mm else _SUB_COARSE
        samples = (cand[:, None, :] + sub[None]).reshape(-1, 3)
        dist, _ = cKDTree(pts_vox).query(samples, k=1)
        inside = (dist * voxel_mm <= tube.radius_mm).reshape(len(cand), -1)
        f = inside.mean(axis=1).astype(np.float32)
        keep = f > 0
        cand, f = cand[keep], f[keep]
        ix = tuple(cand.T)
        if allowed is not None:
            f = np.minimum(f, allowed[ix])
        fraction[ix] = np.maximum(fraction[ix], f)
        take = (f >= 0.5) & (f > best[ix])
        sel = tuple(c[take] for c in ix)
        instances[sel] = k
        best[sel] = f[take]
        cl = core[np.all((core >= 0) & (core <= grid_hi), axis=1)]
        if len(cl):
            cix = tuple(cl.T)
            ok = instances[cix] == 0
            if allowed is not None:
                ok &= allowed[cix] >= 0.5
            instances[tuple(c[ok] for c in cix)] = k
        row["volume_mm3"] = round(float(f.sum()) * voxel_mm**3, 4)
        table.append(row)
    counts = np.bincount(instances.ravel(), minlength=len(tubes) + 1)
    for row in table:
        row["voxels"] = int(counts[row["id"]])
    return fraction, instances, table


# ------------------------------------------------------------------------------ images
def render_pvs(
    subject: Any,
    pvs_fraction: np.ndarray,
    rng: np.random.Generator,
    *,
    snr: float | Sequence[float] = (8.0, 20.0),
    blur_kspace_factor: float | Sequence[float] = (1.0, 1.4),
    bias_strength: float | Sequence[float] = (0.0, 0.3),
    texture_strength: float | Sequence[float] = (0.0, 0.03),
    pvs_gain: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The observed T2w image and the enhanced target of a subject with PVS.

    PVS take their fraction from the parenchyma (GM, WM) and add it to CSF, then
    :func:`mrenhance.simulate.subjects.render_image` renders T2w spin-echo intensities
    (CSF > GM > WM), texture and a bias field, blurs by truncating k-space by
    ``blur_kspace_factor`` on every axis (1 = no blur) and adds Rician noise at ``snr``.

    Returns
    -------
    (image, target, truth): image (x, y, z) float32; target = noise-free, unblurred phantom
    + ``pvs_gain`` x the PVS excess over the tissue they replace (bias included), float32;
    truth: ``render_image``'s truth dict.
    """
    from mrenhance.simulate.subjects import draw_contrast, render_image

    intensities, sequence = draw_contrast(rng, "t2")
    f = np.asarray(pvs_fraction, np.float32)
    fractions = {}
    for name, frac in subject.fractions.items():
        if name in ("gm", "wm"):
            fractions[name] = frac * (1.0 - f)
        else:
            fractions[name] = frac.copy()
    fractions["csf"] = fractions["csf"] + f
    with_pvs = dataclasses.replace(subject, fractions=fractions)
    factor = _uniform(rng, blur_kspace_factor)
    image, truth = render_image(
        with_pvs,
        rng,
        intensities=intensities,
        snr=snr,
        bias_strength=bias_strength,
        texture_strength=texture_strength,
        kspace_factors=(factor,) * 3 if factor > 1.0 else None,
    )
    truth["sequence"] = sequence
    truth["blur_kspace_factor"] = factor
    # the tissue the PVS replaced (parenchyma mix, no texture) and the CSF-like fluid
    paren = subject.fraction("gm") + subject.fraction("wm")
    mix = (
        subject.fraction("gm") * np.float32(intensities["gm"])
        + subject.fraction("wm") * np.float32(intensities["wm"])
    ) / np.maximum(paren, np.float32(1e-3))
    excess = f * (np.float32(intensities["csf"]) - mix) * truth["bias_field"]
    target = truth["clean_hr"] + np.float32(pvs_gain) * excess
    return image, np.clip(target, 0, None).astype(np.float32), truth


def simulate_pvs_case(
    rng: np.random.Generator,
    *,
    voxel_mm: float = 0.5,
    crop_shape: Sequence[int] | None = (96, 96, 96),
    hemisphere: int | None = None,
    deform: str = "default",
    density_per_cm3: dict[str, Sequence[float]] | None = None,
    radius_mm: Sequence[float] = (0.25, 1.5),
    length_mm: Sequence[float] = (3.0, 20.0),
    snr: float | Sequence[float] = (8.0, 20.0),
    blur_kspace_factor: float | Sequence[float] = (1.0, 1.4),
    bias_strength: float | Sequence[float] = (0.0, 0.3),
    texture_strength: float | Sequence[float] = (0.0, 0.03),
    pvs_gain: float = 1.0,
) -> PVSCase:
    """One PVS phantom: subject, regions, tubes, observed image and target (module doc).

    Parameters
    ----------
    voxel_mm : isotropic voxel size (0.5 mm, 7T-like, on crops; 1 mm for a whole brain).
    crop_shape : (x, y, z) voxels of a crop centred on :data:`CROP_CENTRE_MM` of one
        hemisphere (drawn, or ``hemisphere`` = +1 right / -1 left); None: the whole brain.
    The other parameters: see :func:`draw_tubes` and :func:`render_pvs`.
    """
    from mrenhance.simulate import subjects as S

    params = S.draw_subject_params(rng, voxel_mm=voxel_mm, lesions=(), deform=deform)
    if crop_shape is None:
        subject = S.build_subject(params)
    else:
        shape = tuple(int(s) for s in crop_shape)
        if len(shape) != 3 or min(shape) < 8:
            raise InputError(f"crop_shape must be 3 sizes >= 8, got {crop_shape}")
        side = hemisphere if hemisphere is not None else (1 if rng.random() < 0.5 else -1)
        tpl = S._template()
        target = np.array([side * CROP_CENTRE_MM[0], CROP_CENTRE_MM[1], CROP_CENTRE_MM[2]])
        d = params.deformation
        c = tpl.brain_centre_mm
        x = c + d.linear() @ (target - c) + np.asarray(d.translation_mm)
        centre = (x - params.affine[:3, 3]) / np.diag(params.affine)[:3]
        start = np.round(centre - (np.asarray(shape) - 1) / 2.0).astype(int)
        subject = S.build_subject(params, region_start=start, region_shape=shape)
    regions = pvs_regions(subject)
    tubes, densities = draw_tubes(
        rng,
        subject,
        regions,
        density_per_cm3=density_per_cm3,
        radius_mm=radius_mm,
        length_mm=length_mm,
    )
    allowed = np.clip(subject.fraction("gm") + subject.fraction("wm"), 0, 1)
    allowed = allowed * subject.brain_mask
    fraction, instances, table = rasterise_tubes(tubes, subject.shape, subject.affine, allowed)
    image, target, truth = render_pvs(
        subject,
        fraction,
        rng,
        snr=snr,
        blur_kspace_factor=blur_kspace_factor,
        bias_strength=bias_strength,
        texture_strength=texture_strength,
        pvs_gain=pvs_gain,
    )
    return PVSCase(
        image=image,
        target=target,
        noise_free=truth["clean_hr"],
        pvs_fraction=fraction,
        instances=instances,
        regions=regions,
        wm=subject.fraction("wm") >= 0.5,
        brain=subject.brain_mask,
        tubes=tubes,
        tube_table=table,
        affine=subject.affine,
        meta={
            "densities_per_cm3": densities,
            "snr": truth["snr"],
            "noise_sigma": truth["noise_sigma"],
            "blur_kspace_factor": truth["blur_kspace_factor"],
            "bias_strength": truth["bias_strength"],
            "intensities": truth["intensities"],
            "pvs_gain": pvs_gain,
            "voxel_mm": voxel_mm,
        },
    )
