"""Synthetic subjects with ground truth: varied anatomy, any contrast, lesions, artefacts.

Every subject is the MNI152 2009a template (nilearn's GM/WM maps, the CSF that fills the
brain mask beyond them, asldro's tissue labels) carried through its own random deformation,
with a skull and scalp around the brain and optional lesions. An image of it is rendered
with a partial-volume mixture of random per-tissue intensities, texture, a bias field, a
slice profile and Rician noise; the truth (tissue fractions, labels, masks, the noise-free
image) is kept alongside.

Two steps, both pure and seeded:

* :func:`draw_subject_params` draws a few numbers and coarse coefficient lattices
  (:class:`SubjectParams`, kilobytes); :func:`build_subject` turns them into arrays on the
  whole subject grid or on any region of it. A region built alone equals the same crop of
  the whole subject (up to float rounding), which is what makes :func:`draw_patch` cheap:
  only the patch's voxels are deformed.
* :func:`render_image` turns a :class:`Subject` into an image and its truth.

:func:`draw_subject` and :func:`draw_patch` chain the two.

Geometry
--------
The subject grid covers the template's world box (197 x 233 x 189 mm, RAS, 1 mm voxels at
``voxel_mm=1``). The deformation is a backward map from subject world coordinates ``x``
(mm) to template world coordinates::

    p(x) = c + A^-1 (x - c - t) + u(x)

with ``c`` the template brain's bounding-box centre, ``A = R S H`` (rotation, scaling,
shear), ``t`` a translation and ``u`` a cubic B-spline displacement field
(:mod:`mrenhance.simulate.fields`). Probability maps are resampled with linear
interpolation, labels with nearest neighbour; outside the template is air.
:attr:`Subject.template_vox` keeps ``p`` in template voxel indices, so later forward models
can carry any template-grid map (asldro's CBF, ATT, T1 ...) into the subject with
:func:`warp_template_map`.

Tissues and labels
------------------
:data:`TISSUES` lists every tissue a fraction map may exist for, and label values are their
positions + 1 (:data:`LABELS`, 0 = background/air), so asldro's 1 GM, 2 WM, 3 CSF are kept.
Lesion tissues are present in :attr:`Subject.fractions` only when the lesion was drawn.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import InputError
from mrenhance.simulate.fields import Lattice, evaluate_field, random_coefficients

TISSUES = ("gm", "wm", "csf", "skull", "scalp", "necrosis", "enhancing", "oedema", "infarct")
BRAIN_TISSUES = ("gm", "wm", "csf", "necrosis", "enhancing", "oedema", "infarct")
LABELS = {"background": 0, **{name: i + 1 for i, name in enumerate(TISSUES)}}
LESIONS = ("tumour", "infarct")
CONTRASTS = ("t1", "t2", "flair", "pd", "random")

Range = tuple[float, float]
Spec = float | Range | None


# ----------------------------------------------------------------------------- template


@dataclass(frozen=True, eq=False)
class _Template:
    """The template arrays on their 1 mm grid (read-only float32 / uint8)."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    labels: np.ndarray
    signed_distance_mm: np.ndarray  # to the brain mask's edge: < 0 inside, > 0 outside
    affine: np.ndarray
    brain_centre_mm: np.ndarray  # (3,) world
    brain_volume_fractions: dict[str, float]  # GM/WM/CSF share of the template brain
    wm_core_vox: np.ndarray  # (n, 3) voxels with WM > 0.9: tumour centres
    cortex_vox: np.ndarray  # (n, 3) GM > 0.7 within 8 mm of the brain edge: infarct sites


@functools.cache
def _template() -> _Template:
    """Load and derive the template once per process (about 8 s, 200 MB)."""
    from scipy.ndimage import distance_transform_edt

    from mrenhance import samples

    tissue = samples.mni_tissue()
    labels = samples.asldro_ground_truth("3T")["seg_label"].data
    mask = samples.mni_brain_mask().data > 0
    gm, wm, csf = (tissue[k].data.astype(np.float32) for k in ("gm", "wm", "csf"))
    affine = tissue["gm"].affine
    if not np.allclose(np.abs(np.diag(affine)[:3]), 1.0):
        raise InputError("the MNI template is expected on a 1 mm grid")
    # The mask's edge is taken as the inner table of the skull: the template's mask holds
    # the sulcal CSF, so its support is the intracranial volume (choice).
    signed = distance_transform_edt(~mask) - distance_transform_edt(mask)
    idx = np.argwhere(mask)
    centre_vox = (idx.min(0) + idx.max(0)) / 2.0
    centre = affine[:3, :3] @ centre_vox + affine[:3, 3]
    totals = {k: float(v[mask].sum(dtype=np.float64)) for k, v in (("gm", gm), ("wm", wm))}
    totals["csf"] = float(csf[mask].sum(dtype=np.float64))
    total = sum(totals.values())

    def _ro(a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a)
        a.setflags(write=False)
        return a

    return _Template(
        gm=_ro(gm),
        wm=_ro(wm),
        csf=_ro(csf),
        labels=_ro(np.rint(labels).astype(np.uint8)),
        signed_distance_mm=_ro(signed.astype(np.float32)),
        affine=_ro(np.array(affine, dtype=np.float64)),
        brain_centre_mm=_ro(centre),
        brain_volume_fractions={k: v / total for k, v in totals.items()},
        wm_core_vox=_ro(np.argwhere(wm > 0.9).astype(np.int16)),
        cortex_vox=_ro(np.argwhere((gm > 0.7) & (signed > -8.0)).astype(np.int16)),
    )


def template_brain_volume_fractions() -> dict[str, float]:
    """GM, WM and CSF shares of the template's intracranial volume (sum 1).

    About GM 0.53, WM 0.36, CSF 0.12 for nilearn's MNI152 2009a maps.
    """
    return dict(_template().brain_volume_fractions)


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class DeformStrength:
    """Ranges of the random deformation; each value is drawn uniformly in [-v, v].

    The defaults are choices: head positioning varies by a few degrees and millimetres, and
    adult intracranial volume by roughly +-15 % (about +-5 % per axis, widened to 8 % to
    cover shape variation); the elastic part adds local shape changes of a few mm.
    """

    rotation_deg: float = 10.0
    scale: float = 0.08
    shear: float = 0.04
    translation_mm: float = 5.0
    elastic_mm: float = 2.0  # std of each displacement component, drawn in [0, v]
    elastic_spacing_mm: float = 30.0  # B-spline knot spacing (choice)


DEFORMATIONS = {"default": DeformStrength(), "none": DeformStrength(0, 0, 0, 0, 0)}


@dataclass(frozen=True, eq=False)
class Deformation:
    """A drawn deformation: ``p(x) = c + A^-1 (x - c - t) + u(x)`` (see module docstring)."""

    rotation_deg: tuple[float, float, float]
    scale: tuple[float, float, float]
    shear: tuple[float, float, float]  # xy, xz, yz
    translation_mm: tuple[float, float, float]
    elastic_std_mm: float
    elastic_lattice: Lattice
    elastic_coefficients_mm: np.ndarray  # (3, *elastic_lattice.shape) float32

    def linear(self) -> np.ndarray:
        """(3, 3) ``A = R S H``: template -> subject, about the brain centre."""
        from scipy.spatial.transform import Rotation

        rot = Rotation.from_euler("xyz", self.rotation_deg, degrees=True).as_matrix()
        shear = np.eye(3)
        shear[0, 1], shear[0, 2], shear[1, 2] = self.shear
        return rot @ np.diag(self.scale) @ shear


@dataclass(frozen=True, eq=False)
class HeadParams:
    """Skull and scalp: thicknesses (mm) modulated by a smooth field by +-``variation``."""

    skull_mm: float
    scalp_mm: float
    variation: float
    lattice: Lattice
    coefficients: np.ndarray  # (2, *lattice.shape): skull and scalp modulation


@dataclass(frozen=True, eq=False)
class TumourParams:
    """A tumour in template space: necrotic core, enhancing rim, oedema in the WM.

    Radii are in mm; the shape is a sphere whose radius varies with the direction ``n`` as
    ``1 + a1 (n.d1) + a2 ((n.d2)^2 - 1/3)`` (``lobes``: rows a, d); oedema has its own lobes.
    """

    centre_mm: np.ndarray  # (3,) template world
    core_mm: float
    rim_mm: float
    oedema_mm: float
    lobes: np.ndarray  # (2, 4): amplitude, direction (3,)
    oedema_lobes: np.ndarray  # (2, 4)


@dataclass(frozen=True, eq=False)
class InfarctParams:
    """A wedge infarct in template space: a cone from a deep apex out through the cortex."""

    apex_mm: np.ndarray  # (3,) template world
    direction: np.ndarray  # (3,) unit, towards the cortex
    length_mm: float  # apex to the cortical point the cone is aimed at
    half_angle_deg: float


@dataclass(frozen=True, eq=False)
class SubjectParams:
    """Everything :func:`build_subject` needs: a few numbers and coarse lattices."""

    voxel_mm: float
    grid_shape: tuple[int, int, int]  # the whole subject grid
    affine: np.ndarray  # (4, 4) voxel -> world mm of the whole grid
    deformation: Deformation
    head: HeadParams
    tumour: TumourParams | None = None
    infarct: InfarctParams | None = None

    def as_dict(self) -> dict[str, Any]:
        """The drawn scalars (for logs and model cards; lattices left out)."""
        d = self.deformation
        out: dict[str, Any] = {
            "voxel_mm": self.voxel_mm,
            "rotation_deg": list(d.rotation_deg),
            "scale": list(d.scale),
            "shear": list(d.shear),
            "translation_mm": list(d.translation_mm),
            "elastic_std_mm": d.elastic_std_mm,
            "skull_mm": self.head.skull_mm,
            "scalp_mm": self.head.scalp_mm,
        }
        if self.tumour is not None:
            t = self.tumour
            out["tumour"] = {
                "centre_mm": t.centre_mm.tolist(),
                "core_mm": t.core_mm,
                "rim_mm": t.rim_mm,
                "oedema_mm": t.oedema_mm,
            }
        if self.infarct is not None:
            i = self.infarct
            out["infarct"] = {
                "apex_mm": i.apex_mm.tolist(),
                "direction": i.direction.tolist(),
                "length_mm": i.length_mm,
                "half_angle_deg": i.half_angle_deg,
            }
        return out


@dataclass(frozen=True, eq=False)
class Subject:
    """One synthetic subject (or a region of one) with its truth maps.

    All arrays are (x, y, z) on the region's grid, voxel order as nibabel loads images.

    Attributes
    ----------
    fractions:
        tissue name -> float32 volume fraction in [0, 1]; names in :data:`TISSUES` order,
        lesion tissues only when drawn. The fractions of a voxel sum to <= 1; the rest is air.
    labels:
        uint8 hard labels (:data:`LABELS`): asldro's labels deformed (nearest), skull and
        scalp where their fraction is >= 0.5, lesion tissues where theirs is >= 0.5.
    brain_mask:
        bool, brain tissues' fractions (GM, WM, CSF, lesions) sum >= 0.5.
    head_mask:
        bool, all tissues sum >= 0.5; contains ``brain_mask``.
    lesion_masks:
        name -> bool: ``"tumour"`` (core + rim), ``"necrosis"``, ``"enhancing"``,
        ``"oedema"``, ``"infarct"``; each fraction >= 0.5 (tumour: their sum); only drawn ones.
    affine:
        (4, 4) voxel -> world mm of this region.
    template_vox:
        (3, x, y, z) float32: where each voxel samples the template, in template voxel indices.
    region_start:
        (3,) index of this region's first voxel in the whole subject grid.
    params:
        what was drawn.
    """

    fractions: dict[str, np.ndarray]
    labels: np.ndarray
    brain_mask: np.ndarray
    head_mask: np.ndarray
    lesion_masks: dict[str, np.ndarray]
    affine: np.ndarray
    template_vox: np.ndarray
    region_start: tuple[int, int, int]
    params: SubjectParams
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.labels.shape  # type: ignore[return-value]

    @property
    def tissue_names(self) -> tuple[str, ...]:
        return tuple(self.fractions)

    def fraction(self, name: str) -> np.ndarray:
        """The fraction map of ``name`` (zeros for a known tissue this subject lacks)."""
        if name in self.fractions:
            return self.fractions[name]
        if name not in TISSUES:
            raise InputError(f"unknown tissue {name!r}; known: {', '.join(TISSUES)}")
        return np.zeros(self.shape, dtype=np.float32)

    def stack(self, names: Sequence[str] | None = None) -> np.ndarray:
        """(x, y, z, n_tissues) float32 fractions of ``names`` (default: this subject's)."""
        names = self.tissue_names if names is None else tuple(names)
        return np.stack([self.fraction(n) for n in names], axis=-1)


def _uniform(rng: np.random.Generator, spec: Spec, name: str) -> float:
    """A number from a spec: a value as is, a (low, high) pair drawn uniformly."""
    if spec is None:
        raise InputError(f"{name}: expected a number or a (low, high) range, got None")
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2 or not spec[0] <= spec[1]:
            raise InputError(f"{name}: a range must be (low, high) with low <= high; got {spec}")
        return float(rng.uniform(spec[0], spec[1]))
    return float(spec)


def _subject_grid(voxel_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the subject grid at ``voxel_mm`` over the template's world box."""
    tpl = _template()
    n_tpl = np.array(tpl.gm.shape)
    shape = tuple(int(v) for v in np.maximum(1, np.round(n_tpl / voxel_mm)))
    affine = np.eye(4)
    affine[:3, :3] = np.diag([voxel_mm] * 3)
    # same box: the first voxel's outer edge coincides with the template's
    affine[:3, 3] = tpl.affine[:3, 3] - 0.5 + 0.5 * voxel_mm
    return shape, affine  # type: ignore[return-value]


def _box_mm(shape: Sequence[int], affine: np.ndarray, margin_mm: float) -> tuple[Any, Any]:
    lo = affine[:3, 3] - margin_mm
    hi = affine[:3, 3] + (np.asarray(shape) - 1) * np.diag(affine)[:3] + margin_mm
    return lo, hi


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _lobes(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    return np.stack(
        [np.concatenate([[rng.uniform(-amplitude, amplitude)], _unit(rng)]) for _ in range(2)]
    )


def draw_subject_params(
    rng: np.random.Generator,
    *,
    voxel_mm: float = 1.0,
    lesions: Sequence[str] = ("tumour",),
    deform: str | DeformStrength = "default",
) -> SubjectParams:
    """Draw a subject's anatomy parameters (cheap: no voxel arrays).

    Parameters
    ----------
    rng:
        The only source of randomness.
    voxel_mm:
        Isotropic voxel size of the subject grid, mm (the template is 1 mm; finer grids are
        interpolated, coarser ones point-sampled).
    lesions:
        Any of :data:`LESIONS`: ``"tumour"`` (necrotic core, enhancing rim, oedema) and
        ``"infarct"`` (a cortical wedge). ``()`` for a healthy subject.
    deform:
        ``"default"``, ``"none"`` or a :class:`DeformStrength`.

    Returns
    -------
    :class:`SubjectParams`.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    voxel_mm = float(voxel_mm)
    if not np.isfinite(voxel_mm) or not 0.25 <= voxel_mm <= 8:
        raise InputError(f"voxel_mm must be in [0.25, 8] mm; got {voxel_mm}")
    unknown = set(lesions) - set(LESIONS)
    if unknown:
        raise InputError(f"unknown lesions {sorted(unknown)}; known: {', '.join(LESIONS)}")
    if isinstance(deform, str):
        if deform not in DEFORMATIONS:
            raise InputError(f"deform must be one of {', '.join(DEFORMATIONS)} or a DeformStrength")
        deform = DEFORMATIONS[deform]
    tpl = _template()
    shape, affine = _subject_grid(voxel_mm)

    def sym(v: float) -> tuple[float, float, float]:
        return tuple(float(x) for x in rng.uniform(-v, v, 3))  # type: ignore[return-value]

    rotation = sym(deform.rotation_deg)
    scale = tuple(1.0 + s for s in sym(deform.scale))
    shear = sym(deform.shear)
    translation = sym(deform.translation_mm)
    elastic_std = float(rng.uniform(0.0, deform.elastic_mm))
    lo, hi = _box_mm(shape, affine, margin_mm=0.0)
    elastic_lattice = Lattice.covering(lo, hi, deform.elastic_spacing_mm)
    elastic = random_coefficients(rng, elastic_lattice, 3) * np.float32(elastic_std)
    deformation = Deformation(
        rotation,
        scale,
        shear,
        translation,
        elastic_std,
        elastic_lattice,
        elastic,  # type: ignore[arg-type]
    )

    # Adult skull ~5-7 mm and scalp ~5-6 mm thick on average, varying over the head
    # (order of anatomical values; ranges are choices).
    head_lattice = Lattice.covering(lo, hi, 40.0)
    head = HeadParams(
        skull_mm=float(rng.uniform(4.0, 8.0)),
        scalp_mm=float(rng.uniform(3.0, 7.0)),
        variation=0.3,
        lattice=head_lattice,
        coefficients=random_coefficients(rng, head_lattice, 2),
    )

    tumour = infarct = None
    vox_to_mm = tpl.affine
    if "tumour" in lesions:
        centre_vox = tpl.wm_core_vox[rng.integers(len(tpl.wm_core_vox))].astype(np.float64)
        # Radii are choices spanning small to large glioma-like lesions.
        tumour = TumourParams(
            centre_mm=vox_to_mm[:3, :3] @ centre_vox + vox_to_mm[:3, 3],
            core_mm=float(rng.uniform(2.0, 10.0)),
            rim_mm=float(rng.uniform(2.0, 5.0)),
            oedema_mm=float(rng.uniform(0.0, 20.0)),
            lobes=_lobes(rng, 0.25),
            oedema_lobes=_lobes(rng, 0.4),
        )
    if "infarct" in lesions:
        site_vox = tpl.cortex_vox[rng.integers(len(tpl.cortex_vox))].astype(np.float64)
        site = vox_to_mm[:3, :3] @ site_vox + vox_to_mm[:3, 3]
        direction = site - tpl.brain_centre_mm
        direction = direction / max(np.linalg.norm(direction), 1e-6)
        length = float(rng.uniform(15.0, 35.0))
        infarct = InfarctParams(
            apex_mm=site - length * direction,
            direction=direction,
            length_mm=length,
            half_angle_deg=float(rng.uniform(10.0, 25.0)),
        )
    return SubjectParams(voxel_mm, shape, affine, deformation, head, tumour, infarct)


# ----------------------------------------------------------------------------- building


def _axes_mm(params: SubjectParams, start: Sequence[int], shape: Sequence[int]) -> list[np.ndarray]:
    """World coordinates (mm) of a region's voxel centres along each axis."""
    a = params.affine
    return [a[i, i] * (start[i] + np.arange(shape[i])) + a[i, 3] for i in range(3)]


def _template_coordinates(params: SubjectParams, axes: list[np.ndarray]) -> np.ndarray:
    """(3, x, y, z) float32 template world coordinates p(x) of a region's voxels."""
    tpl = _template()
    d = params.deformation
    inv = np.linalg.inv(d.linear())
    c = tpl.brain_centre_mm
    const = c - inv @ (c + np.asarray(d.translation_mm))
    disp = evaluate_field(d.elastic_coefficients_mm, d.elastic_lattice, axes)
    x = [v.astype(np.float32) for v in axes]
    grids = (x[0][:, None, None], x[1][None, :, None], x[2][None, None, :])
    out = disp  # (3, x, y, z), filled in place
    for i in range(3):
        out[i] += np.float32(const[i])
        for j in range(3):
            if inv[i, j] != 0:
                out[i] += np.float32(inv[i, j]) * grids[j]
    return out


def _ramp(x: np.ndarray) -> np.ndarray:
    """Partial-volume edge: 0 below -0.5, 1 above 0.5, linear between (x in voxel units)."""
    return np.clip(x + np.float32(0.5), 0.0, 1.0)


def _lobed_radius(v: np.ndarray, radius: float, lobes: np.ndarray) -> np.ndarray:
    """Radius of a lobed sphere in the directions of ``v`` (3, n)."""
    norm = np.sqrt((v**2).sum(0)) + np.float32(1e-6)
    n = v / norm
    (a1, *d1), (a2, *d2) = lobes
    s = a1 * np.tensordot(d1, n, 1) + a2 * (np.tensordot(d2, n, 1) ** 2 - 1.0 / 3.0)
    return (radius * (1.0 + s)).astype(np.float32), norm


def _local_box(
    params: SubjectParams,
    coords_shape: Sequence[int],
    start: Sequence[int],
    centre_mm: np.ndarray,
    radius_mm: float,
) -> tuple[slice, slice, slice] | None:
    """The region's voxels whose template point can lie within ``radius_mm`` of a centre.

    p(x) - q = A^-1 (x - x_q) + u(x) with x_q the affine image of q and |u| <= the largest
    coefficient (B-spline weights are a partition of unity), so |p - q| < r needs
    |x - x_q| < sigma_max(A) (r + max|u|). None if the box misses the region.
    """
    tpl = _template()
    d = params.deformation
    a = d.linear()
    c = tpl.brain_centre_mm
    x_q = c + a @ (np.asarray(centre_mm) - c) + np.asarray(d.translation_mm)
    reach = np.linalg.norm(a, 2) * (radius_mm + float(np.abs(d.elastic_coefficients_mm).max()))
    centre_vox = (x_q - params.affine[:3, 3]) / np.diag(params.affine)[:3] - np.asarray(start)
    half = reach / np.abs(np.diag(params.affine)[:3]) + 1
    lo = np.maximum(np.floor(centre_vox - half).astype(int), 0)
    hi = np.minimum(np.ceil(centre_vox + half).astype(int) + 1, np.asarray(coords_shape))
    if (hi <= lo).any():
        return None
    return tuple(slice(int(a_), int(b_)) for a_, b_ in zip(lo, hi, strict=True))  # type: ignore[return-value]


def _apply_tumour(
    fr: dict[str, np.ndarray],
    p: np.ndarray,
    t: TumourParams,
    width_mm: float,
    box: tuple[slice, slice, slice] | None,
) -> None:
    """Add necrosis, enhancing rim and oedema fractions, taking them from GM/WM/CSF."""
    for name in ("necrosis", "enhancing", "oedema"):
        fr[name] = np.zeros(p.shape[1:], dtype=np.float32)
    if box is None:
        return
    v = p[(slice(None), *box)] - t.centre_mm.astype(np.float32)[:, None, None, None]
    r_core, dist = _lobed_radius(v, t.core_mm, t.lobes)
    r_rim = r_core * np.float32((t.core_mm + t.rim_mm) / t.core_mm)
    r_oed, _ = _lobed_radius(v, t.core_mm + t.rim_mm + t.oedema_mm, t.oedema_lobes)
    r_oed = np.maximum(r_oed, r_rim)
    m_core = _ramp((r_core - dist) / width_mm)
    m_rim = _ramp((r_rim - dist) / width_mm)
    m_oed = _ramp((r_oed - dist) / width_mm) if t.oedema_mm > 0 else np.zeros_like(m_rim)
    gm, wm, csf = fr["gm"][box], fr["wm"][box], fr["csf"][box]
    brain = gm + wm + csf
    # The tumour replaces whatever brain tissue it occupies; vasogenic oedema spreads in
    # the white matter (choice: no mass effect is modelled).
    fr["necrosis"][box] = m_core * brain
    fr["enhancing"][box] = (m_rim - m_core) * brain
    keep = 1.0 - m_rim
    fr["oedema"][box] = m_oed * keep * wm
    fr["gm"][box] = gm * keep
    fr["csf"][box] = csf * keep
    fr["wm"][box] = wm * keep * (1.0 - m_oed)


def _tumour_reach_mm(t: TumourParams, width_mm: float) -> float:
    """A radius beyond which every tumour fraction is 0 (lobes scale radii by <= 1 + 4/3 a)."""
    grow = 1.0 + 4.0 / 3.0 * max(abs(t.lobes[:, 0]).sum(), abs(t.oedema_lobes[:, 0]).sum())
    return (
        (t.core_mm + t.rim_mm) * (1.0 + 4.0 / 3.0 * abs(t.lobes[:, 0]).sum())
        + max((t.core_mm + t.rim_mm + t.oedema_mm) * grow, 0.0)
        + width_mm
    )


def _apply_infarct(
    fr: dict[str, np.ndarray],
    p: np.ndarray,
    inf: InfarctParams,
    width_mm: float,
    box: tuple[slice, slice, slice] | None,
) -> None:
    """Replace GM and WM inside a cone (apex deep, base through the cortex) by infarct."""
    fr["infarct"] = np.zeros(p.shape[1:], dtype=np.float32)
    if box is None:
        return
    v = p[(slice(None), *box)] - inf.apex_mm.astype(np.float32)[:, None, None, None]
    along = np.tensordot(inf.direction.astype(np.float32), v, 1)
    perp = np.sqrt(np.maximum((v**2).sum(0) - along**2, 0.0))
    tan = np.float32(np.tan(np.deg2rad(inf.half_angle_deg)))
    # reach past the aimed-at cortical point so the wedge opens onto the brain surface
    m = (
        _ramp((along * tan - perp) / width_mm)
        * _ramp(along / width_mm)
        * _ramp((inf.length_mm + _INFARCT_OVERSHOOT_MM - along) / width_mm)
    )
    gm, wm = fr["gm"][box], fr["wm"][box]
    fr["infarct"][box] = m * (gm + wm)
    keep = 1.0 - m
    fr["gm"][box] = gm * keep
    fr["wm"][box] = wm * keep


def _infarct_reach_mm(inf: InfarctParams, width_mm: float) -> float:
    along = inf.length_mm + _INFARCT_OVERSHOOT_MM + width_mm
    return along / np.cos(np.deg2rad(inf.half_angle_deg)) + width_mm


_INFARCT_OVERSHOOT_MM = 15.0


def _head_layers(
    params: SubjectParams, axes: list[np.ndarray], signed_mm: np.ndarray, brain: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Skull and scalp fractions from the deformed distance to the brain edge."""
    h = params.head
    mod = evaluate_field(h.coefficients, h.lattice, axes)
    skull_mm = h.skull_mm * (1.0 + np.float32(h.variation) * np.tanh(mod[0]))
    scalp_mm = h.scalp_mm * (1.0 + np.float32(h.variation) * np.tanh(mod[1]))
    w = np.float32(params.voxel_mm)
    # partial-volume shells: skull in [0, skull_mm] outside the brain edge, scalp beyond it
    skull = _ramp(signed_mm / w) * _ramp((skull_mm - signed_mm) / w)
    scalp = _ramp((signed_mm - skull_mm) / w) * _ramp((skull_mm + scalp_mm - signed_mm) / w)
    free = np.clip(1.0 - brain, 0.0, 1.0)
    skull = np.minimum(skull, free)
    scalp = np.clip(np.minimum(scalp, free - skull), 0.0, None)
    return skull.astype(np.float32), scalp.astype(np.float32)


def build_subject(
    params: SubjectParams,
    *,
    region_start: Sequence[int] | None = None,
    region_shape: Sequence[int] | None = None,
) -> Subject:
    """Realise drawn parameters as arrays, on the whole subject grid or one region.

    Parameters
    ----------
    params:
        From :func:`draw_subject_params`.
    region_start, region_shape:
        A box of the subject grid (voxel indices; it may reach outside the grid, where the
        subject is air). Default: the whole grid ``params.grid_shape``.

    Returns
    -------
    :class:`Subject` of ``region_shape``; a region equals the same crop of the whole
    subject up to float rounding.
    """
    from scipy.ndimage import map_coordinates

    tpl = _template()
    start = (0, 0, 0) if region_start is None else tuple(int(v) for v in region_start)
    shape = params.grid_shape if region_shape is None else tuple(int(v) for v in region_shape)
    if len(start) != 3 or len(shape) != 3 or min(shape) < 1:
        raise InputError(f"region must be 3D with positive sizes; got start {start}, {shape}")
    axes = _axes_mm(params, start, shape)
    p_mm = _template_coordinates(params, axes)
    # template world -> template voxel (the template affine is diagonal, 1 mm)
    inv_t = np.linalg.inv(tpl.affine)
    coords = np.empty_like(p_mm)
    for i in range(3):
        coords[i] = p_mm[i] * np.float32(inv_t[i, i]) + np.float32(inv_t[i, 3])

    def warp(array: np.ndarray, order: int, cval: float = 0.0) -> np.ndarray:
        return map_coordinates(
            array, coords, order=order, mode="constant", cval=cval, output=array.dtype
        )

    fr: dict[str, np.ndarray] = {k: warp(getattr(tpl, k), 1) for k in ("gm", "wm", "csf")}
    labels = warp(tpl.labels, 0)
    # beyond the template box the head goes on (the inferior slices cut through the
    # brainstem): nearest extension keeps the skull shell closed there (choice)
    signed = map_coordinates(
        tpl.signed_distance_mm, coords, order=1, mode="nearest", output=np.float32
    )
    width = float(params.voxel_mm)
    if params.tumour is not None:
        t = params.tumour
        box = _local_box(params, shape, start, t.centre_mm, _tumour_reach_mm(t, width))
        _apply_tumour(fr, p_mm, t, width, box)
    if params.infarct is not None:
        inf = params.infarct
        box = _local_box(params, shape, start, inf.apex_mm, _infarct_reach_mm(inf, width))
        _apply_infarct(fr, p_mm, inf, width, box)
    brain = sum(fr[k] for k in BRAIN_TISSUES if k in fr)
    skull, scalp = _head_layers(params, axes, signed, brain)
    fractions = {
        name: (skull if name == "skull" else scalp if name == "scalp" else fr[name])
        for name in TISSUES
        if name in fr or name in ("skull", "scalp")
    }
    for v in fractions.values():
        np.clip(v, 0.0, 1.0, out=v)
    total_brain = sum(fractions[k] for k in BRAIN_TISSUES if k in fractions)
    head_total = total_brain + fractions["skull"] + fractions["scalp"]

    labels = labels.astype(np.uint8)
    outside = labels == 0
    labels[outside & (fractions["scalp"] >= 0.5)] = LABELS["scalp"]
    labels[outside & (fractions["skull"] >= 0.5)] = LABELS["skull"]
    lesion_masks: dict[str, np.ndarray] = {}
    if params.tumour is not None:
        for name in ("oedema", "enhancing", "necrosis"):
            lesion_masks[name] = fractions[name] >= 0.5
            labels[lesion_masks[name]] = LABELS[name]
        lesion_masks["tumour"] = (fractions["necrosis"] + fractions["enhancing"]) >= 0.5
    if params.infarct is not None:
        lesion_masks["infarct"] = fractions["infarct"] >= 0.5
        labels[lesion_masks["infarct"]] = LABELS["infarct"]

    region_affine = params.affine.copy()
    region_affine[:3, 3] = params.affine[:3, :3] @ np.asarray(start) + params.affine[:3, 3]
    return Subject(
        fractions=fractions,
        labels=labels,
        brain_mask=total_brain >= 0.5,
        head_mask=head_total >= 0.5,
        lesion_masks=lesion_masks,
        affine=region_affine,
        template_vox=coords,
        region_start=start,  # type: ignore[arg-type]
        params=params,
        meta={"template": "MNI152 2009a (nilearn) + asldro labels", **params.as_dict()},
    )


def brain_centre_voxel(params: SubjectParams) -> np.ndarray:
    """(3,) subject voxel index (float) where the template brain centre lands (affine part)."""
    tpl = _template()
    x = tpl.brain_centre_mm + np.asarray(params.deformation.translation_mm)
    a = params.affine
    return (x - a[:3, 3]) / np.diag(a)[:3]


def draw_subject(
    rng: np.random.Generator,
    *,
    voxel_mm: float = 1.0,
    shape: Sequence[int] | None = None,
    lesions: Sequence[str] = ("tumour",),
    deform: str | DeformStrength = "default",
) -> Subject:
    """Draw one synthetic subject.

    Parameters
    ----------
    rng:
        The only source of randomness; the same seed gives a bit-identical subject.
    voxel_mm:
        Isotropic voxel size, mm.
    shape:
        None for the whole field of view (197 x 233 x 189 mm, e.g. (197, 233, 189) voxels at
        1 mm), or a (x, y, z) crop centred on the brain (padded with air where it exceeds
        the field of view).
    lesions, deform:
        See :func:`draw_subject_params`.

    Returns
    -------
    :class:`Subject`.
    """
    params = draw_subject_params(rng, voxel_mm=voxel_mm, lesions=lesions, deform=deform)
    if shape is None:
        return build_subject(params)
    shape = tuple(int(s) for s in shape)
    start = np.round(brain_centre_voxel(params) - (np.asarray(shape) - 1) / 2.0).astype(int)
    return build_subject(params, region_start=start, region_shape=shape)


def warp_template_map(subject: Subject, template_map: np.ndarray, order: int = 1) -> np.ndarray:
    """Carry any map on the template grid (197, 233, 189) into a subject.

    For forward models that need more than tissue fractions: e.g. asldro's CBF or ATT
    (``samples.asldro_ground_truth()["perfusion_rate"].data``). Lesions are not applied.

    Parameters
    ----------
    subject:
        The subject (or region).
    template_map:
        (197, 233, 189) array on the MNI152 2009a grid.
    order:
        Interpolation order: 1 (linear) for continuous maps, 0 for labels.

    Returns
    -------
    ``subject.shape`` array of ``template_map``'s dtype (float32 for floats); 0 outside.
    """
    from scipy.ndimage import map_coordinates

    template_map = np.asarray(template_map)
    if template_map.shape != _template().gm.shape:
        raise InputError(
            f"template_map must be on the template grid {_template().gm.shape}; "
            f"got {template_map.shape}"
        )
    if np.issubdtype(template_map.dtype, np.floating):
        template_map = template_map.astype(np.float32, copy=False)
    return map_coordinates(
        template_map, subject.template_vox, order=order, mode="constant", output=template_map.dtype
    )


# ----------------------------------------------------------------------------- contrast

# Relaxation times (s) and relative proton density at 3 T.
# GM/WM/CSF T1: asldro's ground truth (1.33 / 0.83 / 3.0 s; close to Lu et al., JMRI 2005).
# GM/WM T2: Stanisz et al., MRM 2005 (99 / 69 ms at 3 T); asldro's T2s (GM 80 < WM 110 ms)
# would make WM brighter than GM on T2-weighted images, so they are not used.
# CSF T2 ~1.5-2 s, fat T1 ~0.38 s / T2 ~0.13 s: order of literature values (choice).
# PD: GM 0.8, WM 0.7, CSF 1.0 (typical relative water content; choice).
# Lesions (choice, qualitative): necrosis fluid-like, enhancing rim T1-shortened by
# gadolinium, oedema and infarct with prolonged T1 and T2.
# Skull: cortical bone, T2* of a fraction of a ms, so about no signal; scalp: mostly fat.
_RELAXATION = {
    #             T1 s   T2 s   PD
    "gm": (1.33, 0.099, 0.80),
    "wm": (0.83, 0.069, 0.70),
    "csf": (3.8, 1.8, 1.00),
    "skull": (0.3, 0.0008, 0.15),
    "scalp": (0.40, 0.13, 0.90),
    "necrosis": (2.6, 0.60, 0.95),
    "enhancing": (0.50, 0.10, 0.85),
    "oedema": (1.45, 0.16, 0.85),
    "infarct": (1.70, 0.20, 0.88),
}

# Sequence parameter ranges (s) of each preset (choices around clinical 3 T protocols):
# t1: inversion-recovery gradient echo (MPRAGE-like), t2: T2 spin echo, flair: CSF-nulled
# inversion recovery (TI = ti_null x the TI that nulls this subject's CSF, i.e. a protocol
# tuned within a few per cent), pd: long-TR short-TE spin echo.
SEQUENCES = {
    "t1": {"kind": "ir", "ti": (0.95, 1.10), "tr": (2.0, 2.5), "te": (0.002, 0.005)},
    "t2": {"kind": "se", "tr": (4.0, 6.0), "te": (0.08, 0.12)},
    "flair": {"kind": "ir", "ti_null": (0.97, 1.03), "tr": (8.0, 10.0), "te": (0.08, 0.12)},
    "pd": {"kind": "se", "tr": (8.0, 12.0), "te": (0.008, 0.015)},
}
# Per-subject lognormal sigma of T1, T2 and PD, truncated at 2 sigma (choice: healthy
# between-subject spread of T1/T2 is a few per cent, e.g. Stanisz et al. 2005's SDs; PD
# varies less, and its small GM/WM difference must keep its sign on PD-weighted images).
_RELAXATION_JITTER = (0.05, 0.05, 0.02)


def signal_equation(
    kind: str, t1_s: float, t2_s: float, pd: float, *, tr_s: float, te_s: float, ti_s: float = 0.0
) -> float:
    """Steady-state magnitude signal of a spin echo (``"se"``) or inversion recovery (``"ir"``).

    ``se``: ``PD (1 - exp(-TR/T1)) exp(-TE/T2)``;
    ``ir``: ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)`` (ideal inversion, TR >> TE).
    """
    e_tr = np.exp(-tr_s / t1_s)
    decay = np.exp(-te_s / t2_s)
    if kind == "se":
        return float(pd * (1.0 - e_tr) * decay)
    if kind == "ir":
        return float(pd * abs(1.0 - 2.0 * np.exp(-ti_s / t1_s) + e_tr) * decay)
    raise InputError(f"sequence kind must be 'se' or 'ir'; got {kind!r}")


def draw_contrast(rng: np.random.Generator, contrast: str = "t1") -> tuple[dict[str, float], dict]:
    """Draw per-tissue intensities for a contrast.

    Parameters
    ----------
    rng:
        The only source of randomness.
    contrast:
        ``"t1"``, ``"t2"``, ``"flair"``, ``"pd"``: sequence parameters drawn in
        :data:`SEQUENCES` and per-subject relaxation times jittered by a few per cent
        around the 3 T values, through :func:`signal_equation`; ``"random"``: each tissue
        uniform in [0, 1] independently (domain randomisation as in SynthSeg, Billot et al.,
        Med. Image Anal. 2023).

    Returns
    -------
    (intensities, sequence): tissue name -> intensity for every tissue in :data:`TISSUES`,
    scaled so the brightest of GM, WM and CSF is 1; and the drawn sequence parameters.
    """
    if contrast not in CONTRASTS:
        raise InputError(f"contrast must be one of {', '.join(CONTRASTS)}; got {contrast!r}")
    if contrast == "random":
        values = {name: float(rng.uniform(0.0, 1.0)) for name in TISSUES}
        sequence: dict[str, Any] = {"kind": "random"}
    else:
        spec = SEQUENCES[contrast]
        sequence = {"kind": spec["kind"]}
        for key in ("ti", "tr", "te"):
            if key in spec:
                sequence[f"{key}_s"] = float(rng.uniform(*spec[key]))
        sd = np.asarray(_RELAXATION_JITTER)
        jitter = np.exp(np.clip(rng.normal(0.0, sd, (len(TISSUES), 3)), -2 * sd, 2 * sd))
        relax = {
            name: tuple(v * j for v, j in zip(values_3t, factors, strict=True))
            for (name, values_3t), factors in zip(_RELAXATION.items(), jitter, strict=True)
        }
        if "ti_null" in spec:
            t1_csf = relax["csf"][0]
            null = t1_csf * np.log(2.0 / (1.0 + np.exp(-sequence["tr_s"] / t1_csf)))
            sequence["ti_s"] = float(null * rng.uniform(*spec["ti_null"]))
        values = {
            name: signal_equation(
                spec["kind"],
                t1,
                t2,
                pd,
                tr_s=sequence["tr_s"],
                te_s=sequence["te_s"],
                ti_s=sequence.get("ti_s", 0.0),
            )
            for name, (t1, t2, pd) in relax.items()
        }
    top = max(values["gm"], values["wm"], values["csf"])
    if top <= 0:
        top = 1.0
    return {k: v / top for k, v in values.items()}, sequence


# ----------------------------------------------------------------------------- rendering


def _fov_lattice(params: SubjectParams, spacing_mm: float) -> Lattice:
    lo, hi = _box_mm(params.grid_shape, params.affine, margin_mm=0.0)
    return Lattice.covering(lo, hi, spacing_mm)


def snr_reference(intensities: dict[str, float]) -> float:
    """The signal SNR refers to: the template-brain mean of the GM/WM/CSF intensities.

    ``sum_t v_t I_t`` with ``v`` the template's brain volume shares
    (:func:`template_brain_volume_fractions`): the mean noise-free intensity of an unbiased
    brain, independent of the region or patch rendered (choice).
    """
    shares = _template().brain_volume_fractions
    return float(sum(shares[k] * intensities[k] for k in ("gm", "wm", "csf")))


def render_image(
    subject: Subject,
    rng: np.random.Generator,
    *,
    contrast: str = "t1",
    snr: Spec = (10.0, 40.0),
    bias_strength: Spec = (0.0, 0.3),
    texture_strength: Spec = (0.0, 0.05),
    slice_thickness_mm: Spec = None,
    slice_axis: int = 2,
    kspace_factors: Sequence[float] | None = None,
    intensities: dict[str, float] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render an MR magnitude image of a subject, with its noise-free truth.

    ``image = Rician(degrade(bias * sum_t f_t I_t (1 + a_t z)), sigma)``: tissue fractions
    ``f_t`` times intensities ``I_t`` (partial volume), a shared smooth texture ``z`` (unit
    std, 4 mm B-spline) scaled per tissue by ``a_t`` drawn in [0, texture_strength], a
    multiplicative bias ``exp(b * zb)`` (``zb`` a unit-std B-spline field with 60 mm knots),
    then the resolution loss and noise. Scalar parameters take a number or a (low, high)
    range drawn uniformly.

    Parameters
    ----------
    subject:
        From :func:`draw_subject`, :func:`build_subject` or :func:`draw_patch`.
    rng:
        The only source of randomness.
    contrast:
        One of :data:`CONTRASTS` (see :func:`draw_contrast`); ignored with ``intensities``.
    snr:
        ``snr_reference(intensities) / sigma`` (see :func:`snr_reference`), sigma the noise
        std of each complex channel; ``inf`` for no noise. Default drawn in [10, 40] (choice:
        clinical to research 3D scans).
    bias_strength:
        Std of the log bias field; 0 for none. Default [0, 0.3] (choice: up to ~+-35 %
        intensity variation over the head, as in uncorrected phased-array images).
    texture_strength:
        Upper bound of the per-tissue texture amplitude (fraction of the intensity).
    slice_thickness_mm:
        None for isotropic; else a Gaussian slice profile of this FWHM, slices this far
        apart (rounded to whole voxels), re-interpolated onto the grid
        (:func:`mrenhance.simulate.kspace.thick_slice`).
    slice_axis:
        The slice axis for ``slice_thickness_mm``.
    kspace_factors:
        Optional (fx, fy, fz) k-space truncation before the noise
        (:func:`mrenhance.simulate.kspace.truncate_kspace`).
    intensities:
        Fixed tissue -> intensity (overrides ``contrast``).

    Returns
    -------
    (image, truth): image (x, y, z) float32 on the subject's grid; truth dict with
    ``"noise_free"`` (the image before noise, after bias and resolution loss),
    ``"clean_hr"`` (before resolution loss and noise), ``"bias_field"``, ``"intensities"``,
    ``"sequence"``, ``"contrast"``, ``"snr"``, ``"noise_sigma"``, ``"bias_strength"``,
    ``"texture_amplitudes"``, ``"slice_thickness_mm"``, ``"slice_axis"``,
    ``"kspace_factors"``; the anatomy truth is on ``subject``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    params = subject.params
    if intensities is None:
        intensities, sequence = draw_contrast(rng, contrast)
    else:
        missing = set(subject.tissue_names) - set(intensities)
        if missing:
            raise InputError(f"intensities lack the tissues {sorted(missing)}")
        intensities, sequence = dict(intensities), {"kind": "given"}
        contrast = "given"
    snr_value = _uniform(rng, snr, "snr")
    if not snr_value > 0:
        raise InputError(f"snr must be positive (inf for no noise); got {snr_value}")
    bias_value = _uniform(rng, bias_strength, "bias_strength")
    texture_max = _uniform(rng, texture_strength, "texture_strength")
    amplitudes = {name: float(rng.uniform(0.0, texture_max)) for name in TISSUES}
    texture_lattice = _fov_lattice(params, 4.0)
    texture_coef = random_coefficients(rng, texture_lattice)
    bias_lattice = _fov_lattice(params, 60.0)
    bias_coef = random_coefficients(rng, bias_lattice)

    axes = _axes_mm(params, subject.region_start, subject.shape)
    texture = evaluate_field(texture_coef, texture_lattice, axes) if texture_max > 0 else None
    clean = np.zeros(subject.shape, dtype=np.float32)
    for name, frac in subject.fractions.items():
        weight = np.float32(intensities[name])
        if texture is not None and amplitudes[name] > 0:
            mod = np.maximum(np.float32(1.0) + np.float32(amplitudes[name]) * texture, 0.0)
            clean += frac * (weight * mod)
        else:
            clean += frac * weight
    if bias_value > 0:
        bias = np.exp(np.float32(bias_value) * evaluate_field(bias_coef, bias_lattice, axes))
        clean *= bias
    else:
        bias = np.ones(subject.shape, dtype=np.float32)

    thickness = None if slice_thickness_mm is None else _uniform(rng, slice_thickness_mm, "slice")
    degraded = clean
    if kspace_factors is not None:
        from mrenhance.simulate.kspace import truncate_kspace

        degraded = truncate_kspace(degraded, tuple(kspace_factors))
    if thickness is not None and thickness > params.voxel_mm:
        from mrenhance.simulate.kspace import thick_slice

        fwhm_vox = thickness / params.voxel_mm
        degraded = thick_slice(
            degraded,
            max(1, int(round(fwhm_vox))),
            axis=slice_axis,
            profile="gaussian",
            fwhm_vox=fwhm_vox,
        )
    sigma = 0.0 if np.isinf(snr_value) else snr_reference(intensities) / snr_value
    if sigma > 0:
        s = np.float32(sigma)
        real = degraded + s * rng.standard_normal(degraded.shape, dtype=np.float32)
        imag = s * rng.standard_normal(degraded.shape, dtype=np.float32)
        image = np.hypot(real, imag)
    else:
        image = np.abs(degraded)
    truth = {
        "noise_free": degraded if degraded is not clean else clean.copy(),
        "clean_hr": clean,
        "bias_field": bias,
        "intensities": intensities,
        "sequence": sequence,
        "contrast": contrast,
        "snr": snr_value,
        "noise_sigma": float(sigma),
        "bias_strength": bias_value,
        "texture_amplitudes": amplitudes,
        "slice_thickness_mm": thickness,
        "slice_axis": slice_axis,
        "kspace_factors": None if kspace_factors is None else tuple(kspace_factors),
    }
    return image.astype(np.float32, copy=False), truth


def draw_patch(
    rng: np.random.Generator,
    patch_shape: Sequence[int] = (64, 64, 64),
    *,
    voxel_mm: float = 1.0,
    lesions: Sequence[str] = (),
    deform: str | DeformStrength = "default",
    where: str = "brain",
    **render_kwargs: Any,
) -> tuple[np.ndarray, dict[str, Any], Subject]:
    """Draw a new subject and render one patch of it, deforming only the patch's voxels.

    Parameters
    ----------
    rng:
        The only source of randomness.
    patch_shape:
        (x, y, z) voxels.
    voxel_mm, lesions, deform:
        See :func:`draw_subject_params`.
    where:
        ``"brain"``: the patch centre is a random template brain voxel carried by the
        affine part of the deformation; ``"lesion"``: the tumour (or infarct) centre;
        ``"anywhere"``: uniform over the field of view.
    render_kwargs:
        Passed to :func:`render_image`.

    Returns
    -------
    (image, truth, subject): as :func:`render_image`, with the :class:`Subject` of the patch.
    """
    params = draw_subject_params(rng, voxel_mm=voxel_mm, lesions=lesions, deform=deform)
    patch_shape = tuple(int(s) for s in patch_shape)
    if len(patch_shape) != 3 or min(patch_shape) < 1:
        raise InputError(f"patch_shape must be 3 positive sizes; got {patch_shape}")
    tpl = _template()
    if where == "anywhere":
        centre = rng.uniform(0, np.asarray(params.grid_shape) - 1)
    elif where in ("brain", "lesion"):
        if where == "lesion":
            if params.tumour is not None:
                target = params.tumour.centre_mm
            elif params.infarct is not None:
                inf = params.infarct
                target = inf.apex_mm + inf.length_mm * inf.direction
            else:
                raise InputError("where='lesion' needs lesions=('tumour',) or ('infarct',)")
        else:
            brain_vox = _brain_voxels()
            idx = brain_vox[rng.integers(len(brain_vox))].astype(np.float64)
            target = tpl.affine[:3, :3] @ idx + tpl.affine[:3, 3]
        d = params.deformation
        c = tpl.brain_centre_mm
        x = c + d.linear() @ (target - c) + np.asarray(d.translation_mm)
        centre = (x - params.affine[:3, 3]) / np.diag(params.affine)[:3]
    else:
        raise InputError(f"where must be 'brain', 'lesion' or 'anywhere'; got {where!r}")
    start = np.round(centre - (np.asarray(patch_shape) - 1) / 2.0).astype(int)
    subject = build_subject(params, region_start=start, region_shape=patch_shape)
    image, truth = render_image(subject, rng, **render_kwargs)
    return image, truth, subject


@functools.cache
def _brain_voxels() -> np.ndarray:
    tpl = _template()
    return np.argwhere(tpl.signed_distance_mm < 0).astype(np.int16)


def deformation_jacobian_determinant(subject: Subject) -> np.ndarray:
    """(x - 2, y - 2, z - 2) float32 Jacobian determinant of the backward map p(x).

    Central differences of :attr:`Subject.template_vox` (template mm per subject mm) on the
    interior voxels; positive everywhere means the map does not fold.
    """
    p = (
        subject.template_vox.astype(np.float64)
        * np.abs(np.diag(_template().affine)[:3, None])[:, :, None, None]
    )
    h = 2.0 * subject.params.voxel_mm
    jac = np.empty((3, 3, *[s - 2 for s in subject.shape]))
    for i in range(3):
        for j in range(3):
            lo = [slice(1, -1)] * 3
            hi = [slice(1, -1)] * 3
            lo[j] = slice(0, -2)
            hi[j] = slice(2, None)
            jac[i, j] = (p[i][tuple(hi)] - p[i][tuple(lo)]) / h
    return np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1))).astype(np.float32)


__all__ = [
    "BRAIN_TISSUES",
    "CONTRASTS",
    "DEFORMATIONS",
    "LABELS",
    "LESIONS",
    "SEQUENCES",
    "TISSUES",
    "DeformStrength",
    "Deformation",
    "HeadParams",
    "InfarctParams",
    "Subject",
    "SubjectParams",
    "TumourParams",
    "brain_centre_voxel",
    "build_subject",
    "deformation_jacobian_determinant",
    "draw_contrast",
    "draw_patch",
    "draw_subject",
    "draw_subject_params",
    "render_image",
    "signal_equation",
    "snr_reference",
    "template_brain_volume_fractions",
    "warp_template_map",
]
