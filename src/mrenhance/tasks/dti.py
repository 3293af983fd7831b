"""4x in-plane super-resolution of DWIs (Mubarka et al., "Super Resolution of Diffusion
Tensor Images", Stanford), as a Task.

What an input and a target are
    target (HR): a DWI series (x, y, z, n) with its gradient table; input (LR): the same
    series with Gaussian noise added and every 2D slice downsampled 4x (Sec. 3;
    :func:`mrenhance.simulate.dwi.degrade_dwi`). A 2D network (Sec. 4: SRResNet / SRGAN,
    one channel) maps each LR slice of each volume to a 4x slice; the output Volume lies on
    the 4x grid (:func:`mrenhance.engine.infer.scaled_affine`) and keeps the gradient table.

Data
    Simulated subjects (:mod:`mrenhance.simulate.subjects`, 2 mm, an axial slab around the
    brain centre) rendered as DWIs by :func:`mrenhance.simulate.dwi.simulate_dwi`
    (``small_64D``'s table by default). As the paper (Sec. 3): 7 training subjects and 2
    test subjects, plus one validation subject for checkpoint selection (ours). Each
    role draws its subjects from its own seed stream, so test anatomy is never trained on.

Normalisation (one rule for training, evaluation and ``enhance``)
    Every volume of a series is divided by ONE scale, the card's rule
    (:func:`mrenhance.preprocess.intensity_scale`) applied to the mean b = 0 image of the
    input, so the ratios S/S0 that tensors are fitted from are untouched.

Metrics (the paper's table and beyond)
    Per-slice PSNR and SSIM (2D, data_range 1) over every slice of every volume of the test
    subjects' central ``test_slices`` slices, intensities divided by the 99.5th percentile
    of the HR mean b0 in the brain; the paper computes them over whole slices, so do we.
    Then tensors (dipy WLS) fitted on each method's output and on the HR DWIs: mean
    absolute FA and MD errors in WM, GM (and MD in CSF), and the mean angle between
    principal eigenvectors in WM (tissue fraction > 0.5 from the subject's truth). And the
    intensity bias: mean output over mean HR in the brain, b0 and DW volumes apart
    (:func:`intensity_ratios`).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mrenhance.errors import ConfigError, InputError
from mrenhance.models.card import DEFAULT_NORMALISATION, Normalisation
from mrenhance.tasks.base import (
    InputKind,
    Task,
    TrainingData,
    register_task,
    require_finite,
    require_ndim,
)
from mrenhance.volume import Volume

DATA_DEFAULTS: dict[str, Any] = {
    "subjects": {"train": 7, "validation": 1, "test": 2},
    "seed": 0,
    "voxel_mm": 2.0,
    "shape": [96, 112, 20],
    "gradients": "sample:small_64D",
    "snr": [15.0, 40.0],
    "factor": 4,
    "downsample": "area",
    "lr_noise": 0.01,
    "normalise": dict(DEFAULT_NORMALISATION),
    "min_mask_fraction": 0.1,
    "augment": None,
    "test_slices": 8,
}

# The evaluation's intensity basis: x / this percentile of the HR mean b0 in the brain.
REFERENCE_PERCENTILE = 99.5
# Role -> index of the seed stream subjects of that role are drawn from.
_ROLES = {"train": 0, "validation": 1, "test": 2}


# ---------------------------------------------------------------------------- subjects
@dataclass
class DWISubject:
    """One HR/LR DWI pair in raw units with its regions and normalisation.

    hr : (x, y, z, n) float32; lr : (x / f, y / f, z, n) float32 (f the factor).
    bvals (n,), bvecs (n, 3); affine: the HR grid's; regions: name -> (x, y, z) bool on
    the HR grid (``brain``, ``wm``, ``gm``, ``csf``); input_scale: the LR normalisation
    scale under the data config's rule; reference: the evaluation basis (see module doc).
    """

    name: str
    hr: np.ndarray
    lr: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    affine: np.ndarray
    regions: dict[str, np.ndarray]
    input_scale: float = 1.0
    reference: float = 1.0
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def factor(self) -> int:
        return self.hr.shape[0] // self.lr.shape[0]

    @property
    def lr_affine(self) -> np.ndarray:
        from mrenhance.baselines.interpolate import resampled_affine

        return resampled_affine(self.affine, self.hr.shape[:3], self.lr.shape[:3], alignment="fov")

    def lr_volume(self) -> Volume:
        meta = {"source": f"{self.name} (LR)", "bvals": self.bvals, "bvecs": self.bvecs}
        return Volume(self.lr, self.lr_affine, meta)

    def hr_volume(self) -> Volume:
        meta = {"source": f"{self.name} (HR)", "bvals": self.bvals, "bvecs": self.bvecs}
        return Volume(self.hr, self.affine, meta)

    def crop_slices(self, start: int, stop: int) -> DWISubject:
        """The subject's axial slices [start, stop) (normalisation scales kept)."""
        z = slice(start, stop)
        return replace(
            self,
            hr=self.hr[:, :, z],
            lr=self.lr[:, :, z],
            regions={k: v[:, :, z] for k, v in self.regions.items()},
            affine=Volume(self.hr[..., :1], self.affine).crop((slice(None), slice(None), z)).affine,
            truth={},
        )


def mean_b0(data: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    """Mean of the b = 0 volumes (b <= 50 s/mm^2) of a (x, y, z, n) series: (x, y, z)."""
    b0 = np.asarray(bvals) <= 50
    if not b0.any():
        raise InputError("the series has no b = 0 volume (b <= 50 s/mm^2)")
    return np.asarray(data)[..., b0].mean(axis=-1)


def _reference(hr: np.ndarray, bvals: np.ndarray, brain: np.ndarray) -> float:
    b0 = mean_b0(hr, bvals)
    values = b0[brain] if brain.any() else b0.reshape(-1)
    ref = float(np.percentile(values, REFERENCE_PERCENTILE))
    return ref if ref > 0 else 1.0


@functools.lru_cache(maxsize=16)
def _simulated(cfg_json: str, role: str, k: int) -> DWISubject:
    from mrenhance.preprocess import intensity_scale
    from mrenhance.simulate import dwi as D
    from mrenhance.simulate import subjects as S

    cfg = json.loads(cfg_json)
    rng = np.random.default_rng([int(cfg["seed"]), _ROLES[role], k])
    subject = S.draw_subject(
        rng, voxel_mm=float(cfg["voxel_mm"]), shape=tuple(cfg["shape"]), lesions=()
    )
    bvals, bvecs = D.load_gradient_table(cfg["gradients"])
    hr, truth = D.simulate_dwi(subject, rng, bvals, bvecs, snr=tuple(cfg["snr"]))
    fr = subject.fractions
    regions = {
        "brain": subject.brain_mask,
        "wm": (fr["wm"] > 0.5) & subject.brain_mask,
        "gm": (fr["gm"] > 0.5) & subject.brain_mask,
        "csf": (fr["csf"] > 0.5) & subject.brain_mask,
    }
    reference = _reference(hr, bvals, subject.brain_mask)
    lr = D.degrade_dwi(
        hr,
        int(cfg["factor"]),
        method=cfg["downsample"],
        noise_sigma=float(cfg["lr_noise"]) * reference,
        rng=rng,
    )
    rule = Normalisation.from_dict(cfg["normalise"], "data.normalise")
    return DWISubject(
        f"simulated {role} subject {k} (seed {cfg['seed']})",
        hr,
        lr,
        bvals,
        bvecs,
        subject.affine,
        regions,
        input_scale=intensity_scale(mean_b0(lr, bvals), rule),
        reference=reference,
        truth={"fa": truth["fa"], "sigma": truth["sigma"], "params": truth["params"]},
    )


def load_subjects(cfg: dict[str, Any], role: str) -> list[DWISubject]:
    """The simulated subjects of ``role`` ("train", "validation", "test") of a data config."""
    key = json.dumps(cfg, sort_keys=True, default=list)
    return [_simulated(key, role, k) for k in range(int(cfg["subjects"].get(role, 0)))]


def central_slices(subject: DWISubject, n: int) -> DWISubject:
    """The ``n`` central axial slices of a subject (all of them when it has fewer)."""
    z = subject.hr.shape[2]
    if n <= 0 or n >= z:
        return subject
    start = (z - n) // 2
    return subject.crop_slices(start, start + n)


def real_subject(name: str = "dipy_small_64d", factor: int = 4) -> DWISubject:
    """A real DWI (or b0) sample as an HR/LR pair: cropped in-plane to a multiple of
    ``factor`` around the centre, degraded as the simulated data (area 4x, no added noise).

    ``dipy_small_64d``: 10x10x10x65 cropped to 8x8x10 (LR 2x2: a tiny check that training
    never saw; FA/MD/V1 against the real HR fit). ``dipy_s0_10slices``: a real b0 image,
    128x128x10 (image metrics only). Regions: head = mean b0 above 10 % of its 99th
    percentile (holes filled), WM = HR FA > 0.3 inside it.

    choice: not Otsu (:func:`mrenhance.preprocess.head_mask`): ``small_64D`` is a crop
    that lies inside the brain, where Otsu's threshold splits bright CSF (174 of 1,000
    voxels) from tissue and its "WM" was a handful of voxels at CSF borders; the 10 %
    rule keeps 903 voxels there, and the head (not just its brightest part) of the
    ``S0_10slices`` b0.
    """
    from scipy import ndimage

    from mrenhance import samples
    from mrenhance.diffusion import fit_tensors
    from mrenhance.simulate.dwi import degrade_dwi

    vol = samples.load_sample(name)
    data = vol.data if vol.ndim == 4 else vol.data[..., None]
    bvals = np.asarray(vol.meta.get("bvals", np.zeros(data.shape[3])), float)
    bvecs = np.asarray(vol.meta.get("bvecs", np.zeros((data.shape[3], 3))), float)
    box = []
    for n in data.shape[:2]:
        m = n - n % factor
        box.append(slice((n - m) // 2, (n - m) // 2 + m))
    cropped = Volume(data, vol.affine).crop((*box, slice(None)))
    hr = np.ascontiguousarray(cropped.data)
    b0 = mean_b0(hr, bvals)
    brain = ndimage.binary_fill_holes(b0 > 0.1 * np.percentile(b0, 99))
    regions = {"brain": brain}
    if (bvals > 50).sum() >= 6:
        fa = fit_tensors(hr, bvals, bvecs, brain)["fa"]
        regions["wm"] = brain & (fa > 0.3)
        regions["other"] = brain & (fa <= 0.3)
    reference = _reference(hr, bvals, brain)
    lr = degrade_dwi(hr, factor)
    from mrenhance.preprocess import intensity_scale

    return DWISubject(
        f"{name} (real)",
        hr,
        lr,
        bvals,
        bvecs,
        cropped.affine,
        regions,
        input_scale=intensity_scale(mean_b0(lr, bvals), Normalisation()),
        reference=reference,
    )


# ---------------------------------------------------------------------------- methods
Method = Callable[[DWISubject], np.ndarray]
"""An SR method: subject -> its estimate of ``subject.hr`` (raw units) from ``subject.lr``."""


def interpolation_method(method: str = "cubic") -> Method:
    """Interpolate each LR slice onto the 4x grid (FOV-aligned; "cubic" = the paper's bicubic)."""
    from mrenhance.baselines.interpolate import upsample

    def run(subject: DWISubject) -> np.ndarray:
        out = upsample(subject.lr, subject.hr.shape, method=method, alignment="fov")
        return np.clip(out, 0, None).astype(np.float32)

    return run


def network_method(enhancer: Any) -> Method:
    """An :class:`mrenhance.enhance_api.Enhancer` as a :data:`Method`: ``enhance``'s code path."""

    def run(subject: DWISubject) -> np.ndarray:
        return enhancer(subject.lr_volume()).data

    return run


def per_slice_psnr_ssim(sr: np.ndarray, hr: np.ndarray) -> tuple[float, float]:
    """Mean over every 2D slice (each z, each volume) of PSNR and SSIM, data_range 1.

    sr, hr : (x, y, z, n) on the evaluation basis (divided by the reference).
    """
    from mrenhance.metrics import ssim

    x, y = hr.shape[:2]
    a = sr.reshape(x, y, -1).astype(np.float64)
    b = hr.reshape(x, y, -1).astype(np.float64)
    mse = ((a - b) ** 2).mean(axis=(0, 1))
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-20))
    # choice: slices narrower than SSIM's 11-pixel window (a real 8x8 check) get a
    # narrower Gaussian, the widest whose window fits
    sigma = min(1.5, ((min(x, y) - 1) // 2) / 3.5)
    return float(psnr.mean()), float(ssim(a, b, data_range=1.0, spatial_dims=2, sigma=sigma))


def gradient_ratio(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> float:
    """Sharpness: mean in-plane gradient magnitude of ``sr`` over that of ``hr`` in ``mask``.

    sr, hr : (x, y, z, n); mask : (x, y, z). 1 = as sharp as HR; bicubic is below 1.
    """

    def mean_gradient(a: np.ndarray) -> float:
        gx, gy = np.gradient(a.astype(np.float32), axis=(0, 1))
        return float(np.hypot(gx, gy)[mask].mean())

    return mean_gradient(sr) / max(mean_gradient(hr), 1e-12)


def intensity_ratios(
    sr: np.ndarray, hr: np.ndarray, bvals: np.ndarray, mask: np.ndarray
) -> dict[str, float]:
    """Intensity bias: mean of ``sr`` over mean of ``hr`` in ``mask``, b = 0 volumes
    (``b0_ratio``) and diffusion-weighted ones (``dw_ratio``, absent without any).

    sr, hr : (x, y, z, n); bvals (n,); mask : (x, y, z). 1 = no bias. Tensors are fitted
    from S / S0, so a b0 brightened more than the DW volumes raises the fitted MD
    (by about ln(b0_ratio / dw_ratio) / b).
    """
    b0 = np.asarray(bvals) <= 50
    out = {}
    for key, vols in (("b0_ratio", b0), ("dw_ratio", ~b0)):
        if vols.any():
            ref = float(hr[..., vols][mask].mean(dtype=np.float64))
            out[key] = float(sr[..., vols][mask].mean(dtype=np.float64)) / max(ref, 1e-12)
    return out


def evaluate_subject(
    methods: dict[str, Method],
    subject: DWISubject,
    *,
    tensors: bool = True,
) -> list[dict[str, Any]]:
    """Every method on one subject: per-slice PSNR/SSIM and tensor-map errors vs HR."""
    from mrenhance.diffusion import fit_tensors, tensor_map_errors

    ref = np.float32(subject.reference)
    hr = subject.hr / ref
    fit_tensors_too = tensors and (subject.bvals > 50).sum() >= 6
    regions = {k: v for k, v in subject.regions.items() if k != "brain"}
    brain = subject.regions["brain"]
    hr_maps = (
        fit_tensors(subject.hr, subject.bvals, subject.bvecs, brain) if fit_tensors_too else None
    )
    rows = []
    for name, method in methods.items():
        t0 = time.perf_counter()
        sr = method(subject)
        seconds = time.perf_counter() - t0
        if sr.shape != subject.hr.shape:
            raise InputError(f"{name}: output {sr.shape} differs from HR {subject.hr.shape}")
        psnr, ssim = per_slice_psnr_ssim(sr / ref, hr)
        row: dict[str, Any] = {"method": name, "psnr": psnr, "ssim": ssim}
        row["sharpness"] = gradient_ratio(sr, subject.hr, brain)
        row.update(intensity_ratios(sr, subject.hr, subject.bvals, brain))
        if hr_maps is not None:
            maps = fit_tensors(sr, subject.bvals, subject.bvecs, brain)
            row.update(tensor_map_errors(maps, hr_maps, regions))
        row["seconds"] = round(seconds, 2)
        rows.append(row)
    return rows


def mean_rows(per_subject: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Average rows of the same method over subjects (numbers only; seconds summed)."""
    out = []
    for i, first in enumerate(per_subject[0]):
        row: dict[str, Any] = {"method": first["method"]}
        for key, value in first.items():
            if key == "method" or not isinstance(value, (int, float)):
                continue
            values = [rows[i][key] for rows in per_subject if key in rows[i]]
            row[key] = float(np.sum(values) if key == "seconds" else np.mean(values))
        row["subjects"] = len(per_subject)
        out.append(row)
    return out


# ---------------------------------------------------------------------------- the task
@register_task
class DTITask(Task):
    """4x in-plane DWI super-resolution (Mubarka et al.): LR slices -> 4x slices."""

    name = "dti"
    description = "4x in-plane super-resolution of DWI series (2D SRResNet/SRGAN per slice)"
    paper = (
        "Mubarka, Moffitt, Kocherlakota, Wang, Itakura: Super Resolution of Diffusion "
        "Tensor Images (Stanford)"
    )
    spatial_dims = 2
    input_kind = InputKind.DWI
    data_defaults = DATA_DEFAULTS
    cli_commands = ("mrenhance.tasks.dti_cli",)
    #: the metrics shipping records in a card (beside the baselines')
    metric_keys = (
        "psnr",
        "ssim",
        "sharpness",
        "fa_mae_wm",
        "fa_mae_gm",
        "md_mae_wm",
        "md_mae_gm",
        "md_mae_csf",
        "angle_wm_deg",
    )

    def data_config(self, data: dict[str, Any], source: str = "recipe") -> dict[str, Any]:
        cfg = super().data_config(data, source)
        subjects = cfg["subjects"]
        if not isinstance(subjects, dict) or set(subjects) - set(_ROLES):
            raise ConfigError(
                f"{source}: data.subjects: expected {{train, validation, test}} counts"
            )
        cfg["subjects"] = {**DATA_DEFAULTS["subjects"], **subjects}
        if any(not isinstance(v, int) or v < 0 for v in cfg["subjects"].values()):
            raise ConfigError(f"{source}: data.subjects: counts must be integers >= 0")
        factor = cfg["factor"]
        if not isinstance(factor, int) or factor < 2 or factor & (factor - 1):
            raise ConfigError(f"{source}: data.factor: expected a power of 2 >= 2, got {factor!r}")
        shape = cfg["shape"]
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) != 3
            or any(not isinstance(n, int) or n < 1 for n in shape)
            or shape[0] % factor
            or shape[1] % factor
        ):
            raise ConfigError(
                f"{source}: data.shape: expected 3 sizes, x and y multiples of {factor}; "
                f"got {shape!r}"
            )
        if cfg["downsample"] not in ("area", "kspace"):
            raise ConfigError(
                f"{source}: data.downsample: 'area' or 'kspace', got {cfg['downsample']!r}"
            )
        try:
            rule = Normalisation.from_dict(cfg["normalise"], "data")
        except InputError as err:
            raise ConfigError(f"{source}: {str(err).replace('preprocessing.', '')}") from err
        cfg["normalise"] = rule.to_dict()
        cfg["shape"] = list(shape)
        cfg["snr"] = [float(v) for v in np.atleast_1d(cfg["snr"])][:2]
        return cfg

    def preprocessing(self, cfg: dict[str, Any], subjects: Sequence[DWISubject]) -> dict[str, Any]:
        voxel = [float(cfg["voxel_mm"]) * cfg["factor"]] * 2 + [float(cfg["voxel_mm"])]
        return {"normalisation": dict(cfg["normalise"]), "voxel_size_mm": voxel}

    def training_data(
        self,
        data: dict[str, Any],
        patch_size: Sequence[int],
        *,
        seed: int = 0,
        source: str = "recipe",
    ) -> TrainingData:
        """2D patch pairs (LR, 4x HR) / input_scale from every slice of every volume."""
        from mrenhance.engine.augment import build_augment
        from mrenhance.engine.patches import PatchDataset

        cfg = self.data_config(data, source)
        if len(patch_size) != 2:
            raise ConfigError(f"{source}: train.patch_size: the dti task trains on 2D patches")
        subjects = load_subjects(cfg, "train")
        if not subjects:
            raise ConfigError(f"{source}: data.subjects.train: need at least one subject")
        f = int(cfg["factor"])
        inputs, targets, masks = [], [], []
        for s in subjects:
            x, y, z, n = s.lr.shape
            scale = np.float32(s.input_scale)
            # (x, y, z, n) -> (x, y, z * n): every (slice, volume) is one 2D sample
            inputs.append((s.lr / scale).reshape(x, y, z * n))
            targets.append((s.hr / scale).reshape(f * x, f * y, z * n))
            lr_brain = s.regions["brain"].reshape(x, f, y, f, z).any(axis=(1, 3))
            masks.append(np.repeat(lr_brain[..., None], n, axis=-1).reshape(x, y, z * n))
        dataset = PatchDataset(
            inputs,
            targets,
            tuple(int(p) for p in patch_size),
            mask=masks,
            min_mask_fraction=float(cfg["min_mask_fraction"]),
            seed=seed,
            augment=build_augment(cfg["augment"]) if cfg["augment"] else None,
            slice_axis=2,
            scale=(f, f, 1),
        )
        validation = load_subjects(cfg, "validation")
        rule = Normalisation.from_dict(cfg["normalise"], source)

        def validate(model) -> dict[str, float]:
            if not validation:
                return {}
            from mrenhance.enhance_api import Enhancer

            # choice: the central 2 slices, b0 and every 4th volume: enough to rank
            # checkpoints at a few seconds per validation
            s = central_slices(validation[0], 2)
            keep = np.flatnonzero((np.arange(s.bvals.size) % 4 == 0) | (s.bvals <= 50))
            sub = replace(
                s, hr=s.hr[..., keep], lr=s.lr[..., keep], bvals=s.bvals[keep], bvecs=s.bvecs[keep]
            )
            enhancer = Enhancer(
                model,
                self,
                normalisation=rule,
                inference={
                    "patch_size": [64, 64],
                    "overlap": [32, 32],
                    "scale": [f, f, 1],
                    "slice_axis": 2,
                },
                scale=validation[0].input_scale,
            )
            rows = evaluate_subject({"model": network_method(enhancer)}, sub, tensors=False)
            return {k: rows[0][k] for k in ("psnr", "ssim")}

        return TrainingData(dataset, validate, subjects)

    # -- one input ------------------------------------------------------------------------
    def check_input(self, volume: Volume) -> None:
        from mrenhance.io.validate import check_series

        source = require_ndim(volume, 4, "dti models need a 4D DWI series (x, y, z, n)")
        check_series(volume, "dwi", source)
        if not (np.asarray(volume.meta["bvals"]) <= 50).any():
            raise InputError(f"{source}: the DWI series has no b = 0 volume (b <= 50 s/mm^2)")
        require_finite(volume.data, source)

    def prepare(
        self, volume: Volume, card: Any = None, *, scale: float | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Divide every volume by one scale: the card's rule on the mean b0 image.

        Returns (x, y, z, n) float32 and ``{"scale", "normalisation"}``.
        """
        from mrenhance.preprocess import intensity_scale
        from mrenhance.tasks.sr_t1 import _rule_of

        self.check_input(volume)
        rule = _rule_of(card)
        if scale is None:
            scale = intensity_scale(mean_b0(volume.data, volume.meta["bvals"]), rule)
        array = (volume.data / np.float32(scale)).astype(np.float32)
        return array, {"scale": float(scale), "normalisation": rule.to_dict()}

    def run_network(self, model: Any, array: np.ndarray, plan: Any, **options: Any) -> np.ndarray:
        """The 2D network on every slice of every volume: (x, y, z, n) -> (sx x, sy y, z, n).

        The series is viewed as (x, y, z * n), so one tiled inference over axial slices
        (``plan``, slice axis 2) covers it; tiles larger than a slice shrink to the slice
        (choice: no padding work on small DWI matrices; a slice in one tile is exact).
        """
        from mrenhance.engine.infer import infer

        if not plan.is_2d or plan.slice_axis != 2:
            raise InputError("dti: the model card's inference must be a 2D plan with slice_axis 2")
        data = array if array.ndim == 4 else array[..., None]
        x, y, z, n = data.shape
        patch = tuple(min(p, m) for p, m in zip(plan.patch, (x, y), strict=True))
        overlap = tuple(min(o, p - 1) for o, p in zip(plan.overlap, patch, strict=True))
        plan = replace(plan, patch=patch, overlap=overlap)
        out = infer(model, np.ascontiguousarray(data).reshape(x, y, z * n), plan, **options)
        sx, sy, _ = plan.scale
        out = out.reshape(sx * x, sy * y, z, n)
        return out if array.ndim == 4 else out[..., 0]

    def restore(self, array: np.ndarray, context: dict[str, Any], volume: Volume) -> Volume:
        """Undo :meth:`prepare`'s scale; the output grid's affine is scaled to its shape
        (FOV kept, :func:`~mrenhance.engine.infer.scaled_affine`); b-values/b-vectors kept."""
        from mrenhance.engine.infer import scaled_affine

        data = np.clip(array * np.float32(context["scale"]), 0, None).astype(np.float32)
        shape_in = volume.shape[:3]
        factors = []
        for a, b in zip(data.shape[:3], shape_in, strict=True):
            if a % b:
                raise InputError(
                    f"dti: output shape {data.shape} is not a multiple of {volume.shape}"
                )
            factors.append(a // b)
        out = volume.with_data(data)
        out.affine = scaled_affine(volume.affine, shape_in, factors)
        out.meta["voxel_size"] = out.voxel_size
        if data.ndim == 3:
            out.meta.pop("bvals", None)
            out.meta.pop("bvecs", None)
        return out

    # -- protocol -------------------------------------------------------------------------
    def baselines(self, data: dict[str, Any] | None = None) -> dict[str, Method]:
        return {"bicubic": interpolation_method("cubic")}

    def network_method(self, enhancer: Any) -> Method:
        return network_method(enhancer)

    def evaluate(
        self,
        methods: dict[str, Method],
        *,
        data: dict[str, Any] | None = None,
        which: str = "test",
        subjects: Sequence[DWISubject] | None = None,
    ) -> list[dict[str, Any]]:
        """Every method on the ``which`` subjects' central slices; rows averaged over subjects.

        ``which``: "test" or "validation" (simulated), "real" (dipy's ``small_64D``) or
        "real_b0" (dipy's ``S0_10slices``, image metrics only).
        """
        cfg = self.data_config(data or {})
        if subjects is None:
            if which in ("real", "real_b0"):
                sample = {"real": "dipy_small_64d", "real_b0": "dipy_s0_10slices"}[which]
                subjects = [real_subject(sample, cfg["factor"])]
            else:
                subjects = [
                    central_slices(s, int(cfg["test_slices"])) for s in load_subjects(cfg, which)
                ]
        if not subjects:
            raise ConfigError(f"data.subjects.{which}: no subjects to evaluate")
        return mean_rows([evaluate_subject(methods, s) for s in subjects])

    def protocol(self, data: dict[str, Any] | None = None) -> str:
        cfg = self.data_config(data or {})
        n = cfg["subjects"]["test"]
        return (
            f"{n} simulated test subjects (seed {cfg['seed']}, never trained on), "
            f"{cfg['voxel_mm']} mm, central {cfg['test_slices']} axial slices, "
            f"{cfg['gradients']} table; LR = Gaussian noise {cfg['lr_noise']} x ref then "
            f"{cfg['factor']}x {cfg['downsample']} downsampling per slice; per-slice PSNR/SSIM "
            f"over every slice of every volume, / {REFERENCE_PERCENTILE}th pct of HR mean b0 "
            "in the brain, data_range 1; FA/MD (1e-3 mm^2/s)/V1 errors vs the HR DWIs' "
            "dipy WLS fit, regions = tissue fraction > 0.5"
        )

    def example_input(self, rng: np.random.Generator) -> Volume:
        data = np.zeros((8, 8, 3, 4), np.float32)
        data[2:6, 2:6] = 100 + 20 * rng.random((4, 4, 3, 4), dtype=np.float32)
        data[..., 1:] *= 0.4
        meta = {
            "source": "example",
            "bvals": np.array([0.0, 1000.0, 1000.0, 1000.0]),
            "bvecs": np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float),
        }
        return Volume(data, np.diag([8.0, 8.0, 2.0, 1.0]), meta)

    # -- demo -----------------------------------------------------------------------------
    def demo(
        self,
        out: Any,
        enhancers: dict[str, Any],
        *,
        full: bool = False,
        say: Callable[[str], None] = print,
    ) -> dict[str, Any]:
        """LR, bicubic, each network and HR of one simulated test subject, with FA maps.

        Writes ``dti/metrics.{md,csv,json}``, ``dti/figure.png`` and FA NIfTIs; ``full``
        evaluates every test subject instead of the first one's central slices.
        """
        from pathlib import Path

        from mrenhance.diffusion import fit_tensors
        from mrenhance.io import save
        from mrenhance.report.tables import write_table

        out = Path(out) / "dti"
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.data_config({})
        say("simulating a DWI test subject and degrading it (noise + 4x per slice, Sec. 3)")
        tests = load_subjects(cfg if full else {**cfg, "subjects": {"test": 1}}, "test")
        subject = central_slices(tests[0], int(cfg["test_slices"]))
        methods: dict[str, Method] = {"bicubic": interpolation_method("cubic")}
        for name in sorted(enhancers, key=lambda n: ("gan" in n, n)):
            methods[name] = network_method(enhancers[name])
        results = {"LR (nearest)": interpolation_method("nearest")(subject)}
        seconds = {}
        for name, method in methods.items():
            say(f"running {name} on {subject.lr.shape} ...")
            t0 = time.perf_counter()
            results[name] = method(subject)
            seconds[name] = time.perf_counter() - t0
        results["HR (reference)"] = subject.hr
        # the first subject's outputs are scored as computed (the protocol's own function)
        per_subject = [evaluate_subject({k: (lambda s, a=results[k]: a) for k in methods}, subject)]
        for row in per_subject[0]:
            row["seconds"] = round(seconds[row["method"]], 2)
        for s in tests[1:]:
            per_subject.append(
                evaluate_subject(methods, central_slices(s, int(cfg["test_slices"])))
            )
        rows = mean_rows(per_subject)
        tables = write_table(rows, out / "metrics", title="DTI: simulated test subject(s)")
        brain = subject.regions["brain"]
        fa = {
            k: fit_tensors(v, subject.bvals, subject.bvecs, brain)["fa"] for k, v in results.items()
        }
        files = {}
        hr_vol = subject.hr_volume()
        for name, arr in fa.items():
            fname = "fa_" + name.split(" ")[0].lower().replace("(", "").replace(")", "") + ".nii.gz"
            files[name] = save(
                hr_vol.with_data(arr, step=f"demo: FA of {name}"), out / fname, overwrite=True
            )
        figure = _demo_figure(results, fa, subject, out / "figure.png")
        return {
            "heading": "DWI super-resolution 4x and its tensors (Mubarka et al.)",
            "text": "Per-slice PSNR/SSIM and FA/MD/V1 errors against HR: " + self.protocol(),
            "table_rows": rows,
            "images": [figure],
            "files": files,
            "tables": tables,
        }


def _demo_figure(
    results: dict[str, np.ndarray], fa: dict[str, np.ndarray], subject: DWISubject, path: Any
) -> Any:
    """Row 1: one DW volume's central slice per method; row 2: their FA maps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    z = subject.hr.shape[2] // 2
    vol = int(np.flatnonzero(subject.bvals > 50)[0])
    names = list(results)
    fig = Figure(figsize=(2.6 * len(names), 5.6))
    FigureCanvasAgg(fig)
    vmax = float(np.percentile(subject.hr[:, :, z, vol], 99.5)) or 1.0
    for i, name in enumerate(names):
        ax = fig.add_subplot(2, len(names), i + 1)
        ax.imshow(results[name][:, :, z, vol].T, cmap="gray", origin="lower", vmin=0, vmax=vmax)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        ax = fig.add_subplot(2, len(names), len(names) + i + 1)
        ax.imshow(fa[name][:, :, z].T, cmap="gray", origin="lower", vmin=0, vmax=1)
        ax.set_title(f"FA: {name}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"DWI volume {vol} (b={subject.bvals[vol]:.0f}) and FA, axial slice {z}")
    fig.tight_layout()
    fig.savefig(str(path), dpi=90)
    return path


TASK = DTITask()
