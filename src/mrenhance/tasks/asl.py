"""ASL CBF denoising, learning from noise: the protocol of Xie et al. 2020 (DWAN), as a Task.

What an input and a target are
    input: the mean CBF map of 10 label/control pairs (Sec. 2.3, segment 1 of 4), an axial
    2D slice of the 2 mm MNI grid (109 x 91 pixels). target: ``ASLDN`` (Xie et al. 2018
    [17]) the pseudo gold standard (40-pair mean after outlier cleaning, Gaussian FWHM 3
    mm); ``LFN`` (the paper's method) the mean of another noisy segment, re-drawn per sample
    among segment 1 -> 2 and 3 -> 4 (and, # choice, their reverses 2 -> 1, 4 -> 3: the
    Noise2Noise roles are symmetric). Subjects are simulated (:mod:`mrenhance.simulate.asl`),
    so every map also has the true CBF.

Inputs ``enhance`` takes (told apart by dimensionality and metadata)
    * a 3D CBF map (x, y, z), any grid: ``ndim == 3``;
    * a 4D series (x, y, z, t): label/control images when the Volume's meta holds
      ``aslcontext`` (a list of BIDS volume types, read by ``io.load`` from the
      ``*_aslcontext.tsv`` beside a ``*_asl.nii.gz``) or ``asl_order`` (``mrenhance enhance
      --asl-order control,label``); otherwise a series of per-pair CBF maps, unless it
      looks like label/control images (:func:`looks_like_label_control`: refused, one
      line). The task computes per-pair CBF (white-paper formula; M0 as BIDS says,
      :func:`asl_m0`: an m0scan volume, the separate ``*_m0scan.nii.gz``, ``M0Estimate``,
      else each control image; PLD and label duration from ``meta["asl"]``, the BIDS
      sidecar, else the paper's 1.5 s / 1.5 s) and their plain mean, the network's input.

Normalisation (one rule, in the card)
    CBF is quantitative: both input and target are divided by a fixed 100 ml/100 g/min
    (``preprocessing.cbf_scale``), never clipped, so high CBF passes through. ``prepare``
    reorients the volume to RAS (axial slices along the last axis), resamples each slice
    to the training pixel size (2 x 2 mm, ``preprocessing.voxel_size_mm``; linear, with a
    Gaussian anti-alias filter when shrinking) and ``restore`` undoes both, so the output
    is on the input's grid with its affine.

Evaluation (Sec. 2.4), per test subject, then mean and std over subjects
    PSNR and SSIM (2D, per slice) inside the brain on the paper's slices (36-60, every
    third), against the pseudo gold standard (the paper's) and against the true CBF,
    data range 100 ml/100 g/min (# choice: the paper does not state it); SNR = mean of a
    GM ROI / std of a WM ROI in slice 50; GM/WM contrast = mean GM / mean WM over the
    paper's slices (ROIs: GM fraction > 0.7, WM > 0.95, outside any hypo-perfused
    territory). Networks run through :class:`mrenhance.enhance_api.Enhancer`.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrenhance.errors import ConfigError, InputError
from mrenhance.tasks.base import InputKind, Task, TrainingData, register_task, require_finite
from mrenhance.volume import Volume

#: The one intensity rule: CBF / this many ml/100 g/min (no clipping).
CBF_SCALE = 100.0
#: Training pixel size (the 2 mm MNI grid), mm.
TRAINING_PIXEL_MM = (2.0, 2.0)
#: PSNR/SSIM data range, ml/100 g/min.
DATA_RANGE = 100.0
#: Smallest in-plane field of view (mm) an ASL map can have here.
MIN_FOV_MM = 40.0
#: ``enhance --adapt`` patch (pixels of the training grid); choice: the shipped
#: ``dwan-asl-lfn``'s training patch (its card: 48 x 48).
ADAPT_PATCH = (48, 48)

DATA_DEFAULTS: dict[str, Any] = {
    "target": "lfn",  # "lfn" (learning from noise) or "asldn" (pseudo gold standard)
    "lfn_pairs": [[0, 1], [2, 3]],  # Sec. 2.3: segment 1 -> 2 and 3 -> 4 (0-based)
    "lfn_symmetric": True,  # choice: also 2 -> 1 and 4 -> 3
    "subjects": {"train": 24, "validation": 4, "test": 8},  # paper: 200 / 20 / 60
    "seed": 0,
    "outlier_fraction": 0.1,  # choice: 1 pair in 10 has a motion spike
    # choice, beyond the paper: [low, high] draws each subject's outlier fraction uniformly
    # (data.vary_splits only; the others keep outlier_fraction); None = outlier_fraction
    "outlier_range": None,
    "thermal_noise": 0.00575,  # = simulate.asl.CALIBRATED_THERMAL_NOISE (tested)
    # choice, beyond the paper: training subjects' thermal noise is thermal_noise x a factor
    # log-uniform in this range (validation and test keep thermal_noise), so a network does
    # not learn one noise level; None = every subject at thermal_noise
    "noise_scale": None,
    # choice, beyond the paper: random acquisition geometry for the training subjects,
    # {voxel_mm: [[lo, hi]] x 3, psf: [lo, hi], gap: [lo, hi]} (simulate.asl.draw_acquisition;
    # the matrix keeps the paper's field of view); None = the paper's 64 x 64 x 20 at
    # 3.4 x 3.4 x 6 mm for every subject
    "acquisition": None,
    # the splits noise_scale and acquisition apply to (choice: training only, so
    # validation and test stay the paper's protocol; add "validation" to select models on
    # the varied protocol as well)
    "vary_splits": ["train"],
    # choice: flips; blobs (beyond the paper) multiply input and target by local gains of
    # x 0.3-8 so networks keep high and low regional CBF (docs/asl.md, high CBF)
    "augment": {"flip": True, "blobs": {"count": [0, 3], "factor": [0.3, 8.0], "radius": [2, 8]}},
    "min_brain_fraction": 0.3,
    # choice, beyond the paper: half of the subjects carry a hyper-perfused region (CBF x
    # 1.5-3.5, 90-210 ml/100 g/min in GM), so networks learn not to flatten high CBF;
    # keys are simulate.asl.draw_perfusion's
    "perfusion": {"hyper_probability": 0.5},
}

Method = Callable[["AslCase"], np.ndarray]

#: Axial slices kept per simulated subject: the paper's and the SNR slice.
from mrenhance.simulate.asl import PAPER_SLICES, SNR_SLICE  # noqa: E402

STORED_SLICES = tuple(sorted(set(PAPER_SLICES) | {SNR_SLICE}))
_PAPER_IDX = [STORED_SLICES.index(z) for z in PAPER_SLICES]
_SNR_IDX = STORED_SLICES.index(SNR_SLICE)


#: the split-half check (``enhance`` of a 4D series) needs at least this many pairs
#: (choice: two per half)
MIN_SPLIT_PAIRS = 4


def split_half_weight(
    out_a: np.ndarray, in_a: np.ndarray, out_b: np.ndarray, in_b: np.ndarray, mask: np.ndarray
) -> float:
    """How much of the network to keep on the mean of all pairs, judged on the user's own
    repeats (choice, beyond the paper).

    in_a, in_b : the means of two disjoint halves of the pairs (independent noise, same
    CBF ``s``); out_a, out_b : the network on each; any shape, all alike; ``mask`` the
    voxels that count. The other half is a noisy but unbiased reference (the
    learning-from-noise argument of the paper's Sec. 2.1; the self-supervised calibration
    of Batson & Royer, ICML 2019), so with ``S = |a - b|^2 / 2`` (the noise energy of one
    half) these are unbiased: ``A = |out_a - b|^2 - S`` (the network's error energy on a
    half) and ``C = <out_a - b, a - b> - S`` (its error's overlap with the half's noise),
    both averaged over the two directions. The output is ``w net(m) + (1 - w) m`` on the
    mean ``m`` of all pairs, whose noise energy is exactly ``S / 2``; assuming the
    network's error on ``m`` is no larger than on a half (``A``) and passes the same
    fraction of the noise (``C / 2``), its error energy is smallest at

        w = (S / 2 - C / 2) / (A + S / 2 - C),   clipped to [0, 1].

    An ideal denoiser (A = C = 0) gets 1; one that erases contrast of energy V gets
    ``(S / 2) / (V + S / 2)`` (Wiener-like); the identity gets 0 (it changes nothing).
    Where the network is worse than the mean on a simulator or protocol it was not
    trained on, ``w`` falls towards the plain mean. 1 when the halves are identical.
    An odd pair count gives halves of ``n // 2 + 1`` and ``n // 2`` pairs, treated as equal
    (choice): ``S / 2`` then overstates the mean's noise energy by 4 % at 5 pairs, 2 % at 7.
    """
    m = np.asarray(mask, dtype=bool)
    a, b = in_a[m].astype(np.float64), in_b[m].astype(np.float64)
    oa, ob = out_a[m].astype(np.float64), out_b[m].astype(np.float64)
    noise = float(((a - b) ** 2).sum()) / 2.0
    if not noise > 0:
        return 1.0
    err = 0.5 * (float(((oa - b) ** 2).sum()) + float(((ob - a) ** 2).sum())) - noise
    overlap = 0.5 * (float(((oa - b) * (a - b)).sum()) + float(((ob - a) * (b - a)).sum())) - noise
    den = err + noise / 2.0 - overlap
    if not den > 0:
        return 1.0
    return float(np.clip((noise / 2.0 - overlap / 2.0) / den, 0.0, 1.0))


# ---------------------------------------------------------------------------- data
@dataclass
class AslCase:
    """One simulated subject, axial slices :data:`STORED_SLICES` only (x, y, 10).

    segments : (4, x, y, 10) segment means; pseudo_gold, truth : (x, y, 10); gm, wm :
    fractions; brain, territory, hyper : bool (hypo- / hyper-perfused region). All CBF in
    ml/100 g/min. affine : the MNI grid's.
    """

    name: str
    segments: np.ndarray
    pseudo_gold: np.ndarray
    truth: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    territory: np.ndarray
    affine: np.ndarray
    hyper: np.ndarray | None = None

    @property
    def input_10(self) -> np.ndarray:
        return self.segments[0]

    def volume(self, data: np.ndarray | None = None) -> Volume:
        """The 10-pair mean (or ``data``) as a Volume of 2 mm axial slices."""
        arr = self.input_10 if data is None else data
        return Volume(arr, self.affine, {"source": f"{self.name} (10-pair mean)"})

    def rois(self) -> tuple[np.ndarray, np.ndarray]:
        outside = ~self.territory
        if self.hyper is not None:
            outside = outside & ~self.hyper
        return (self.gm > 0.7) & outside, (self.wm > 0.95) & outside


def _case(subject: Any) -> AslCase:
    z = list(STORED_SLICES)
    return AslCase(
        name=subject.name,
        segments=np.ascontiguousarray(subject.segments[:, :, :, z]),
        pseudo_gold=np.ascontiguousarray(subject.pseudo_gold[:, :, z]),
        truth=np.ascontiguousarray(subject.truth[:, :, z]),
        gm=np.ascontiguousarray(subject.gm[:, :, z]),
        wm=np.ascontiguousarray(subject.wm[:, :, z]),
        brain=np.ascontiguousarray(subject.brain_mask[:, :, z]),
        territory=np.ascontiguousarray(subject.territory_mask[:, :, z]),
        affine=subject.affine,
        hyper=None
        if subject.hyper_mask is None
        else np.ascontiguousarray(subject.hyper_mask[:, :, z]),
    )


_PERFUSION_RANGES = {
    "hyper_probability": "probability",
    "territory_probability": "probability",
    "hyper_factor": (1.0, 20.0),
    "territory_factor": (0.0, 1.0),
    "hyper_radius_mm": (1.0, 60.0),
    "hyper_slices": (0.0, 90.0),
    "territory_radius_mm": (1.0, 80.0),
    "gm_cbf": (1.0, 300.0),
    "global_scale": (0.05, 10.0),
    "gm_wm_ratio": (0.5, 10.0),
    "spatial_variation": (0.0, 1.0),
    "label_probability": "probability",
}

#: ``data.acquisition`` keys: (number of ranges, lowest, highest) per key
_ACQUISITION_RANGES = {"voxel_mm": (3, 1.0, 12.0), "psf": (1, 0.0, 2.0), "gap": (1, 0.0, 0.9)}


def _is_range(value: Any, lo: float, hi: float, *, open_low: bool = False) -> bool:
    """``value`` is [low, high] numbers (not bools), lo <= low <= high <= hi (lo < low with
    ``open_low``)."""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        and (lo < value[0] if open_low else lo <= value[0])
        and value[0] <= value[1] <= hi
    )


def _check_acquisition(options: Any, source: str) -> None:
    """Refuse unknown or absurd ``data.acquisition`` keys (``draw_acquisition``'s)."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise ConfigError(f"{source}: data.acquisition must be a mapping, got {options!r}")

    for key, value in options.items():
        if key not in _ACQUISITION_RANGES:
            known = ", ".join(sorted(_ACQUISITION_RANGES))
            raise ConfigError(f"{source}: data.acquisition.{key}: unknown option (known: {known})")
        n, lo, hi = _ACQUISITION_RANGES[key]
        ok = (
            isinstance(value, (list, tuple))
            and len(value) == 3
            and all(_is_range(v, lo, hi) for v in value)
            if n == 3
            else _is_range(value, lo, hi)
        )
        if not ok:
            shape = "three [low, high]" if n == 3 else "[low, high]"
            raise ConfigError(
                f"{source}: data.acquisition.{key}: expected {shape} within "
                f"[{lo:g}, {hi:g}], got {value!r}"
            )


def _check_perfusion_options(options: Any, source: str) -> None:
    """Refuse unknown or absurd ``data.perfusion`` keys (``draw_perfusion``'s options)."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise ConfigError(f"{source}: data.perfusion must be a mapping, got {options!r}")
    for key, value in options.items():
        if key not in _PERFUSION_RANGES:
            known = ", ".join(sorted(_PERFUSION_RANGES))
            raise ConfigError(f"{source}: data.perfusion.{key}: unknown option (known: {known})")
        rule = _PERFUSION_RANGES[key]
        if rule == "probability":
            ok = isinstance(value, (int, float)) and 0 <= float(value) <= 1
            what = "a probability in [0, 1]"
        else:
            lo, hi = rule
            ok = (
                isinstance(value, (list, tuple))
                and len(value) == 2
                and all(isinstance(v, (int, float)) and lo <= float(v) <= hi for v in value)
                and float(value[0]) <= float(value[1])
            )
            what = f"[low, high] with {lo:g} <= low <= high <= {hi:g}"
        if not ok:
            raise ConfigError(f"{source}: data.perfusion.{key}: expected {what}, got {value!r}")


def validation_reference(case: AslCase, target: str) -> np.ndarray:
    """What a validation output (of the 10-pair mean) is scored against (x, y, z).

    ASLDN: the pseudo gold standard. LFN: the plain mean of pairs 11-40 (segments 2-4),
    noisy data of the same kind as its targets (see :meth:`AslTask.training_data`).
    """
    return case.segments[1:].mean(axis=0) if target == "lfn" else case.pseudo_gold


def noise_factor(seed: Sequence[int], noise_scale: Sequence[float] | None) -> float:
    """A subject's thermal-noise factor: log-uniform in ``noise_scale`` (low, high), drawn
    from its own generator ``default_rng([*seed, 7])`` (so the subject's simulation draws
    are untouched); 1 without a range."""
    if not noise_scale:
        return 1.0
    lo, hi = (float(v) for v in noise_scale)
    u = np.random.default_rng([*[int(v) for v in seed], 7]).random()
    return float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))


def outlier_fraction(
    seed: Sequence[int], fraction: float, outlier_range: Sequence[float] | None
) -> float:
    """A subject's outlier-pair fraction: uniform in ``outlier_range`` from its own generator
    ``default_rng([*seed, 13])``; ``fraction`` without a range."""
    if not outlier_range:
        return float(fraction)
    lo, hi = (float(v) for v in outlier_range)
    return float(lo + np.random.default_rng([*(int(v) for v in seed), 13]).random() * (hi - lo))


def acquisition_options(
    seed: Sequence[int], ranges: dict[str, Any] | None
) -> dict[str, Any] | None:
    """A subject's acquisition geometry drawn from ``data.acquisition`` ranges (its own
    stream ``[*seed, 11]``, so the rest of the subject is unchanged); None without ranges."""
    if not ranges:
        return None
    from mrenhance.simulate.asl import draw_acquisition

    rng = np.random.default_rng([*(int(v) for v in seed), 11])
    return draw_acquisition(rng, **ranges)


def subject_seed(seed: int, split: str, index: int) -> list[int]:
    """The simulation seed of subject ``index`` of a split (splits never share subjects)."""
    return [int(seed), {"train": 0, "validation": 1, "test": 2}[split], int(index)]


@functools.lru_cache(maxsize=8)
def _cases_cached(key: str) -> tuple[AslCase, ...]:
    from mrenhance.simulate.asl import simulate_asl_subject

    cfg = json.loads(key)
    out = []
    for i in range(cfg["n"]):
        seed = subject_seed(cfg["seed"], cfg["split"], i)
        s = simulate_asl_subject(
            seed,
            name=f"{cfg['split']}-{i:03d}",
            outlier_fraction=outlier_fraction(
                seed, cfg["outlier_fraction"], cfg.get("outlier_range")
            ),
            thermal_noise=cfg["thermal_noise"] * noise_factor(seed, cfg.get("noise_scale")),
            perfusion_options=cfg.get("perfusion") or None,
            acquisition_options=acquisition_options(seed, cfg.get("acquisition")),
        )
        out.append(_case(s))
    return tuple(out)


def load_cases(cfg: dict[str, Any], split: str) -> list[AslCase]:
    """Simulate (once per process and config) the subjects of a split of a data config."""
    varied = split in (cfg.get("vary_splits") or ["train"])
    key = json.dumps(
        {
            "n": int(cfg["subjects"][split]),
            "seed": int(cfg["seed"]),
            "split": split,
            "outlier_fraction": float(cfg["outlier_fraction"]),
            "outlier_range": list(cfg.get("outlier_range") or []) if varied else [],
            "thermal_noise": float(cfg["thermal_noise"]),
            # the ranges apply to data.vary_splits only (default: the training subjects)
            "noise_scale": list(cfg.get("noise_scale") or []) if varied else [],
            "acquisition": dict(cfg.get("acquisition") or {}) if varied else {},
            "perfusion": dict(cfg.get("perfusion") or {}),
        },
        sort_keys=True,
    )
    return list(_cases_cached(key))


class AslSliceDataset:
    """Training pairs of 2D patches from the paper's axial slices, deterministic in (seed, i).

    Sample ``i``: ``rng = default_rng([seed, i])`` draws a subject, one of the paper's
    slices, (LFN) an input/target segment pair among ``pairs``, a patch corner with at
    least ``min_brain_fraction`` brain pixels (up to 20 tries) and flips. Items are
    ``{"inputs": (1, a, b), "target": (1, a, b)}`` float32, CBF / :data:`CBF_SCALE`.
    ``target="asldn"`` uses the pseudo gold standard as the target. ``augment``: an
    optional paired ``augment(x, y, rng)`` (:mod:`mrenhance.engine.augment`) run after the
    flips on the (1, a, b) patches, e.g. the recipe's ``augment.blobs``.
    """

    def __init__(
        self,
        cases: Sequence[AslCase],
        patch_size: Sequence[int],
        *,
        target: str = "lfn",
        pairs: Sequence[Sequence[int]] = ((0, 1), (2, 3)),
        symmetric: bool = True,
        flip: bool = True,
        min_brain_fraction: float = 0.3,
        seed: int = 0,
        length: int = 10**9,
        augment: Any = None,
    ) -> None:
        if not cases:
            raise ConfigError("asl: no training subjects")
        self.cases = list(cases)
        self.patch = tuple(int(p) for p in patch_size)
        if len(self.patch) != 2:
            raise ConfigError(f"asl: train.patch_size must have 2 entries, got {patch_size}")
        shape = self.cases[0].input_10.shape[:2]
        if any(p > n for p, n in zip(self.patch, shape, strict=True)):
            raise ConfigError(f"asl: patch {self.patch} is larger than the slices {shape}")
        self.target = target
        pairs = [tuple(int(v) for v in p) for p in pairs]
        if symmetric:
            pairs = pairs + [(b, a) for a, b in pairs]
        self.pairs = pairs
        self.flip = flip
        self.augment = augment
        self.min_brain_fraction = float(min_brain_fraction)
        self.seed = int(seed)
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(i) % self.length])
        case = self.cases[int(rng.integers(len(self.cases)))]
        z = _PAPER_IDX[int(rng.integers(len(_PAPER_IDX)))]
        if self.target == "lfn":
            a, b = self.pairs[int(rng.integers(len(self.pairs)))]
            x_img, y_img = case.segments[a, :, :, z], case.segments[b, :, :, z]
        else:
            x_img, y_img = case.segments[0, :, :, z], case.pseudo_gold[:, :, z]
        brain = case.brain[:, :, z]
        (px, py), (nx, ny) = self.patch, brain.shape
        best = None
        for _ in range(20):
            cx, cy = int(rng.integers(nx - px + 1)), int(rng.integers(ny - py + 1))
            frac = float(brain[cx : cx + px, cy : cy + py].mean())
            if best is None or frac > best[0]:
                best = (frac, cx, cy)
            if frac >= self.min_brain_fraction:
                break
        assert best is not None
        _, cx, cy = best
        x = x_img[cx : cx + px, cy : cy + py] / np.float32(CBF_SCALE)
        y = y_img[cx : cx + px, cy : cy + py] / np.float32(CBF_SCALE)
        if self.flip:
            for axis in (0, 1):
                if rng.random() < 0.5:
                    x, y = np.flip(x, axis), np.flip(y, axis)
        if self.augment is not None:
            x, y = self.augment(np.ascontiguousarray(x)[None], np.ascontiguousarray(y)[None], rng)
            x, y = x[0], y[0]
        return {
            "inputs": np.ascontiguousarray(x, dtype=np.float32)[None],
            "target": np.ascontiguousarray(y, dtype=np.float32)[None],
        }


def _extra_augment(config: Any, source: str) -> Any:
    """The recipe's ``augment`` beyond ``flip`` (which :class:`AslSliceDataset` draws itself,
    so recipes without other keys draw the same samples as before), or None."""
    from mrenhance.engine.augment import build_augment

    if config is None:
        return None
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: data.augment: expected a mapping, got {config!r}")
    rest = {k: v for k, v in config.items() if k != "flip"}
    if not rest:
        return None
    try:
        return build_augment(rest)
    except ConfigError as err:
        raise ConfigError(f"{source}: data.{err}") from None


# ---------------------------------------------------------------------------- metrics
def case_metrics(case: AslCase, output: np.ndarray) -> dict[str, float]:
    """The paper's numbers (Sec. 2.4) for one subject's output (x, y, 10) in CBF units."""
    from mrenhance.metrics import contrast_ratio, psnr, snr, ssim

    out = np.asarray(output, dtype=np.float32)
    p = _PAPER_IDX
    brain = case.brain[:, :, p]
    gm, wm = case.rois()
    row: dict[str, float] = {}
    for suffix, ref in (("", case.pseudo_gold), ("_truth", case.truth)):
        row[f"psnr{suffix}"] = psnr(out[:, :, p], ref[:, :, p], DATA_RANGE, brain)
        row[f"ssim{suffix}"] = float(
            ssim(out[:, :, p], ref[:, :, p], DATA_RANGE, brain, spatial_dims=2)
        )
    s = _SNR_IDX
    row["snr"] = snr(out[:, :, s], gm[:, :, s], wm[:, :, s])
    row["gm_wm_contrast"] = contrast_ratio(out[:, :, p], gm[:, :, p], wm[:, :, p])
    for key, region in (("hyper_ratio", case.hyper), ("hypo_ratio", case.territory)):
        inside = None if region is None else (region[:, :, p] & brain)
        if inside is not None and inside.sum() >= MIN_REGION_PIXELS:
            row[key] = float(out[:, :, p][inside].mean() / case.truth[:, :, p][inside].mean())
        else:
            row[key] = float("nan")
    return row


METRIC_KEYS = ("psnr", "ssim", "psnr_truth", "ssim_truth", "snr", "gm_wm_contrast")
#: Per-region CBF recovery (mean output / mean true CBF inside the hyper- or hypo-perfused
#: region of the paper's slices; 1 = kept, < 1 = flattened for hyper, > 1 filled in for
#: hypo); NaN for a subject without that region, averaged over the subjects that have it.
REGION_KEYS = ("hyper_ratio", "hypo_ratio")
#: A region counts when it covers at least this many pixels of the paper's slices.
MIN_REGION_PIXELS = 20


def evaluate_cases(
    methods: dict[str, Method],
    cases: Sequence[AslCase],
    *,
    correlation_out: Any = None,
    per_subject: bool = False,
) -> list[dict[str, Any]]:
    """Every method on every case; one row per method: mean and std over subjects.

    With ``per_subject``, each row also holds ``per_subject``: {metric: [value per case]}
    in the order of ``cases`` (for paired comparisons between methods).

    With ``correlation_out`` (a folder), writes each method's voxel-wise correlation map
    with the pseudo gold standard across subjects (Sec. 2.4, Fig. 4) as
    ``<method>_corr.nii.gz`` and a PNG thresholded at r > 0.3, and adds ``corr_mean``
    (mean r in the brain) and ``corr_above_0.3`` (its fraction with r > 0.3) to the rows.
    """
    rows = []
    for name, method in methods.items():
        t0 = time.perf_counter()
        per, outputs = [], []
        for case in cases:
            out = np.asarray(method(case), dtype=np.float32)
            outputs.append(out)
            per.append(case_metrics(case, out))
        seconds = time.perf_counter() - t0
        row: dict[str, Any] = {"method": name}
        for k in METRIC_KEYS:
            values = np.array([r[k] for r in per], dtype=np.float64)
            row[k] = float(values.mean())
            row[f"{k}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        for k in REGION_KEYS:
            values = np.array([r[k] for r in per], dtype=np.float64)
            values = values[np.isfinite(values)]
            row[k] = float(values.mean()) if len(values) else float("nan")
            row[f"{k}_n"] = len(values)
        if len(cases) >= 3:
            from mrenhance.metrics import voxelwise_correlation

            p = _PAPER_IDX
            brain = np.all([c.brain[:, :, p] for c in cases], axis=0)
            r = voxelwise_correlation(
                np.stack([o[:, :, p] for o in outputs]),
                np.stack([c.pseudo_gold[:, :, p] for c in cases]),
                brain,
            )
            valid = np.isfinite(r) & brain
            row["corr_mean"] = float(np.mean(r[valid])) if valid.any() else float("nan")
            row["corr_above_0.3"] = float(np.mean(r[valid] > 0.3)) if valid.any() else 0.0
            if correlation_out is not None:
                _write_correlation(correlation_out, name, r, cases[0].affine)
        row["n_subjects"] = len(cases)
        row["seconds"] = round(seconds, 2)
        if per_subject:
            row["per_subject"] = {
                k: [float(r[k]) for r in per] for k in (*METRIC_KEYS, *REGION_KEYS)
            }
        rows.append(row)
    return rows


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _write_correlation(folder: Any, name: str, r: np.ndarray, affine: np.ndarray) -> None:
    from pathlib import Path

    from matplotlib.figure import Figure

    from mrenhance.io import save
    from mrenhance.report.figures import save_figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = np.nan_to_num(r, nan=0.0).astype(np.float32)
    save(Volume(data, affine, {"source": f"corr {name}"}), folder / f"{_safe(name)}_corr.nii.gz",
         overwrite=True)  # fmt: skip
    shown = np.where(data > 0.3, data, 0.0)
    fig = Figure(figsize=(2.0 * min(5, shown.shape[2]), 2.6))
    picks = np.linspace(0, shown.shape[2] - 1, min(5, shown.shape[2])).round().astype(int)
    for k, z in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), k + 1)
        im = ax.imshow(np.rot90(shown[:, :, z]), vmin=0, vmax=1, cmap="hot")
        ax.set_axis_off()
        ax.set_title(f"slice {PAPER_SLICES[z]}", fontsize=8)
    fig.colorbar(im, ax=fig.axes, shrink=0.7)
    fig.suptitle(f"r with pseudo gold (r > 0.3): {name}", fontsize=9)
    save_figure(fig, folder / f"{_safe(name)}_corr.png")


# ---------------------------------------------------------------------------- baselines
def best_gaussian_fwhm(cases: Sequence[AslCase], grid: Sequence[float] = (2, 3, 4, 5, 6, 8)):
    """The in-plane FWHM (mm) maximising mean PSNR against the pseudo gold standard."""
    from mrenhance.baselines.denoise import gaussian_denoise

    scores = {}
    for fwhm in grid:
        scores[float(fwhm)] = float(
            np.mean([case_metrics(c, gaussian_denoise(c.input_10, fwhm))["psnr"] for c in cases])
        )
    return max(scores, key=scores.get), scores


def best_strength(
    cases: Sequence[AslCase], denoise: Callable[..., np.ndarray], grid=(1.0, 2.0, 4.0, 8.0)
) -> float:
    """The noise-level multiplier of NLM / BM3D maximising mean PSNR vs the pseudo gold.

    The wavelet estimate of sigma sees only the finest scale, where resampled CBF maps
    (3.4 x 3.4 x 6 mm acquired, 2 mm shown) carry little of their spatially correlated
    noise; so, as the Gaussian's FWHM, the strength is tuned on the validation subjects.
    """
    scores = {
        float(k): float(np.mean([case_metrics(c, denoise(c.input_10, k))["psnr"] for c in cases]))
        for k in grid
    }
    return max(scores, key=scores.get)


def baseline_methods(
    fwhm_mm: float = 4.0,
    *,
    bm3d: bool | None = None,
    nlm_strength: float = 1.0,
    bm3d_strength: float = 1.0,
) -> dict[str, Method]:
    """The classical rows: 10-pair mean, Gaussian, NLM, and BM3D when it is installed.

    ``*_strength`` multiplies the estimated noise sigma (see :func:`best_strength`).
    """
    from mrenhance.baselines import denoise as D

    methods: dict[str, Method] = {
        "mean of 10 pairs (input)": lambda c: c.input_10,
        f"gaussian FWHM {fwhm_mm:g} mm": lambda c: D.gaussian_denoise(c.input_10, fwhm_mm),
        f"non-local means (h x{nlm_strength:g})": lambda c: D.nlm_denoise(
            c.input_10, strength=nlm_strength
        ),
    }
    if bm3d if bm3d is not None else D.has_bm3d():
        methods[f"BM3D (sigma x{bm3d_strength:g})"] = lambda c: D.bm3d_denoise(
            c.input_10, strength=bm3d_strength
        )
    return methods


def tuned_baselines(validation: Sequence[AslCase], *, bm3d: bool | None = None):
    """:func:`baseline_methods` with each parameter chosen on ``validation`` subjects."""
    from mrenhance.baselines import denoise as D

    fwhm, _ = best_gaussian_fwhm(validation)
    nlm = best_strength(validation, lambda x, k: D.nlm_denoise(x, strength=k))
    use_bm3d = D.has_bm3d() if bm3d is None else bm3d
    b3 = best_strength(validation, lambda x, k: D.bm3d_denoise(x, strength=k)) if use_bm3d else 1
    return baseline_methods(fwhm, bm3d=use_bm3d, nlm_strength=nlm, bm3d_strength=b3)


def network_method(enhancer: Any) -> Method:
    """A network as an evaluation method: the Enhancer on the case's 10-pair mean."""
    return lambda case: enhancer(case.volume()).data


# ---------------------------------------------------------------------------- input handling
_SERIES_TYPES = {"control", "label", "m0scan", "cbf", "deltam", "noise"}

#: :func:`looks_like_label_control`: consecutive volumes of label/control images differ by
#: a few % of their level (control - label is ~1 % of M0, plus noise); per-pair CBF maps
#: by about their level (per-pair CBF noise is ~50-150 % of the mean CBF).
RAW_MAX_STEP = 0.1
#: ... or by up to this much (background suppression lowers the level) while consecutive
#: volumes are spatially correlated above :data:`RAW_MIN_CORRELATION` (the same anatomy in
#: every image; per-pair CBF maps correlate at ~0-0.5: noise dominates them).
RAW_MAX_STEP_CORRELATED = 0.3
RAW_MIN_CORRELATION = 0.9
#: Head voxels the detection samples (evenly strided), at most.
_DETECT_VOXELS = 20_000


def series_statistics(data: np.ndarray) -> dict[str, float] | None:
    """What tells raw label/control images from per-pair CBF maps in a 4D series.

    Over the head (voxels whose temporal mean exceeds 20 % of its 99th percentile, as
    :func:`mrenhance.simulate.asl.quantify_pairs` masks; at most :data:`_DETECT_VOXELS`
    of them, evenly strided):

    * ``level``: the median temporal mean;
    * ``step``: the median over voxels of the median over time of ``|v[t+1] - v[t]|``,
      divided by ``level`` (medians: robust to an M0 volume, an outlier pair, a spike);
    * ``correlation``: the median over ``t`` of the spatial (Pearson) correlation of
      volumes ``t`` and ``t + 1``.

    None when it cannot tell (fewer than 2 volumes, fewer than 64 head voxels, a level
    <= 0 or not finite).
    """
    data = np.asarray(data)
    if data.ndim != 4 or data.shape[3] < 2:
        return None
    flat = data.reshape(-1, data.shape[3])
    mean = flat.mean(axis=1, dtype=np.float64)
    size = np.abs(mean)
    positive = size[size > 0]
    if not positive.size or not np.all(np.isfinite(positive)):
        return None
    head = np.flatnonzero(size > 0.2 * np.percentile(positive, 99))
    if head.size < 64:
        return None
    head = head[:: max(1, -(-head.size // _DETECT_VOXELS))]
    x = flat[head].astype(np.float64)
    level = float(np.median(mean[head]))
    if not np.isfinite(level) or level <= 0:
        return None
    step = float(np.median(np.median(np.abs(np.diff(x, axis=1)), axis=1))) / level
    a, b = x[:, :-1] - x[:, :-1].mean(axis=0), x[:, 1:] - x[:, 1:].mean(axis=0)
    norm = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(norm > 0, (a * b).sum(axis=0) / norm, 0.0)
    return {"level": level, "step": step, "correlation": float(np.median(corr))}


def looks_like_label_control(data: np.ndarray) -> bool:
    """Whether a 4D series with no volume types looks like raw label/control images.

    The rule (on :func:`series_statistics`): ``step < RAW_MAX_STEP`` (0.1), or ``step <
    RAW_MAX_STEP_CORRELATED`` (0.3) with ``correlation > RAW_MIN_CORRELATION`` (0.9).
    Raw pCASL images (simulated, 1-40 pairs, any intensity scale) have step ~0.01 and
    correlation ~0.998; with the tissue suppressed to 10 % of M0 (background suppression)
    step ~0.08, correlation ~0.96. Per-pair CBF maps (simulated, 2-40 pairs, smoothed or
    not) have step 0.7-1.6 and correlation < 0.2; even Gaussian maps of mean 50 and std 10
    (no negative value, a per-pair SNR of 5, beyond real per-pair CBF) have step ~0.19 and
    no correlation. A series of *mean* CBF maps (repeats of a high-SNR map) can match the
    rule: its user
    says so with ``--asl-order cbf``.
    """
    stats = series_statistics(data)
    if stats is None:
        return False
    step, corr = stats["step"], stats["correlation"]
    return step < RAW_MAX_STEP or (step < RAW_MAX_STEP_CORRELATED and corr > RAW_MIN_CORRELATION)


def asl_context(volume: Volume) -> list[str] | None:
    """The volume types of a 4D ASL series, from ``meta["aslcontext"]`` or ``"asl_order"``.

    ``asl_order`` is a comma-separated pattern repeated over the series, e.g.
    ``"control,label"`` or ``"label,control"`` (``"cbf"``: a per-pair CBF series).
    None: neither is given, and the series is taken as per-pair CBF maps, unless it looks
    like label/control images (:func:`looks_like_label_control`): then a one-line
    InputError asks for its volume types (reading it as CBF gives garbage, ~7 ml/100 g/min
    for a raw pCASL series).
    """
    n = volume.data.shape[3]
    source = volume.meta.get("source", "input")
    ctx = volume.meta.get("aslcontext")
    order = volume.meta.get("asl_order")
    if ctx is None and order:
        pattern = [t.strip().lower() for t in str(order).split(",") if t.strip()]
        bad = sorted(set(pattern) - _SERIES_TYPES)
        if not pattern or bad:
            raise InputError(f"{source}: --asl-order {order!r}: use e.g. control,label")
        if n % len(pattern):
            raise InputError(
                f"{source}: --asl-order {order!r} does not tile the {n} volumes of the series"
            )
        ctx = pattern * (n // len(pattern))
    if ctx is None:
        if looks_like_label_control(volume.data):
            raise InputError(
                f"{source}: this 4D series looks like label/control images, not per-pair CBF "
                "maps (consecutive volumes differ little and share the anatomy); give an "
                "aslcontext.tsv beside it (BIDS: <name>_asl.nii.gz + <name>_aslcontext.tsv) "
                "or --asl-order (e.g. control,label; cbf if these are CBF maps)"
            )
        return None
    ctx = [str(t).strip().lower() for t in ctx]
    if len(ctx) != n:
        raise InputError(f"{source}: aslcontext lists {len(ctx)} volumes, the series has {n}")
    bad = sorted(set(ctx) - _SERIES_TYPES)
    if bad:
        raise InputError(f"{source}: aslcontext: unknown volume type {bad[0]!r}")
    if ctx.count("control") != ctx.count("label"):
        how = f"--asl-order {order!r}" if volume.meta.get("aslcontext") is None else "aslcontext"
        raise InputError(
            f"{source}: {how}: {ctx.count('control')} control and {ctx.count('label')} label "
            "volumes; they must pair up"
        )
    return ctx


_M0_TYPES = ("Separate", "Included", "Estimate", "Absent")


def _m0_type(volume: Volume) -> str | None:
    """The sidecar's ``M0Type`` (BIDS), checked; None when not given."""
    sidecar = volume.meta.get("asl") or {}
    value = sidecar.get("M0Type")
    if value is None:
        return None
    match = [t for t in _M0_TYPES if isinstance(value, str) and value.lower() == t.lower()]
    if not match:
        source = volume.meta.get("source", "input")
        raise InputError(
            f"{source}: M0Type {value!r:.40}: expected one of {', '.join(_M0_TYPES)} (BIDS)"
        )
    return match[0]


def _separate_m0(volume: Volume) -> np.ndarray:
    """The separate M0 scan (``meta["m0scan_path"]``, a BIDS ``*_m0scan.nii[.gz]``) on the
    series' grid: (x, y, z), the mean of its volumes if 4D. One-line InputError if not."""
    from mrenhance.io import load
    from mrenhance.io.validate import check_same_grid

    m0 = load(volume.meta["m0scan_path"])
    if m0.data.ndim == 4:
        m0 = Volume(m0.data.mean(axis=-1), m0.affine, dict(m0.meta))
    series = Volume(volume.data[..., 0], volume.affine, dict(volume.meta))
    return np.asarray(check_same_grid(m0, series, "M0 scan"), dtype=np.float32)


def asl_m0(volume: Volume, ctx: Sequence[str]) -> tuple[str, np.ndarray | float | None]:
    """Where the M0 of a label/control (or deltam) series comes from, following BIDS.

    Returns (how, m0): ``("included", (x, y, z))`` the mean of the series' ``m0scan``
    volumes; ``("separate", (x, y, z))`` the ``*_m0scan.nii[.gz]`` beside the
    ``*_asl.nii[.gz]`` (``M0Type: Separate``, or no M0Type and the file is there);
    ``("estimate", value)`` the sidecar's ``M0Estimate`` (``M0Type: Estimate``);
    ``("control", None)``: each control image stands for M0 (the paper's Sec. 2.3;
    ``M0Type: Absent``, or no M0Type and no M0 scan). Refused (one line): an M0Type whose
    M0 is missing (Separate without the file, Included without an m0scan volume, Estimate
    without a number > 0), and control images that cannot stand for M0 (a deltam series,
    or ``BackgroundSuppression: true``).
    """
    source = volume.meta.get("source", "input")
    sidecar = volume.meta.get("asl") or {}
    kind = _m0_type(volume)
    data = volume.data
    if "m0scan" in ctx:
        idx = [i for i, t in enumerate(ctx) if t == "m0scan"]
        return "included", np.asarray(data[..., idx], np.float32).mean(axis=-1)
    if kind == "Included":
        raise InputError(f"{source}: M0Type is Included but the aslcontext lists no m0scan volume")
    if kind == "Separate" or (kind is None and volume.meta.get("m0scan_path")):
        if not volume.meta.get("m0scan_path"):
            raise InputError(
                f"{source}: M0Type is Separate but no *_m0scan.nii[.gz] lies beside it "
                "(BIDS: <name>_m0scan.nii.gz next to <name>_asl.nii.gz)"
            )
        return "separate", _separate_m0(volume)
    if kind == "Estimate":
        value = sidecar.get("M0Estimate")
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (ok and np.isfinite(value) and value > 0):
            raise InputError(
                f"{source}: M0Type is Estimate but M0Estimate {value!r:.40} is not a number > 0"
            )
        return "estimate", float(value)
    if "label" not in ctx:
        raise InputError(f"{source}: deltam series need an M0: give label/control images")
    if sidecar.get("BackgroundSuppression") is True:
        raise InputError(
            f"{source}: background-suppressed control images cannot stand for M0 "
            "(BackgroundSuppression true, no M0 scan): give a <name>_m0scan.nii.gz beside it"
        )
    return "control", None


def _protocol_from_meta(volume: Volume, nz: int):
    from mrenhance.simulate.asl import AslProtocol

    sidecar = volume.meta.get("asl") or {}
    p = AslProtocol()
    pld = sidecar.get("PostLabelingDelay", p.pld_s)
    tau = sidecar.get("LabelingDuration", p.label_duration_s)
    pld = float(np.mean(pld)) if isinstance(pld, (list, tuple)) else float(pld)
    tau = float(np.mean(tau)) if isinstance(tau, (list, tuple)) else float(tau)
    timing = sidecar.get("SliceTiming")
    eff = sidecar.get("LabelingEfficiency", p.labelling_efficiency)
    from dataclasses import replace

    p = replace(p, label_duration_s=tau, pld_s=pld, labelling_efficiency=float(eff))
    if isinstance(timing, (list, tuple)) and len(timing) == nz:
        plds = pld + np.asarray(timing, dtype=np.float64) - float(np.min(timing))
    else:
        plds = np.full(nz, pld)  # choice: no slice timing known -> one PLD (3D readout)
    return p, plds


def per_pair_cbf(volume: Volume) -> np.ndarray:
    """Per-pair CBF (x, y, z, n) of a 4D series (label/control, deltam or already CBF).

    M0 as :func:`asl_m0` says. With an M0 image (included or separate), voxels where it
    is below 20 % of its 99th percentile are 0 (outside the head; choice, as
    :func:`mrenhance.simulate.asl.quantify_pairs` masks with the mean control); with the
    control images as M0, :func:`~mrenhance.simulate.asl.quantify_pairs`. A deltam series
    gives one map per deltam volume.
    """
    from mrenhance.simulate.asl import cbf_from_difference, quantify_pairs

    data = np.asarray(volume.data, dtype=np.float32)
    ctx = asl_context(volume)
    source = volume.meta.get("source", "input")
    if ctx is None or set(ctx) <= {"cbf"}:
        return data
    controls = [i for i, t in enumerate(ctx) if t == "control"]
    labels = [i for i, t in enumerate(ctx) if t == "label"]
    deltas = [i for i, t in enumerate(ctx) if t == "deltam"]
    if not deltas and (not controls or len(controls) != len(labels)):
        raise InputError(
            f"{source}: expected as many control as label volumes, got {len(controls)} "
            f"and {len(labels)}"
        )
    how, m0 = asl_m0(volume, ctx)
    protocol, plds = _protocol_from_meta(volume, data.shape[2])
    if how == "control":
        return quantify_pairs(data[..., controls], data[..., labels], protocol, pld_s=plds)
    diff = data[..., deltas] if deltas else data[..., controls] - data[..., labels]
    m0_map = np.broadcast_to(np.float32(m0), data.shape[:3]) if how == "estimate" else m0
    cbf = cbf_from_difference(diff, m0_map[..., None], protocol, plds[None, None, :, None])
    if how != "estimate":
        positive = m0_map[m0_map > 0]
        level = float(np.percentile(positive, 99)) if positive.size else 0.0
        cbf[m0_map <= 0.2 * level] = 0.0
    return cbf


def _orientation(affine: np.ndarray):
    import nibabel as nib

    return nib.orientations.io_orientation(affine)


def _to_ras_order(values: Sequence[float], ornt: np.ndarray) -> np.ndarray:
    """Per-axis values of the input's axes in the order of the RAS-reoriented axes."""
    out = np.empty(3)
    out[np.asarray(ornt[:, 0], dtype=int)] = np.asarray(values, dtype=np.float64)[:3]
    return out


def _ras_extent_mm(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """Field of view (mm) along R, A, S of an (x, y, z) grid."""
    from mrenhance.volume import voxel_sizes

    ornt = _orientation(affine)
    return _to_ras_order(np.asarray(shape[:3]) * np.asarray(voxel_sizes(affine)), ornt)


def _resize(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resample (x, y, z) in-plane to (shape[0], shape[1], z): linear, edges aligned.

    A Gaussian anti-alias filter precedes shrinking (sigma = sqrt(f^2 - 1) / 2 pixels for
    a factor f > 1; choice).
    """
    from scipy.ndimage import gaussian_filter, zoom

    arr = np.asarray(array, dtype=np.float32)
    factors = [shape[0] / arr.shape[0], shape[1] / arr.shape[1], 1.0]
    if all(abs(f - 1) < 1e-6 for f in factors):
        return arr.copy()
    sigma = [np.sqrt(max(1.0 / f**2 - 1.0, 0.0)) / 2.0 if f < 1 else 0.0 for f in factors]
    if any(s > 0 for s in sigma):
        arr = gaussian_filter(arr, sigma, mode="nearest")
    out = zoom(arr, factors, order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]].astype(np.float32)


def _flip_pair(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random in-plane flips of a (1, a, b) input/target pair, the same for both."""
    for axis in (1, 2):
        if rng.random() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    return x, y


def _adapt_augment() -> Any:
    """``enhance --adapt``'s pair augmentation: the training recipe's, flips then blobs
    (:data:`DATA_DEFAULTS` ``augment.blobs``), so tuning on a user's repeats (often with a
    motion spike among them) does not teach the network to flatten bright regions again."""
    from mrenhance.engine.augment import build_augment, compose

    return compose(_flip_pair, build_augment({"blobs": DATA_DEFAULTS["augment"]["blobs"]}))


def _card_scale(card: Any) -> tuple[float, tuple[float, float]]:
    pre = None
    if card is not None and hasattr(card, "preprocessing"):
        pre = card.preprocessing
    elif isinstance(card, dict):
        pre = card.get("preprocessing", card)
    pre = pre or {}
    scale = float(pre.get("cbf_scale", CBF_SCALE))
    voxel = pre.get("voxel_size_mm") or TRAINING_PIXEL_MM
    return scale, (float(voxel[0]), float(voxel[1]))


# ---------------------------------------------------------------------------- the task
@register_task
class AslTask(Task):
    """ASL CBF denoising (Xie et al. 2020): 10-pair mean CBF -> denoised CBF, 2D axial."""

    name = "asl"
    description = "ASL CBF denoising, learning from noise (10-pair mean -> denoised CBF)"
    paper = "Xie et al. 2020, MLMI (ASLDN-LFN, DWAN), Sec. 2"
    spatial_dims = 2
    input_kind = InputKind.ASL_PAIRS
    adapts_voxel_size = True  # prepare: each slice is resampled to the training pixel size
    data_defaults = DATA_DEFAULTS
    cli_commands = ("mrenhance.tasks._asl_cli",)
    metric_keys = METRIC_KEYS

    def data_config(self, data: dict[str, Any], source: str = "recipe") -> dict[str, Any]:
        cfg = super().data_config(data, source)
        if cfg["target"] not in ("lfn", "asldn"):
            raise ConfigError(f"{source}: data.target: use lfn or asldn, got {cfg['target']!r}")
        subjects = cfg["subjects"]
        if not isinstance(subjects, dict) or set(subjects) != {"train", "validation", "test"}:
            raise ConfigError(f"{source}: data.subjects: give train, validation and test counts")
        if any(not isinstance(v, int) or v < 0 for v in subjects.values()):
            raise ConfigError(f"{source}: data.subjects: counts must be integers >= 0")
        pairs = cfg["lfn_pairs"]
        if not isinstance(pairs, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(v in (0, 1, 2, 3) for v in p)
            for p in pairs
        ):
            raise ConfigError(f"{source}: data.lfn_pairs: pairs of segment indices 0..3")
        if not 0 <= float(cfg["outlier_fraction"]) <= 1:
            raise ConfigError(f"{source}: data.outlier_fraction must be in [0, 1]")
        span = cfg.get("outlier_range")
        if span is not None and not _is_range(span, 0, 1):
            raise ConfigError(
                f"{source}: data.outlier_range: expected [low, high] with 0 <= low <= high <= 1, "
                f"got {span!r}"
            )
        _check_perfusion_options(cfg.get("perfusion"), source)
        scale = cfg.get("noise_scale")
        if scale is not None and not _is_range(scale, 0, 20, open_low=True):
            raise ConfigError(
                f"{source}: data.noise_scale: expected [low, high] with 0 < low <= high <= 20, "
                f"got {scale!r}"
            )
        _check_acquisition(cfg.get("acquisition"), source)
        splits = cfg.get("vary_splits")
        if not isinstance(splits, list) or not set(splits) <= {"train", "validation", "test"}:
            raise ConfigError(
                f"{source}: data.vary_splits: a list of train, validation, test; got {splits!r}"
            )
        _extra_augment(cfg.get("augment"), source)  # refuse a bad augment before simulating
        return cfg

    def preprocessing(self, data: dict[str, Any], subjects: Sequence[Any]) -> dict[str, Any]:
        return {
            "normalisation": {"method": "none", "percentile": 99.5, "mask": "all"},
            "cbf_scale": CBF_SCALE,
            "rule": f"CBF / {CBF_SCALE:g} ml/100 g/min, no clipping",
            "voxel_size_mm": list(TRAINING_PIXEL_MM),
            "slices": "axial, RAS; 2D per slice",
        }

    def training_data(
        self,
        data: dict[str, Any],
        patch_size: Sequence[int],
        *,
        seed: int = 0,
        source: str = "recipe",
    ) -> TrainingData:
        """2D patch pairs (LFN or ASLDN targets) and a validation on held-out subjects.

        Validation (checkpoint choice) is PSNR against the training *target kind*: the
        pseudo gold for ASLDN; for LFN (no clean data at all) the plain mean of the other
        30 pairs (segments 2-4, uncleaned). Choice: one noisy segment as the reference made
        the score a draw of its motion spikes (it fell from 5.8 to 5.1 dB between steps 250
        and 500 of a run whose loss kept falling, on 2 validation subjects); three segments
        are the same kind of noisy data, with a third of the noise variance.
        """
        cfg = self.data_config(data, source)
        if len(tuple(patch_size)) != 2:
            raise ConfigError(f"{source}: train.patch_size: the asl task needs 2 entries")
        train = load_cases(cfg, "train")
        val = load_cases(cfg, "validation") if cfg["subjects"]["validation"] else []
        dataset = AslSliceDataset(
            train,
            patch_size,
            target=cfg["target"],
            pairs=cfg["lfn_pairs"],
            symmetric=bool(cfg["lfn_symmetric"]),
            flip=bool((cfg["augment"] or {}).get("flip", False)),
            min_brain_fraction=float(cfg["min_brain_fraction"]),
            seed=seed,
            augment=_extra_augment(cfg["augment"], source),
        )

        def validate(model) -> dict[str, float]:
            if not val:
                return {}
            from mrenhance.enhance_api import Enhancer
            from mrenhance.metrics import psnr

            enhancer = Enhancer(model, self, inference=INFERENCE)
            scores = []
            for case in val:
                out = enhancer(case.volume()).data[:, :, _PAPER_IDX]
                ref = validation_reference(case, cfg["target"])[:, :, _PAPER_IDX]
                scores.append(psnr(out, ref, DATA_RANGE, case.brain[:, :, _PAPER_IDX]))
            return {"psnr": float(np.mean(scores))}

        return TrainingData(dataset, validate, train)

    # -- one input ------------------------------------------------------------------------
    def check_input(self, volume: Volume) -> None:
        source = volume.meta.get("source", "input")
        data = volume.data
        if data.ndim not in (3, 4):
            raise InputError(
                f"{source}: expected a 3D CBF map or a 4D ASL series, got {data.shape}"
            )
        if data.ndim == 3 and volume.meta.get("asl_order"):
            raise InputError(
                f"{source}: --asl-order {volume.meta['asl_order']!r} describes a 4D "
                f"label/control series, but this is a 3D image {tuple(data.shape)} (a CBF map "
                "needs no order)"
            )
        require_finite(data, source)
        fov = _ras_extent_mm(data.shape[:3], volume.affine)[:2]
        if min(fov) < MIN_FOV_MM:
            raise InputError(
                f"{source}: in-plane field of view {fov[0]:.0f} x {fov[1]:.0f} mm is too small "
                f"for an ASL CBF map (>= {MIN_FOV_MM:g} mm; shape {tuple(data.shape)})"
            )
        if volume.meta.get("asl") is not None:  # read from *_asl.json, or set through the API
            from mrenhance.io.bids_asl import check_asl_sidecar

            check_asl_sidecar(volume.meta["asl"], tuple(data.shape), source)
        if data.ndim == 4:
            # refuses a bad context or --asl-order, and raw images with neither
            ctx = asl_context(volume)
            if ctx is not None and set(ctx) & {"control", "label", "deltam"}:
                asl_m0(volume, ctx)  # refuses a missing or unusable M0, before any work

    def cbf_map(self, volume: Volume) -> np.ndarray:
        """The mean CBF map (x, y, z) of any accepted input (3D as is; 4D: mean of pairs)."""
        if volume.data.ndim == 3:
            return np.asarray(volume.data, dtype=np.float32)
        return per_pair_cbf(volume).mean(axis=-1).astype(np.float32)

    def prepare(
        self,
        volume: Volume,
        card: Any = None,
        *,
        scale: float | None = None,
        split_half: bool = False,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """CBF map -> RAS axial slices at the training pixel size / the CBF scale.

        Returns (x', y', z) float32 and the context :meth:`restore` needs. With
        ``split_half`` and a series of at least :data:`MIN_SPLIT_PAIRS` pairs, the mean of
        the even and of the odd pairs follow the mean along z: (x', y', 3 z) (the network
        is 2D, so each slice is enhanced alone), and :meth:`restore` weighs the network
        against its input by how well each half predicts the other (:func:`split_half_weight`).
        """
        self.check_input(volume)
        cbf_scale, pixel = _card_scale(card)
        if scale is not None:
            cbf_scale = float(scale)
        if split_half and volume.data.ndim == 4:
            pairs = per_pair_cbf(volume)
            n = int(pairs.shape[-1])
            if n >= MIN_SPLIT_PAIRS:
                maps = (pairs.mean(axis=-1), pairs[..., 0::2].mean(axis=-1),
                        pairs[..., 1::2].mean(axis=-1))  # fmt: skip
                parts = [self._prepare_map(m, volume.affine, cbf_scale, pixel) for m in maps]
                ctx = parts[0][1]
                nz = int(parts[0][0].shape[2])
                ctx["split_half"] = {"slices": nz, "pairs": n}
                ctx["split_inputs"] = tuple(np.asarray(m, dtype=np.float32) for m in maps)
                return np.concatenate([p[0] for p in parts], axis=2), ctx
        return self._prepare_map(self.cbf_map(volume), volume.affine, cbf_scale, pixel)

    def _prepare_map(
        self, cbf: np.ndarray, affine: np.ndarray, cbf_scale: float, pixel: Sequence[float]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        import nibabel as nib

        from mrenhance.volume import voxel_sizes

        ornt = _orientation(affine)
        ras = nib.orientations.apply_orientation(cbf, ornt)
        vox = _to_ras_order(voxel_sizes(affine), ornt)
        shape = [max(1, int(round(ras.shape[a] * vox[a] / pixel[a]))) for a in (0, 1)]
        array = _resize(ras, shape) / np.float32(cbf_scale)
        ctx = {
            "scale": float(cbf_scale),
            "ornt": ornt.tolist(),
            "ras_shape": list(ras.shape),
            "pixel_mm": list(pixel),
        }
        return np.ascontiguousarray(array, dtype=np.float32), ctx

    def restore(
        self,
        array: np.ndarray,
        context: dict[str, Any],
        volume: Volume,
        *,
        report: dict[str, Any] | None = None,
    ) -> Volume:
        """Undo :meth:`prepare`: the input's grid and affine, CBF units, never clipped.

        A 4D input gives a 3D CBF map on its spatial grid. After a split-half
        :meth:`prepare` the three outputs are taken back to the input's grid and the result
        is ``w * net(mean) + (1 - w) * mean`` there (``w`` = 0 is exactly the plain mean),
        ``w`` from :func:`split_half_weight` on the halves in the input's grid (their own
        noise, not the resampled one); ``report`` receives the mode, ``w`` and the pairs.
        """
        report = report if report is not None else {}
        split = context.get("split_half")
        if split:
            nz = int(split["slices"])
            out = np.asarray(array, dtype=np.float32)
            o_m, o_a, o_b = (self._native(out[..., k * nz : (k + 1) * nz], context)
                             for k in range(3))  # fmt: skip
            i_m, i_a, i_b = context["split_inputs"]
            w = split_half_weight(o_a, i_a, o_b, i_b, i_m != 0)
            native = np.float32(w) * o_m + np.float32(1.0 - w) * i_m
            report.update(mode="split-half", weight=round(w, 3), pairs=int(split["pairs"]))
        else:
            report["mode"] = "none-3d-map-no-repeats" if volume.data.ndim == 3 else "off"
            native = self._native(np.asarray(array, dtype=np.float32), context)
        base = volume if volume.data.ndim == 3 else Volume(volume.data[..., 0], volume.affine,
                                                          dict(volume.meta))  # fmt: skip
        return base.with_data(np.ascontiguousarray(native, dtype=np.float32))

    @staticmethod
    def _native(array: np.ndarray, context: dict[str, Any]) -> np.ndarray:
        """Prepared slices (x', y', z) -> the input's grid and axes, CBF units."""
        import nibabel as nib

        out = _resize(np.asarray(array, dtype=np.float32), context["ras_shape"][:2])
        out = out * np.float32(context["scale"])
        inverse = nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt("RAS"), np.asarray(context["ornt"])
        )  # RAS back to the input's axes
        return nib.orientations.apply_orientation(out, inverse).astype(np.float32)

    # -- self-supervised adaptation hook (for the generic ``enhance --adapt``) ------------
    def adaptation_pairs(
        self,
        volume: Volume,
        card: Any = None,
        rng: np.random.Generator | None = None,
        *,
        n_splits: int = 4,
    ) -> Any:
        """Learning-from-noise pairs from a user's own repeats (``enhance --adapt``).

        From a 4D label/control (or per-pair CBF) series of n >= 2 pairs: ``n_splits``
        random splits of the pairs into two disjoint halves of n // 2 (an odd pair out);
        one half's mean CBF is an input, the other half's its target, and (# choice, as
        ``lfn_symmetric`` in training) the reverse too, so 2 x ``n_splits`` pairs. No
        clean data is needed (Sec. 2.1: the Noise2Noise argument). Both maps are prepared
        as :meth:`prepare` prepares the input: RAS, each slice resampled to the training
        pixel size, / the CBF scale; axial slices (the last axis) are the 2D samples.

        Patch centres lie in a head mask (:func:`mrenhance.preprocess.head_mask`) of the
        voxel-wise median of the per-pair CBF maps (# choice: robust to outlier pairs; no
        segmentation needed); patches are :data:`ADAPT_PATCH` with the training augmentation
        (random flips and blobs, :func:`_adapt_augment`); L1 loss (the paper's, robust to
        outlier pairs).

        # choice: each half averages n // 2 pairs, so its noise is ~sqrt(2) above that of
        the n-pair mean the adapted network then enhances: the network learns to denoise
        slightly noisier maps than it is given (halves are the only split with no pair in
        both roles and no clean data).

        Returns :class:`mrenhance.engine.adapt.AdaptationPairs` (arrays (x', y', z)
        float32; ``info["splits"]``: the 0-based pairs of each split's input and target).
        """
        from mrenhance.engine.adapt import AdaptationPairs
        from mrenhance.preprocess import head_mask

        self.check_input(volume)
        source = volume.meta.get("source", "input")
        if volume.data.ndim != 4:
            raise InputError(f"{source}: adaptation needs a 4D series of repeated pairs")
        rng = rng if rng is not None else np.random.default_rng(0)
        cbf = per_pair_cbf(volume)
        n = cbf.shape[-1]
        if n < 2:
            raise InputError(f"{source}: adaptation needs at least 2 pairs, got {n}")
        cbf_scale, pixel = _card_scale(card)

        def prepared(cbf_map: np.ndarray) -> np.ndarray:
            return self._prepare_map(cbf_map, volume.affine, cbf_scale, pixel)[0]

        # the median over pairs: an outlier pair's spike (+-1000s of ml/100 g/min in a
        # slab) would make Otsu's threshold of the mean pick the spike, not the brain
        mask = head_mask(prepared(np.median(cbf, axis=-1)))
        inputs, targets, splits = [], [], []
        for _ in range(int(n_splits)):
            order = rng.permutation(n)
            a, b = np.sort(order[: n // 2]), np.sort(order[n // 2 : 2 * (n // 2)])
            inputs.append(prepared(cbf[..., a].mean(axis=-1)))
            targets.append(prepared(cbf[..., b].mean(axis=-1)))
            splits.append({"input_pairs": a.tolist(), "target_pairs": b.tolist()})
        inputs, targets = inputs + targets, targets + inputs  # the reverse roles
        return AdaptationPairs(
            inputs=inputs,
            targets=targets,
            masks=[mask] * len(inputs),
            augment=_adapt_augment(),
            loss="l1",
            patch_size=ADAPT_PATCH,
            info={"n_pairs": int(n), "pairs_per_half": int(n // 2), "splits": splits},
        )

    # -- protocol -------------------------------------------------------------------------
    def baselines(self, data: dict[str, Any] | None = None) -> dict[str, Method]:
        """Classical rows; the Gaussian's FWHM and the NLM strength are the best on the
        validation subjects (BM3D is left to ``benchmarks/asl_table.py``: minutes per map).

        The search (simulating the validation subjects) runs at the first call of a tuned
        method, not here.
        """
        from mrenhance.baselines import denoise as D

        cfg = self.data_config(data or {})
        chosen: dict[str, float] = {}

        def tuned(key: str) -> float:
            if not chosen:
                val = load_cases(cfg, "validation") if cfg["subjects"]["validation"] else []
                chosen["fwhm"] = best_gaussian_fwhm(val)[0] if val else 4.0
                chosen["nlm"] = (
                    best_strength(val, lambda x, k: D.nlm_denoise(x, strength=k)) if val else 1.0
                )
            return chosen[key]

        return {
            "mean of 10 pairs (input)": lambda c: c.input_10,
            "gaussian (best FWHM on validation)": lambda c: D.gaussian_denoise(
                c.input_10, tuned("fwhm")
            ),
            "non-local means (strength tuned on validation)": lambda c: D.nlm_denoise(
                c.input_10, strength=tuned("nlm")
            ),
        }

    def network_method(self, enhancer: Any) -> Method:
        return network_method(enhancer)

    def evaluate(
        self,
        methods: dict[str, Method],
        *,
        data: dict[str, Any] | None = None,
        which: str = "test",
        cases: Sequence[AslCase] | None = None,
        correlation_out: Any = None,
    ) -> list[dict[str, Any]]:
        """The protocol: every method on the ``which`` subjects; mean and std per method."""
        cfg = self.data_config(data or {})
        cases = list(cases) if cases is not None else load_cases(cfg, which)
        return evaluate_cases(methods, cases, correlation_out=correlation_out)

    def protocol(self, data: dict[str, Any] | None = None) -> str:
        cfg = self.data_config(data or {})
        n = cfg["subjects"]["test"]
        return (
            f"{n} simulated test subjects (seed {cfg['seed']}, outlier fraction "
            f"{cfg['outlier_fraction']:g}); 10-pair mean input; axial slices 36-60 every third, "
            f"brain mask; PSNR/SSIM data range {DATA_RANGE:g} ml/100 g/min vs pseudo gold "
            "(and _truth: the true CBF); SNR GM/WM ROI slice 50; mean and std over subjects"
        )

    def example_input(self, rng: np.random.Generator) -> Volume:
        data = np.zeros((32, 36, 6), np.float32)
        data[6:26, 6:30] = 40 + 20 * rng.random((20, 24, 6), dtype=np.float32)
        return Volume(data, np.diag([3.0, 3.0, 5.0, 1.0]), {"source": "example"})

    # -- demo -----------------------------------------------------------------------------
    def demo(
        self,
        out: Any,
        enhancers: dict[str, Any],
        *,
        full: bool = False,
        say: Callable[[str], None] = print,
    ) -> dict[str, Any]:
        """One simulated subject: 10-pair input, baselines, each network, pseudo gold, truth.

        Writes ``asl/`` NIfTIs (the stored axial slices), ``asl/metrics.*`` and
        ``asl/figure.png``; ``full`` is ignored (the maps are small).
        """
        from pathlib import Path

        from mrenhance.io import save
        from mrenhance.report.tables import write_table
        from mrenhance.simulate.asl import simulate_asl_subject

        folder = Path(out) / "asl"
        folder.mkdir(parents=True, exist_ok=True)
        say("simulating one ASL subject (40 label/control pairs, Xie et al. 2020 protocol)")
        case = _case(simulate_asl_subject(subject_seed(0, "test", 0), name="demo-subject"))
        methods: dict[str, Method] = {
            "mean of 10 pairs (input)": lambda c: c.input_10,
            **{k: v for k, v in baseline_methods(4.0, bm3d=False).items() if "gaussian" in k},
        }
        for name in sorted(enhancers):
            methods[name] = network_method(enhancers[name])
        results = {name: np.asarray(m(case), np.float32) for name, m in methods.items()}
        rows = []
        for name, arr in results.items():
            metrics = case_metrics(case, arr)  # a region ratio is NaN without that region
            rows.append({"method": name, **{k: v for k, v in metrics.items() if v == v}})
        tables = write_table(rows, folder / "metrics", title="ASL demo subject")
        panels = {**results, "pseudo gold (40 pairs)": case.pseudo_gold, "truth": case.truth}
        files = {}
        for name, arr in panels.items():
            path = folder / f"{_safe(name.split(' (')[0])}.nii.gz"
            files[name] = save(case.volume(arr).with_data(arr, step=f"demo: {name}"), path,
                               overwrite=True)  # fmt: skip
        figure = _demo_figure(panels, folder / "figure.png")
        return {
            "heading": "ASL CBF denoising, learning from noise (Xie et al. 2020)",
            "text": "One simulated subject, axial slice 50 and the paper's metrics: "
            + self.protocol({"subjects": {"train": 0, "validation": 0, "test": 1}}),
            "table_rows": rows,
            "images": [figure],
            "files": files,
            "tables": tables,
        }


def _demo_figure(panels: dict[str, np.ndarray], path: Any):
    from matplotlib.figure import Figure

    from mrenhance.report.figures import save_figure

    fig = Figure(figsize=(2.2 * len(panels), 2.9))
    for k, (name, arr) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.imshow(np.rot90(arr[:, :, _SNR_IDX]), vmin=0, vmax=100, cmap="viridis")
        ax.set_title(name, fontsize=7)
        ax.set_axis_off()
    fig.suptitle("CBF (ml/100 g/min), MNI slice 50", fontsize=9)
    return save_figure(fig, path)


#: The tiling of the shipped card and of validation: one 96 x 112 tile per 2 mm MNI slice.
INFERENCE = {"patch_size": [96, 112], "overlap": 32, "blend": "crop", "slice_axis": 2}

TASK = AslTask()
