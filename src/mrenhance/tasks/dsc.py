"""DSC perfusion -> CBV with the stU-Net (Veron Vialard et al. 2021), as a Task.

What an input and a target are
    input: a 4D DSC series (x, y, z, t) with its timing (``meta["tr_s"]``); output: a 3D CBV
    map on the input's grid. Training pairs are simulated (:mod:`mrenhance.simulate.dsc` on
    synthetic subjects with tumours): the target is the classical pipeline's full-dose CBV
    (oSVD, :mod:`mrenhance.baselines.perfusion`; the paper's Verbena role, Sec. 4.2) or,
    with ``data.target: truth``, the simulator's true CBV.

Preprocessing (Sec. 4.2; one code path for training, evaluation and ``enhance``)
    an automatic brain mask (head mask of the mean of the first five frames; choice), a crop
    to the square prism tightly around it, each slice resampled to ``slice_size`` squared
    (paper: 256), frames standardised with the brain statistics of the first five frames
    (mean and std over brain voxels), clipped to [-5, 5]. CBV targets are standardised by
    their own brain statistics and clipped alike. ``restore`` undoes the resampling and the
    crop, and maps the standardised CBV back with the training targets' mean brain
    statistics (recorded in the card): absolute values are a population calibration in the
    units of the training target (for ``target: osvd`` our classical CBV, whose scale
    carries 1 / the arterial blood fraction of the AIF voxels, ~17x ml/100 g here);
    relative values (rCBV, e.g. against normal-appearing WM) are the network's.

Low dose (Sec. 2, Eq. 1)
    :func:`mrenhance.simulate.dsc.low_dose_eq1` on the full-dose series, at half and quarter
    dose, exactly as the paper; training mixes full, half and quarter dose (choice: one
    network for all doses, the paper does not say).

Evaluation (Table 1)
    per test subject, dose and reference: L1, L2 over the brain, t-L1, t-L2 over the tumour
    (necrotic core + enhancing rim), 2D SSIM (data range 10) over the brain slices; every map
    is first standardised by its own brain mean and std and clipped to [-5, 5] (the paper's
    basis, Sec. 4.2), so absolute scale does not enter. References: (a) the classical
    full-dose oSVD CBV (the paper's), (b) the true CBV (which the paper could not have).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import ConfigError, InputError
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
    "subjects": {"train": 16, "validation": 2, "test": 4},
    "seed": 0,
    "voxel_mm": 3.0,
    "slices": 8,
    "slice_size": 64,
    "n_frames": 48,
    "tr_s": 1.0,
    "te_s": 0.03,
    "snr": [30.0, 60.0],
    "leakage_k2_per_s": [0.0, 0.0],
    "doses": [1.0, 0.5, 0.25],
    "eq1": {"window": 5, "n_baseline": 5},
    "target": "osvd",
    "strip_stride": 8,
    "clip": 5.0,
    "baseline_frames": 5,
}

TARGETS = ("osvd", "truth")
EVAL_DOSES = (1.0, 0.5, 0.25)
METRICS = ("l1", "l2", "t_l1", "t_l2", "ssim")
_SEED_OFFSET = {"train": 0, "validation": 100_000, "test": 200_000}


# ---------------------------------------------------------------------------- preprocessing
def brain_mask_of_series(series: np.ndarray, baseline_frames: int = 5) -> np.ndarray:
    """Automatic brain mask of a (x, y, z, t) DSC series: the head mask of the mean of the
    first ``baseline_frames`` frames (fat-suppressed EPI: the scalp is dark; choice)."""
    from mrenhance.preprocess import head_mask

    return head_mask(np.asarray(series[..., :baseline_frames], np.float32).mean(axis=-1))


def _interp_matrix(n_in: int, start: float, length: float, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation: output pixel i samples input coordinate
    ``start + (i + 0.5) * length / n_out - 0.5`` (edges clamped)."""
    pos = start + (np.arange(n_out) + 0.5) * length / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] += 1 - frac
    w[np.arange(n_out), hi] += frac
    return w


def _inverse_matrix(n_in: int, start: float, length: float, n_out: int) -> np.ndarray:
    """(n_in, n_out): input pixel j back from the resampled axis (0 outside the crop)."""
    u = (np.arange(n_in) + 0.5 - start) * n_out / length - 0.5
    inside = (u >= -0.5) & (u <= n_out - 0.5)
    u = np.clip(u, 0, n_out - 1)
    lo = np.floor(u).astype(int)
    hi = np.minimum(lo + 1, n_out - 1)
    frac = u - lo
    w = np.zeros((n_in, n_out))
    rows = np.arange(n_in)
    w[rows, lo] += (1 - frac) * inside
    w[rows, hi] += frac * inside
    return w


@dataclass
class Crop:
    """The square in-plane crop of Sec. 4.2 and its resampling to ``size`` x ``size``."""

    start: tuple[float, float]
    length: float
    size: int
    shape: tuple[int, int]

    @classmethod
    def around(cls, mask: np.ndarray, size: int) -> Crop:
        coords = np.argwhere(mask.any(axis=2))
        if coords.size == 0:
            coords = np.array([[0, 0], [mask.shape[0] - 1, mask.shape[1] - 1]])
        lo, hi = coords.min(0), coords.max(0) + 1
        length = float(max(hi - lo))
        centre = (lo + hi) / 2.0
        start = (float(centre[0] - length / 2), float(centre[1] - length / 2))
        return cls(start, length, int(size), (int(mask.shape[0]), int(mask.shape[1])))

    def forward(self, data: np.ndarray) -> np.ndarray:
        """(x, y, ...) -> (size, size, ...) float32."""
        wx = _interp_matrix(self.shape[0], self.start[0], self.length, self.size)
        wy = _interp_matrix(self.shape[1], self.start[1], self.length, self.size)
        d = np.asarray(data, dtype=np.float32)
        out = np.tensordot(wx.astype(np.float32), d, axes=(1, 0))
        out = np.moveaxis(np.tensordot(wy.astype(np.float32), out, axes=(1, 1)), 0, 1)
        return np.ascontiguousarray(out, dtype=np.float32)

    def inverse(self, data: np.ndarray) -> np.ndarray:
        """(size, size, ...) -> (x, y, ...) float32 (0 outside the crop)."""
        wx = _inverse_matrix(self.shape[0], self.start[0], self.length, self.size)
        wy = _inverse_matrix(self.shape[1], self.start[1], self.length, self.size)
        d = np.asarray(data, dtype=np.float32)
        out = np.tensordot(wx.astype(np.float32), d, axes=(1, 0))
        out = np.moveaxis(np.tensordot(wy.astype(np.float32), out, axes=(1, 1)), 0, 1)
        return np.ascontiguousarray(out, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"start": list(self.start), "length": self.length, "size": self.size}


def standardise(values: np.ndarray, mask: np.ndarray, clip: float | None = 5.0) -> np.ndarray:
    """(values - brain mean) / brain std, clipped to [-clip, clip] (Sec. 4.2). (x, y, z)."""
    v = np.asarray(values, dtype=np.float32)
    inside = v[np.asarray(mask, bool)]
    mu = float(inside.mean()) if inside.size else 0.0
    sd = float(inside.std()) if inside.size else 1.0
    out = (v - mu) / (sd if sd > 0 else 1.0)
    return np.clip(out, -clip, clip) if clip else out


def standardise_series(
    series: np.ndarray, mask: np.ndarray, baseline_frames: int = 5
) -> tuple[np.ndarray, float, float]:
    """Frames standardised by the brain statistics of the first ``baseline_frames`` frames
    (Sec. 4.2), not clipped. series (..., t) with mask (...). Returns (array, mean, std)."""
    base = np.asarray(series[..., :baseline_frames], np.float32)[np.asarray(mask, bool)]
    mu = float(base.mean()) if base.size else 0.0
    sd = float(base.std()) if base.size else 1.0
    sd = sd if sd > 0 else 1.0
    return ((np.asarray(series, np.float32) - mu) / sd).astype(np.float32), mu, sd


def _dsc_rules(card: Any) -> dict[str, Any]:
    """The card's ``preprocessing.dsc`` (or the defaults for a bare Normalisation / None)."""
    pre = getattr(card, "preprocessing", None)
    if pre is None and isinstance(card, dict):
        pre = card.get("preprocessing")
    rules = dict((pre or {}).get("dsc") or {})
    return {
        "slice_size": int(rules.get("slice_size", DATA_DEFAULTS["slice_size"])),
        "clip": float(rules.get("clip", DATA_DEFAULTS["clip"])),
        "baseline_frames": int(rules.get("baseline_frames", DATA_DEFAULTS["baseline_frames"])),
        "cbv_mean": float(rules.get("cbv_mean", 0.0)),
        "cbv_std": float(rules.get("cbv_std", 1.0)),
        "tr_s": float(rules["tr_s"]) if rules.get("tr_s") else None,
    }


# choice: a network reads the bolus frame by frame, so a series sampled more than 2x
# faster or slower than its training series is refused rather than silently misread
MAX_FRAME_INTERVAL_RATIO = 2.0


def check_frame_interval(volume: Volume, rules: dict[str, Any], model: str = "the model") -> None:
    """Refuse a series whose frame interval is more than 2x from the training series'.

    Nothing is refused when either is unknown (a NIfTI without a TR; an older card).
    """
    from mrenhance.io.validate import dsc_frame_interval

    trained, tr = rules.get("tr_s"), dsc_frame_interval(volume)
    if trained is None or tr is None:
        return
    if not 1 / MAX_FRAME_INTERVAL_RATIO <= tr / trained <= MAX_FRAME_INTERVAL_RATIO:
        raise InputError(
            f"{volume.meta.get('source', 'input')}: frame interval {tr:g} s, but {model} was "
            f"trained on series with {trained:g} s frames (more than "
            f"{MAX_FRAME_INTERVAL_RATIO:g}x apart; the network reads the bolus frame by frame)"
        )


def prepare_series(
    series: np.ndarray, slice_size: int, clip: float = 5.0, baseline_frames: int = 5
) -> tuple[np.ndarray, np.ndarray, Crop]:
    """Sec. 4.2 on a (x, y, z, t) series: mask, square crop, resample, standardise.

    Returns (unclipped standardised (size, size, z, t) float32, the resampled mask
    (size, size, z) bool, the :class:`Crop`). Clip with ``np.clip(a, -clip, clip)``.
    """
    mask = brain_mask_of_series(series, baseline_frames)
    crop = Crop.around(mask, slice_size)
    small = crop.forward(series)
    small_mask = crop.forward(mask.astype(np.float32)) > 0.5
    standard, _, _ = standardise_series(small, small_mask, baseline_frames)
    return standard, small_mask, crop


# ---------------------------------------------------------------------------- subjects
@dataclass
class DSCCase:
    """One simulated subject: the full-dose series, its truth and the classical maps.

    series : (x, y, z, t) full-dose signal. tr_s, te_s : timing. cbv_true : (x, y, z).
    brain, tumour, aif_mask : (x, y, z) bool. affine : (4, 4). cbv_osvd : full-dose oSVD CBV.
    """

    name: str
    series: np.ndarray
    tr_s: float
    te_s: float
    cbv_true: np.ndarray
    brain: np.ndarray
    tumour: np.ndarray
    aif_mask: np.ndarray
    affine: np.ndarray
    cbv_osvd: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def volume(self, dose: float = 1.0, eq1: dict[str, Any] | None = None) -> Volume:
        """The series at ``dose`` (Eq. 1 below 1) as a Volume with its timing."""
        data = self.series
        if dose < 1.0:
            from mrenhance.simulate.dsc import low_dose_eq1

            data = low_dose_eq1(data, dose, **(eq1 or DATA_DEFAULTS["eq1"]))
        meta = {"source": f"{self.name} (dose {dose:g})", "tr_s": self.tr_s, "te_s": self.te_s}
        return Volume(data, self.affine, meta)


def _draw_range(rng: np.random.Generator, value: Any) -> float:
    if isinstance(value, (list, tuple)):
        return float(rng.uniform(float(value[0]), float(value[1])))
    return float(value)


def classical_cbv(
    series: np.ndarray, tr_s: float, te_s: float, brain: np.ndarray, aif_mask: np.ndarray
) -> np.ndarray:
    """The classical pipeline's CBV (oSVD pipeline, given AIF mask; ml/100 g up to the AIF
    voxels' blood fraction)."""
    from mrenhance.baselines.perfusion import perfusion_maps_from_signal

    return perfusion_maps_from_signal(
        series, tr_s, te_s, brain_mask=brain, aif_mask=aif_mask, method="osvd"
    ).cbv


def make_case(cfg: dict[str, Any], split: str, index: int) -> DSCCase:
    """Subject ``index`` of ``split``: deterministic in (seed, split, index)."""
    from mrenhance.simulate import subjects as S
    from mrenhance.simulate.dsc import DSCProtocol, simulate_dsc

    seed = int(cfg["seed"]) + _SEED_OFFSET[split] + index
    rng = np.random.default_rng(seed)
    subject = S.draw_subject(rng, voxel_mm=float(cfg["voxel_mm"]), lesions=("tumour",))
    n = int(cfg["slices"])
    tumour = subject.lesion_masks.get("tumour")
    if tumour is not None and tumour.any():
        zc = int(round(np.argwhere(tumour).mean(axis=0)[2]))
    else:
        zc = int(round(np.argwhere(subject.brain_mask).mean(axis=0)[2]))
    z0 = int(np.clip(zc - n // 2, 0, subject.brain_mask.shape[2] - n))
    protocol = DSCProtocol(
        tr_s=float(cfg["tr_s"]),
        te_s=float(cfg["te_s"]),
        n_frames=int(cfg["n_frames"]),
        snr=_draw_range(rng, cfg["snr"]),
        leakage_k2_per_s=_draw_range(rng, cfg["leakage_k2_per_s"]),
    )
    sim = simulate_dsc(subject, rng, protocol, z_range=(z0, z0 + n))
    tumour_mask = sim.masks.get("tumour", np.zeros_like(sim.brain_mask))
    case = DSCCase(
        name=f"{split}-{index:03d}",
        series=sim.signal,
        tr_s=protocol.tr_s,
        te_s=protocol.te_s,
        cbv_true=sim.cbv,
        brain=sim.brain_mask,
        tumour=tumour_mask,
        aif_mask=sim.aif_mask,
        affine=sim.affine,
        extra={"snr": protocol.snr, "seed": seed},
    )
    case.cbv_osvd = classical_cbv(case.series, case.tr_s, case.te_s, case.brain, case.aif_mask)
    return case


def make_cases(cfg: dict[str, Any], split: str) -> list[DSCCase]:
    return [make_case(cfg, split, i) for i in range(int(cfg["subjects"][split]))]


# ---------------------------------------------------------------------------- training data
class StripDataset:
    """Strips of (slice, x-start, dose): ``{"inputs": (T, w, size), "target": (1, w, size)}``.

    Sec. 3: strips sampled regularly with stride ``stride`` (8) along x, the whole slice
    along y; the dose is drawn among ``doses`` (Eq. 1 applied to the standardised full-dose
    strip, which commutes with the affine standardisation and the spatial resampling).
    Deterministic in the index.
    """

    def __init__(
        self,
        inputs: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        *,
        strip: int,
        stride: int,
        doses: Sequence[float],
        eq1: dict[str, Any],
        clip: float,
    ) -> None:
        self.inputs, self.targets = list(inputs), list(targets)
        self.strip, self.doses, self.eq1, self.clip = int(strip), list(doses), dict(eq1), clip
        self.items = []
        for s, arr in enumerate(self.inputs):
            size, _, nz, _ = arr.shape
            starts = list(range(0, size - self.strip + 1, int(stride)))
            for z in range(nz):
                for x0 in starts:
                    for d in range(len(self.doses)):
                        self.items.append((s, z, x0, d))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        from mrenhance.simulate.dsc import low_dose_eq1

        s, z, x0, d = self.items[int(i)]
        strip = self.inputs[s][x0 : x0 + self.strip, :, z, :]  # (w, size, t)
        dose = self.doses[d]
        if dose < 1.0:
            strip = low_dose_eq1(strip, dose, **self.eq1)
        strip = np.clip(strip, -self.clip, self.clip)
        target = self.targets[s][x0 : x0 + self.strip, :, z]
        return {
            "inputs": np.ascontiguousarray(np.moveaxis(strip, -1, 0), dtype=np.float32),
            "target": np.ascontiguousarray(target[None], dtype=np.float32),
        }


# ---------------------------------------------------------------------------- evaluation
Method = Callable[[DSCCase, float], np.ndarray]
"""A CBV method: (case, dose) -> CBV (x, y, z) in any units (scored after standardising)."""


def score_maps(
    estimate: np.ndarray, reference: np.ndarray, brain: np.ndarray, tumour: np.ndarray
) -> dict[str, float]:
    """Table 1's metrics on the standardised basis (each map by its own brain statistics)."""
    from mrenhance.metrics import ssim

    a = standardise(estimate, brain)
    b = standardise(reference, brain)
    diff = a - b
    out = {
        "l1": float(np.abs(diff[brain]).mean()),
        "l2": float((diff[brain] ** 2).mean()),
        "t_l1": float(np.abs(diff[tumour]).mean()) if tumour.any() else float("nan"),
        "t_l2": float((diff[tumour] ** 2).mean()) if tumour.any() else float("nan"),
    }
    a0, b0 = np.where(brain, a, 0), np.where(brain, b, 0)
    keep = brain.any(axis=(0, 1))
    out["ssim"] = float(
        ssim(a0[..., keep], b0[..., keep], data_range=10.0, mask=brain[..., keep], spatial_dims=2)
    )
    return out


def evaluate_cases(
    methods: dict[str, Method],
    cases: Sequence[DSCCase],
    *,
    doses: Sequence[float] = EVAL_DOSES,
    references: Sequence[str] = ("osvd", "truth"),
    per_subject: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Rows {"method", "dose", "reference", metric mean and ``<metric>_std``, "n",
    "seconds"} over ``cases``; oSVD at full dose against itself is n/a (None)."""
    rows = []
    values: dict[tuple[str, float, str], list[dict[str, float]]] = {}
    seconds: dict[tuple[str, float], float] = {}
    for case in cases:
        refs = {"osvd": case.cbv_osvd, "truth": case.cbv_true}
        for dose in doses:
            for name, method in methods.items():
                t0 = time.perf_counter()
                cbv = method(case, dose)
                seconds[(name, dose)] = seconds.get((name, dose), 0.0) + time.perf_counter() - t0
                for ref in references:
                    if ref == "osvd" and dose == 1.0 and name == "oSVD":
                        continue
                    m = score_maps(cbv, refs[ref], case.brain, case.tumour)
                    values.setdefault((name, dose, ref), []).append(m)
                    if per_subject is not None:
                        per_subject.append(
                            {
                                "subject": case.name,
                                "method": name,
                                "dose": dose,
                                "reference": ref,
                                **m,
                            }
                        )
    for ref in references:
        for dose in doses:
            for name in methods:
                got = values.get((name, dose, ref))
                row: dict[str, Any] = {"method": name, "dose": dose, "reference": ref}
                for k in METRICS:
                    arr = np.array([g[k] for g in got]) if got else None
                    row[k] = None if arr is None else round(float(np.nanmean(arr)), 5)
                    row[f"{k}_std"] = None if arr is None else round(float(np.nanstd(arr)), 5)
                row["n"] = len(got) if got else 0
                row["seconds"] = round(seconds.get((name, dose), 0.0) / max(len(cases), 1), 2)
                rows.append(row)
    return rows


def osvd_method(eq1: dict[str, Any] | None = None) -> Method:
    """The classical pipeline (oSVD, the subject's AIF mask as the paper's vessel masks)."""

    def run(case: DSCCase, dose: float) -> np.ndarray:
        if dose == 1.0 and case.cbv_osvd is not None:
            return case.cbv_osvd
        vol = case.volume(dose, eq1)
        return classical_cbv(vol.data, case.tr_s, case.te_s, case.brain, case.aif_mask)

    return run


def network_method(enhancer: Any, eq1: dict[str, Any] | None = None) -> Method:
    """An Enhancer as a :data:`Method`: ``enhance``'s code path on the (low-dose) series."""

    def run(case: DSCCase, dose: float) -> np.ndarray:
        return enhancer(case.volume(dose, eq1)).data

    return run


# ---------------------------------------------------------------------------- the task
@register_task
class DSCTask(Task):
    """DSC perfusion series -> CBV map (Veron Vialard et al. 2021, stU-Net)."""

    name = "dsc"
    description = "DSC perfusion series (x, y, z, t) -> CBV map (x, y, z), low dose included"
    paper = "Veron Vialard et al. 2021, stU-Net (hal-03128610)"
    spatial_dims = 2
    input_kind = InputKind.SERIES_4D
    adapts_voxel_size = True  # prepare: each slice is resampled to the training matrix
    data_defaults = DATA_DEFAULTS
    cli_commands = ("mrenhance.tasks.dsc_cli",)
    metric_keys = METRICS

    def data_config(self, data: dict[str, Any], source: str = "recipe") -> dict[str, Any]:
        cfg = super().data_config(data, source)
        subjects = cfg["subjects"]
        if not isinstance(subjects, dict) or set(subjects) - set(_SEED_OFFSET):
            raise ConfigError(f"{source}: data.subjects: expected {{train, validation, test}}")
        cfg["subjects"] = {**DATA_DEFAULTS["subjects"], **subjects}
        if cfg["target"] not in TARGETS:
            raise ConfigError(f"{source}: data.target: use one of {TARGETS}, got {cfg['target']!r}")
        for key in ("slices", "slice_size", "n_frames", "strip_stride"):
            if not isinstance(cfg[key], int) or cfg[key] < 1:
                raise ConfigError(f"{source}: data.{key}: expected a positive integer")
        if int(cfg["n_frames"]) < 10:
            raise ConfigError(f"{source}: data.n_frames: at least 10 frames")
        doses = cfg["doses"]
        if not isinstance(doses, list) or not doses or any(not 0 < float(d) <= 1 for d in doses):
            raise ConfigError(f"{source}: data.doses: a list of fractions in (0, 1]")
        return cfg

    def preprocessing(self, cfg: dict[str, Any], subjects: Sequence[Any]) -> dict[str, Any]:
        """No percentile rule: the series and CBV standardisation of Sec. 4.2, and the
        training targets' mean brain CBV statistics (restore's calibration)."""
        stats = [s for s in subjects if isinstance(s, dict)]
        mean = float(np.mean([s["cbv_mean"] for s in stats])) if stats else 0.0
        std = float(np.mean([s["cbv_std"] for s in stats])) if stats else 1.0
        voxel = [float(cfg["voxel_mm"])] * 3
        return {
            "normalisation": {"method": "none", "percentile": 99.5, "mask": "all"},
            "voxel_size_mm": voxel,
            "dsc": {
                "slice_size": int(cfg["slice_size"]),
                "clip": float(cfg["clip"]),
                "baseline_frames": int(cfg["baseline_frames"]),
                "cbv_mean": round(mean, 5),
                "cbv_std": round(std, 5),
                "target": cfg["target"],
                "n_frames": int(cfg["n_frames"]),
                "tr_s": float(cfg["tr_s"]),
            },
        }

    def training_data(
        self,
        data: dict[str, Any],
        patch_size: Sequence[int],
        *,
        seed: int = 0,
        source: str = "recipe",
    ) -> TrainingData:
        """Strip pairs from simulated subjects and a validation function (mean L1 on the
        standardised basis against the target, full and quarter dose)."""
        cfg = self.data_config(data, source)
        strip = int(patch_size[0])
        size, clip, nb = int(cfg["slice_size"]), float(cfg["clip"]), int(cfg["baseline_frames"])
        inputs, targets, stats = [], [], []
        for case in make_cases(cfg, "train"):
            standard, mask, crop = prepare_series(case.series, size, clip, nb)
            target = case.cbv_osvd if cfg["target"] == "osvd" else case.cbv_true
            small = crop.forward(target)
            inside = small[mask]
            stats.append({"cbv_mean": float(inside.mean()), "cbv_std": float(inside.std())})
            inputs.append(standard)
            targets.append(standardise(small, mask, clip))
        dataset = StripDataset(
            inputs,
            targets,
            strip=strip,
            stride=int(cfg["strip_stride"]),
            doses=[float(d) for d in cfg["doses"]],
            eq1=cfg["eq1"],
            clip=clip,
        )
        val_cases = make_cases(cfg, "validation")
        card = {"preprocessing": self.preprocessing(cfg, stats)}
        reference = "osvd" if cfg["target"] == "osvd" else "truth"

        def validate(model) -> dict[str, float]:
            if not val_cases:
                return {}
            from mrenhance.enhance_api import Enhancer

            enhancer = Enhancer(
                model,
                self,
                card=None,
                normalisation=card,
                inference={
                    "patch_size": [strip, size],
                    "overlap": [strip - 4, 0],
                    "blend": "average",
                    "slice_axis": 2,
                },
            )
            rows = evaluate_cases(
                {"model": network_method(enhancer, cfg["eq1"])},
                val_cases,
                doses=(1.0, 0.25),
                references=(reference,),
            )
            return {
                "l1": float(np.mean([r["l1"] for r in rows])),
                "ssim": float(np.mean([r["ssim"] for r in rows])),
            }

        return TrainingData(dataset, validate, stats)

    # -- one input ------------------------------------------------------------------------
    def check_input(self, volume: Volume) -> None:
        from mrenhance.io.validate import check_series

        source = require_ndim(volume, 4, "dsc models need a 4D DSC series (x, y, z, t)")
        check_series(volume, "dsc")
        require_finite(volume.data, source)

    def prepare(
        self, volume: Volume, card: Any = None, *, scale: float | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Sec. 4.2: (x, y, z, t) -> (size, size, z, t) standardised, clipped; the crop in
        the context. ``scale`` is unused (the standardisation is the series' own)."""
        self.check_input(volume)
        rules = _dsc_rules(card)
        check_frame_interval(volume, rules, getattr(card, "name", None) or "the model")
        standard, mask, crop = prepare_series(
            volume.data, rules["slice_size"], rules["clip"], rules["baseline_frames"]
        )
        array = np.clip(standard, -rules["clip"], rules["clip"]).astype(np.float32)
        ctx = {"crop": crop, "mask": mask, "rules": rules, "scale": 1.0}
        return array, ctx

    def restore(self, array: np.ndarray, context: dict[str, Any], volume: Volume) -> Volume:
        """(size, size, z) standardised CBV -> (x, y, z) CBV on the input's grid, in the
        training target's units (see the module docstring)."""
        rules, crop = context["rules"], context["crop"]
        z = np.asarray(array, np.float32)
        if z.ndim == 4:
            z = z[..., 0]
        small = z * np.float32(rules["cbv_std"]) + np.float32(rules["cbv_mean"])
        small = np.where(context["mask"], np.maximum(small, 0), 0).astype(np.float32)
        cbv = crop.inverse(small)
        meta = {k: v for k, v in volume.meta.items() if k not in ("tr_s", "times_s", "te_s")}
        out = Volume(cbv, volume.affine.copy(), meta)
        out.meta["provenance"] = [*meta.get("provenance", []), "dsc: CBV (training units)"]
        return out

    # -- protocol -------------------------------------------------------------------------
    def baselines(self, data: dict[str, Any] | None = None) -> dict[str, Method]:
        cfg = self.data_config(data or {})
        return {"oSVD": osvd_method(cfg["eq1"])}

    def network_method(self, enhancer: Any) -> Method:
        return network_method(enhancer)

    def evaluate(
        self,
        methods: dict[str, Method],
        *,
        data: dict[str, Any] | None = None,
        which: str = "test",
        cases: Sequence[DSCCase] | None = None,
        per_subject: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Table 1: every method at full, half and quarter dose (Eq. 1) on the ``which``
        subjects, against the full-dose oSVD CBV and the true CBV."""
        cfg = self.data_config(data or {})
        cases = cases if cases is not None else make_cases(cfg, which)
        return evaluate_cases(methods, cases, per_subject=per_subject)

    def card_metrics(self, rows: list[dict[str, Any]], name: str) -> tuple[dict, dict]:
        """(the network's, the baselines') card metrics: one entry per dose and reference."""

        def pick(method: str) -> dict[str, Any]:
            return {
                f"{r['reference']}/dose{r['dose']:g}": {k: r[k] for k in METRICS}
                for r in rows
                if r["method"] == method and r["n"]
            }

        methods = sorted({r["method"] for r in rows} - {name})
        return pick(name), {m: pick(m) for m in methods}

    def protocol(self, data: dict[str, Any] | None = None) -> str:
        cfg = self.data_config(data or {})
        return (
            f"{cfg['subjects']['test']} simulated test subjects (seed {cfg['seed']}, "
            f"{cfg['voxel_mm']} mm, {cfg['slices']} slices around the tumour, "
            f"{cfg['n_frames']} frames at TR {cfg['tr_s']} s); doses 1, 1/2, 1/4 by Eq. 1; "
            "every CBV standardised by its own brain mean/std, clipped to [-5, 5]; "
            "L1/L2 over the brain, t-L1/t-L2 over the tumour, 2D SSIM (range 10); "
            "references: full-dose oSVD CBV and true CBV"
        )

    def example_input(self, rng: np.random.Generator) -> Volume:
        from mrenhance.simulate.dsc import DSCProtocol, arterial_input_function

        p = DSCProtocol(n_frames=20, arrival_s=5.0)
        curve = arterial_input_function(p.times_s, p) * 0.03
        data = np.zeros((16, 16, 3, p.n_frames), np.float32)
        base = 1.0 + 0.05 * rng.random((10, 10, 3), dtype=np.float32)
        data[3:13, 3:13] = base[..., None] * np.exp(-p.te_s * 87.0 * curve)[None, None, None]
        return Volume(data, np.diag([3.0, 3.0, 3.0, 1.0]), {"source": "example", "tr_s": 1.0})

    # -- demo -----------------------------------------------------------------------------
    def demo(
        self,
        out: Any,
        enhancers: dict[str, Any],
        *,
        full: bool = False,
        say: Callable[[str], None] = print,
    ) -> dict[str, Any]:
        """Full and quarter dose of one simulated test subject: oSVD, the networks, truth."""
        from pathlib import Path

        from mrenhance.io import save
        from mrenhance.report.tables import write_table

        out = Path(out) / "dsc"
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.data_config({})
        say("simulating a DSC test subject with a tumour (Eq. 1 for the quarter dose)")
        # only the subjects shown (each is a simulation and an oSVD): the first, or all
        n_cases = int(cfg["subjects"]["test"]) if full else 1
        cases = [make_case(cfg, "test", i) for i in range(n_cases)]
        methods: dict[str, Method] = {"oSVD": osvd_method(cfg["eq1"])}
        for name in sorted(enhancers):
            methods[name] = network_method(enhancers[name], cfg["eq1"])
        rows = [
            r
            for r in evaluate_cases(methods, cases, doses=(1.0, 0.25))
            if r["reference"] == "truth"
        ]
        tables = write_table(rows, out / "metrics", title="DSC CBV against the true CBV")
        case = cases[0]
        panels: dict[str, np.ndarray] = {"truth": case.cbv_true}
        files = {}
        for dose in (1.0, 0.25):
            for name, method in methods.items():
                cbv = method(case, dose)
                key = f"{name} (dose {dose:g})"
                panels[key] = cbv
                fname = f"cbv_{name.lower().replace(' ', '_')}_dose{dose:g}.nii.gz"
                files[key] = save(
                    Volume(cbv, case.affine, {"source": key}), out / fname, overwrite=True
                )
        files["truth"] = save(
            Volume(case.cbv_true, case.affine, {"source": "truth"}),
            out / "cbv_truth.nii.gz",
            overwrite=True,
        )
        figure = cbv_figure(panels, case.brain, out / "figure.png", title="DSC: CBV")
        return {
            "heading": "DSC perfusion CBV (Veron Vialard et al. 2021)",
            "text": "Against the true CBV: " + self.protocol(),
            "table_rows": rows,
            "images": [figure],
            "files": files,
            "tables": tables,
        }


def cbv_figure(
    panels: dict[str, np.ndarray], brain: np.ndarray, path: Any, *, title: str = ""
) -> Any:
    """One row of standardised CBV maps (middle slice), each by its own brain statistics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = brain.shape[2] // 2
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.8))
    for ax, (name, cbv) in zip(np.atleast_1d(axes), panels.items(), strict=True):
        img = np.where(brain, standardise(cbv, brain), np.nan)[:, :, z]
        ax.imshow(np.rot90(img), cmap="magma", vmin=-2, vmax=5)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


TASK = DSCTask()
