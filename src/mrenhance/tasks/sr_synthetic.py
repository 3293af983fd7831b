"""Training pairs for SR that transfers: synthetic scans with a randomised degradation.

The MNI152 template alone teaches a network that one smooth, skull-stripped, noise-free
image. Following SynthSR (Iglesias et al., Sci. Adv. 2023), a *scan* here is a subject
drawn by :mod:`mrenhance.simulate.subjects` (deformed anatomy with skull and scalp, random
contrast, bias, texture, noise, voxel size and field of view), or, with probability
``mix_mni``, the MNI152 T1 itself; each scan gets one randomly drawn acquisition
(:func:`draw_degradation`: k-space truncation at random factors, a thick-slice profile with
a gap, added Rician noise) applied to the *whole* scan, so its LR image is what a user's
file would be and its normalisation scale is exactly ``enhance``'s rule on that LR image.
``patches_per_scan`` consecutive samples are patches of one scan (a scan costs seconds to
render; a patch milliseconds).

Held-out data: patches of the MNI T1 come only from its training regions; patches of a
synthetic subject never touch a voxel whose *template* coordinate lies in a held-out slab
(the subjects are deformed copies of the template's tissue maps, so this keeps the
held-out slabs' anatomy out of training too).

Every draw is a function of ``(seed, index)``: sample ``i`` uses scan ``i //
patches_per_scan`` (drawn with ``default_rng([seed, 1, scan])``) and picks its patch with
``default_rng([seed, 0, i])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mrenhance.errors import ConfigError

__all__ = [
    "DEGRADATION_DEFAULTS",
    "SYNTHETIC_DEFAULTS",
    "SRScan",
    "SyntheticSRDataset",
    "apply_degradation",
    "check_degradation",
    "check_synthetic",
    "draw_degradation",
]

SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "patches_per_scan": 24,  # choice: a scan renders in ~1-3 s, a patch in ~1 ms
    "contrast": {"random": 0.5, "t1": 0.25, "t2": 0.1, "pd": 0.1, "flair": 0.05},
    "voxel_mm": [1.0, 2.0],  # choice: anatomy as 1-2 mm voxels (users' scans: 1-4 mm)
    "fov_fraction": [0.6, 1.0],  # choice: partial coverage per axis, as clinical slabs
    "snr": [20.0, 100.0],  # the HR scan's own noise (choice); the target keeps it
    "bias_strength": [0.0, 0.3],  # subjects.render_image default (choice)
    "lesion_p": 0.2,  # choice: a tumour in 1 of 5 synthetic subjects
    "mix_mni": 0.2,  # choice: fraction of scans that are the MNI T1 (training regions)
}

DEGRADATION_DEFAULTS: dict[str, Any] = {
    # Sec. 2.6 (2x2 in-plane) is the first choice; the others are ours
    "kspace_factors": [[2, 2, 1], [2, 2, 1], [2, 2, 2], [3, 3, 1], [1.5, 1.5, 1.5], [2, 2, 1.5]],
    "kspace_p": 0.6,
    "permute_axes": True,  # choice: scans are stored in any orientation
    "thick_slice_mm": [2.0, 5.0],  # slice FWHM (Gaussian profile), issue 8
    "gap_mm": [0.0, 1.0],  # extra slice spacing beyond the thickness (choice)
    "thick_p": 0.5,
    "noise_snr": [10.0, 40.0],  # mean head signal / sigma (choice)
    "noise_p": 0.4,
}


def _check_range(value: Any, key: str, source: str, low: float = 0.0) -> list[float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) for v in value)
        or not low <= value[0] <= value[1]
    ):
        raise ConfigError(f"{source}: {key}: expected [low, high] with {low} <= low <= high")
    return [float(value[0]), float(value[1])]


def _check_p(value: Any, key: str, source: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{source}: {key}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def check_synthetic(spec: Any, source: str = "recipe") -> dict[str, Any] | None:
    """Validate ``data.synthetic`` (None: no synthetic scans); fill defaults."""
    from mrenhance.simulate.subjects import CONTRASTS

    if spec is None or spec is False:
        return None
    if spec is True:
        spec = {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: data.synthetic: expected a mapping or null")
    unknown = sorted(set(spec) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise ConfigError(f"{source}: data.synthetic.{unknown[0]}: unknown key")
    cfg = {**SYNTHETIC_DEFAULTS, **spec}
    n = cfg["patches_per_scan"]
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"{source}: data.synthetic.patches_per_scan: expected an integer >= 1")
    contrast = cfg["contrast"]
    if isinstance(contrast, str):
        contrast = {contrast: 1.0}
    if (
        not isinstance(contrast, dict)
        or not contrast
        or any(k not in CONTRASTS for k in contrast)
        or any(not isinstance(w, (int, float)) or w < 0 for w in contrast.values())
        or sum(contrast.values()) <= 0
    ):
        raise ConfigError(
            f"{source}: data.synthetic.contrast: a name or {{name: weight}} of {CONTRASTS}"
        )
    cfg["contrast"] = {k: float(w) for k, w in contrast.items()}
    cfg["voxel_mm"] = _check_range(cfg["voxel_mm"], "data.synthetic.voxel_mm", source, 0.5)
    cfg["fov_fraction"] = _check_range(cfg["fov_fraction"], "data.synthetic.fov_fraction", source)
    if cfg["fov_fraction"][1] > 1.0 or cfg["fov_fraction"][0] <= 0:
        raise ConfigError(f"{source}: data.synthetic.fov_fraction: must lie in (0, 1]")
    cfg["snr"] = _check_range(cfg["snr"], "data.synthetic.snr", source, 1.0)
    cfg["bias_strength"] = _check_range(
        cfg["bias_strength"], "data.synthetic.bias_strength", source
    )
    cfg["lesion_p"] = _check_p(cfg["lesion_p"], "data.synthetic.lesion_p", source)
    cfg["mix_mni"] = _check_p(cfg["mix_mni"], "data.synthetic.mix_mni", source)
    return cfg


def check_degradation(spec: Any, source: str = "recipe") -> dict[str, Any] | None:
    """Validate ``data.degradation`` (None: the fixed ``data.factors``); fill defaults."""
    if spec is None or spec is False:
        return None
    if spec is True:
        spec = {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: data.degradation: expected a mapping or null")
    unknown = sorted(set(spec) - set(DEGRADATION_DEFAULTS))
    if unknown:
        raise ConfigError(f"{source}: data.degradation.{unknown[0]}: unknown key")
    cfg = {**DEGRADATION_DEFAULTS, **spec}
    factors = cfg["kspace_factors"]
    if (
        not isinstance(factors, list)
        or not factors
        or any(
            not isinstance(f, (list, tuple))
            or len(f) != 3
            or any(not isinstance(v, (int, float)) or v < 1 for v in f)
            for f in factors
        )
    ):
        raise ConfigError(
            f"{source}: data.degradation.kspace_factors: a list of [fx, fy, fz], each >= 1"
        )
    cfg["kspace_factors"] = [[float(v) for v in f] for f in factors]
    for key in ("kspace_p", "thick_p", "noise_p"):
        cfg[key] = _check_p(cfg[key], f"data.degradation.{key}", source)
    cfg["thick_slice_mm"] = _check_range(
        cfg["thick_slice_mm"], "data.degradation.thick_slice_mm", source
    )
    cfg["gap_mm"] = _check_range(cfg["gap_mm"], "data.degradation.gap_mm", source)
    cfg["noise_snr"] = _check_range(cfg["noise_snr"], "data.degradation.noise_snr", source, 1.0)
    cfg["permute_axes"] = bool(cfg["permute_axes"])
    return cfg


# ---------------------------------------------------------------------------- science
def draw_degradation(
    rng: np.random.Generator, spec: dict[str, Any], voxel_mm: float = 1.0
) -> dict[str, Any]:
    """Draw one acquisition from a validated ``data.degradation`` spec.

    Returns ``{"kspace_factors": (fx, fy, fz) | None, "thick": {"axis", "fwhm_vox",
    "spacing_vox"} | None, "noise_snr": float | None}``; at least one of k-space truncation
    and thick slices is drawn (else the first ``kspace_factors`` entry is used).
    ``voxel_mm`` converts the thick-slice millimetres to voxels.
    """
    drawn: dict[str, Any] = {"kspace_factors": None, "thick": None, "noise_snr": None}
    choices = spec["kspace_factors"]
    if rng.random() < spec["kspace_p"]:
        factors = list(choices[int(rng.integers(len(choices)))])
        if spec["permute_axes"]:
            factors = [factors[k] for k in rng.permutation(3)]
        drawn["kspace_factors"] = tuple(float(f) for f in factors)
    if rng.random() < spec["thick_p"]:
        thickness = float(rng.uniform(*spec["thick_slice_mm"]))
        gap = float(rng.uniform(*spec["gap_mm"]))
        fwhm = thickness / voxel_mm
        if fwhm > 1.05:  # thinner than ~a voxel is no degradation
            drawn["thick"] = {
                "axis": int(rng.integers(3)),
                "fwhm_vox": round(fwhm, 3),
                "spacing_vox": max(1, int(round((thickness + gap) / voxel_mm))),
            }
    if drawn["kspace_factors"] is None and drawn["thick"] is None:
        drawn["kspace_factors"] = tuple(float(f) for f in choices[0])
    if rng.random() < spec["noise_p"]:
        drawn["noise_snr"] = float(rng.uniform(*spec["noise_snr"]))
    return drawn


def apply_degradation(
    hr: np.ndarray,
    drawn: dict[str, Any],
    rng: np.random.Generator,
    *,
    signal_mask: np.ndarray | None = None,
) -> np.ndarray:
    """The LR image of ``hr`` on its own grid under one drawn acquisition.

    hr : (x, y, z) float32 magnitude. Order: k-space truncation (zero-filled, Sec. 2.6),
    then the slice profile and decimation (cubic back to the grid), then Rician noise at
    ``noise_snr`` = mean of the degraded image in ``signal_mask`` / sigma.
    Returns (x, y, z) float32 >= 0.
    """
    from mrenhance.simulate.kspace import thick_slice, truncate_kspace
    from mrenhance.simulate.noise import add_rician_noise

    lr = np.asarray(hr, dtype=np.float32)
    if drawn.get("kspace_factors") is not None:
        lr = truncate_kspace(lr, tuple(drawn["kspace_factors"]), output="same_grid")
    thick = drawn.get("thick")
    if thick is not None:
        lr = thick_slice(
            lr,
            int(thick["spacing_vox"]),
            axis=int(thick["axis"]),
            profile="gaussian",
            fwhm_vox=float(thick["fwhm_vox"]),
        )
    lr = np.clip(lr, 0, None)
    if drawn.get("noise_snr"):
        lr = add_rician_noise(lr, float(drawn["noise_snr"]), rng, signal_mask=signal_mask)
    return lr.astype(np.float32)


# ---------------------------------------------------------------------------- scans
@dataclass
class SRScan:
    """One training scan: HR and LR in raw units, the patch corners allowed, the scale.

    hr, lr : (x, y, z) float32. corners : (n,) flat indices into ``corner_shape``.
    scale : ``enhance``'s normalisation scale of ``lr``. info : what was drawn.
    template_z : (x, y, z) float32, the held-out axis coordinate each voxel samples in the
        template (the MNI T1 itself: its own index), to check the held-out slabs.
    """

    hr: np.ndarray
    lr: np.ndarray
    corners: np.ndarray
    corner_shape: tuple[int, ...]
    scale: float
    info: dict[str, Any]
    template_z: np.ndarray | None = None


def _allowed_corners(
    brain: np.ndarray, banned: np.ndarray, patch: Sequence[int], min_fraction: float
) -> tuple[np.ndarray, tuple[int, ...]]:
    from mrenhance.engine.patches import _box_sums

    patch = tuple(int(p) for p in patch)
    n = int(np.prod(patch))
    ok = (_box_sums(brain, patch) >= max(1, int(np.ceil(min_fraction * n)))) & (
        _box_sums(banned, patch) == 0
    )
    return np.flatnonzero(ok.ravel()), ok.shape


def _banned_template_slabs(held_out: dict[str, Any] | None) -> list[tuple[float, float]]:
    if not held_out:
        return []
    gap = float(held_out.get("gap", 0))
    return [
        (held_out[k][0] - gap, held_out[k][1] + gap)
        for k in ("validation", "test")
        if held_out.get(k)
    ]


class SyntheticSRDataset(torch.utils.data.Dataset):
    """Dict samples ``{"inputs": (1, *patch), "target": (1, *patch)}`` from drawn scans.

    Parameters
    ----------
    synthetic, degradation : validated ``data.synthetic`` / ``data.degradation`` sections.
    patch_size : (px, py, pz) voxels.
    mni : the MNI subject (:class:`mrenhance.tasks.sr_t1.SRSubject`) for ``mix_mni`` scans,
        with its training ``regions`` (boxes); None disables mixing.
    held_out : the task's held-out slabs (template axis and ranges).
    rule : the normalisation rule (the card's), applied to each scan's LR image.
    augment : optional ``augment(x, y, rng)``.
    """

    def __init__(
        self,
        synthetic: dict[str, Any],
        degradation: dict[str, Any],
        patch_size: Sequence[int],
        *,
        rule: Any,
        seed: int = 0,
        mni: Any = None,
        mni_regions: Sequence[tuple[slice, ...]] | None = None,
        held_out: dict[str, Any] | None = None,
        min_mask_fraction: float = 0.1,
        augment: Any = None,
        length: int = 10**9,
    ) -> None:
        self.synthetic = synthetic
        self.degradation = degradation
        self.patch = tuple(int(p) for p in patch_size)
        self.rule = rule
        self.seed = int(seed)
        self.mni = mni
        self.mni_regions = list(mni_regions or [])
        self.held_out = held_out
        self.min_mask_fraction = float(min_mask_fraction)
        self.augment = augment
        self.length = int(length)
        self._cache: dict[int, SRScan] = {}

    def __len__(self) -> int:
        return self.length

    # -- one scan -------------------------------------------------------------------------
    def scan(self, j: int) -> SRScan:
        """Scan ``j`` (cached: the last two)."""
        if j not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[j] = self._draw_scan(j)
        return self._cache[j]

    def _draw_scan(self, j: int) -> SRScan:
        rng = np.random.default_rng([self.seed, 1, j])
        use_mni = self.mni is not None and rng.random() < self.synthetic["mix_mni"]
        for _attempt in range(8):  # a tiny field of view may hold no allowed patch: redraw
            scan = self._draw_mni(rng) if use_mni else self._draw_synthetic(rng)
            if scan.corners.size:
                scan.info["scan"] = j
                return scan
        if not use_mni:  # coarse voxels rarely hold a patch between the held-out slabs:
            # the finest voxel size and the whole head, once, before giving up
            scan = self._draw_synthetic(rng, finest=True)
            if scan.corners.size:
                scan.info["scan"] = j
                return scan
        raise ConfigError(
            f"data.synthetic: scan {j}: no {self.patch} patch fits in 8 draws "
            "(raise fov_fraction or lower the patch size)"
        )

    def _finish(
        self,
        hr: np.ndarray,
        head: np.ndarray,
        brain: np.ndarray,
        banned: np.ndarray,
        voxel_mm: float,
        rng: np.random.Generator,
        info: dict[str, Any],
        template_z: np.ndarray | None,
    ) -> SRScan:
        from mrenhance.preprocess import intensity_scale

        drawn = draw_degradation(rng, self.degradation, voxel_mm)
        lr = apply_degradation(hr, drawn, rng, signal_mask=head)
        corners, shape = _allowed_corners(brain, banned, self.patch, self.min_mask_fraction)
        scale = intensity_scale(lr, self.rule)
        info = {**info, "degradation": drawn}
        return SRScan(hr, lr, corners, shape, scale, info, template_z)

    def _draw_mni(self, rng: np.random.Generator) -> SRScan:
        s = self.mni
        # the MNI scan draws its own noise level as the synthetic ones do
        hr = s.hr
        allowed = np.zeros(s.hr.shape, bool)
        for box in self.mni_regions:
            allowed[box] = True
        banned = ~allowed
        head = s.hr > 0.05 * float(np.percentile(s.hr[s.mask], 99.5))
        axis = int(self.held_out["axis"]) if self.held_out else 2
        shape = [1, 1, 1]
        shape[axis] = s.hr.shape[axis]
        index = np.arange(s.hr.shape[axis], dtype=np.float32).reshape(shape)
        template_z = np.broadcast_to(index, s.hr.shape)
        return self._finish(
            hr, head, s.mask & allowed, banned, 1.0, rng, {"kind": "mni"}, template_z
        )

    def _draw_synthetic(self, rng: np.random.Generator, finest: bool = False) -> SRScan:
        """A synthetic scan; ``finest``: at the smallest voxel size, the whole head."""
        from mrenhance.simulate import subjects as S

        cfg = self.synthetic
        voxel_mm = float(cfg["voxel_mm"][0]) if finest else float(rng.uniform(*cfg["voxel_mm"]))
        names = sorted(cfg["contrast"])
        weights = np.array([cfg["contrast"][k] for k in names])
        contrast = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        lesions = ("tumour",) if rng.random() < cfg["lesion_p"] else ()
        full = np.array(S._subject_grid(voxel_mm)[0])
        fov = np.maximum(
            np.array(self.patch) + 2,
            np.round(full * (1.0 if finest else rng.uniform(*cfg["fov_fraction"], size=3))).astype(
                int
            ),
        )
        subject = S.draw_subject(rng, voxel_mm=voxel_mm, shape=tuple(fov), lesions=lesions)
        hr, truth = S.render_image(
            subject, rng, contrast=contrast, snr=cfg["snr"], bias_strength=cfg["bias_strength"]
        )
        banned = np.zeros(subject.shape, bool)
        axis = int(self.held_out["axis"]) if self.held_out else 2
        template_z = subject.template_vox[axis]
        for lo, hi in _banned_template_slabs(self.held_out):
            # slab +- gap (data.held_out.gap, 4 voxels), rounded to the nearest template voxel
            banned |= (template_z >= lo - 0.5) & (template_z < hi + 0.5)
        info = {
            "kind": "synthetic",
            "contrast": contrast,
            "voxel_mm": round(voxel_mm, 3),
            "shape": [int(n) for n in subject.shape],
            "snr_hr": round(float(truth["snr"]), 2),
            "lesions": list(lesions),
        }
        return self._finish(
            hr, subject.head_mask, subject.brain_mask, banned, voxel_mm, rng, info, template_z
        )

    # -- one sample -----------------------------------------------------------------------
    def sample_info(self, i: int) -> dict[str, Any]:
        """What sample ``i`` was drawn from: its scan's draws and its patch corner."""
        return self._sample(i)[2]

    def _sample(self, i: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for length {self.length}")
        i = i % self.length
        scan = self.scan(i // int(self.synthetic["patches_per_scan"]))
        rng = np.random.default_rng([self.seed, 0, i])
        flat = int(scan.corners[rng.integers(scan.corners.size)])
        corner = np.unravel_index(flat, scan.corner_shape)
        box = tuple(slice(int(c), int(c) + p) for c, p in zip(corner, self.patch, strict=True))
        s = np.float32(scan.scale)
        x = (scan.lr[box] / s).astype(np.float32)[None]
        y = (scan.hr[box] / s).astype(np.float32)[None]
        if self.augment is not None:
            x, y = self.augment(x, y, rng)
            x = np.ascontiguousarray(x, dtype=np.float32)
            y = np.ascontiguousarray(y, dtype=np.float32)
        info = {**scan.info, "corner": [int(c) for c in corner]}
        if scan.template_z is not None:
            t = scan.template_z[box]
            info["template_z"] = [float(t.min()), float(t.max())]
        return x, y, info

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        x, y, _ = self._sample(int(i))
        return {"inputs": x, "target": y}
