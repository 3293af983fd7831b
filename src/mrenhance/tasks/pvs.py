"""PVS enhancement: the evaluation protocol of Jung et al. 2019 (DCNN6+SC+B), as a Task.

What an input and a target are
    input: a 7T-like T2w image (0.5 mm) of a synthetic subject with perivascular spaces,
    blurred and with Rician noise (:mod:`mrenhance.simulate.pvs`); target: the "enhanced
    image", the noise-free phantom with the PVS contrast raised (what Hou et al.'s filter,
    the paper's target, aims at). ``data.target`` switches the target to a classical
    enhancer's output of the input instead (``tophat``, ``nlm_tophat``, ``frangi``), as the
    paper trained on a filter's output.

Subjects
    Drawn from seeds: ``train_subjects`` for training, ``validation_subjects`` for
    checkpoint selection and the detection threshold, ``test_subjects`` for the numbers
    (disjoint seed streams). Each is a crop (``crop_shape`` at ``voxel_mm``) around one
    hemisphere's centrum semiovale and basal ganglia, or a whole brain (``crop_shape: null``).

Normalisation (one rule for training, evaluation and ``enhance``)
    input and target / the 99.5th percentile of the input in its automatic head mask
    (:func:`mrenhance.preprocess.intensity_scale`), recorded in the card with the training
    voxel size. ``prepare`` resamples an input of another voxel size to it (cubic) and
    ``restore`` resamples the result back onto the input's grid (affine kept); the network
    runs only over the bounding box of a mask (the user's ``--mask``, else the automatic
    head mask) plus a margin; with a user mask, voxels outside it are 0 in the output.

Metrics (Table 1 and what the paper could not measure)
    PSNR and SSIM within WM and within the brain against the target, data_range 1 after
    dividing both by the target's 99.5th brain percentile. Detection against the true tubes,
    VALDO-style (:mod:`mrenhance.detection`), in the domain where PVS may be (WM or basal
    ganglia): ROC AUC of the method's map, voxel Dice and cluster F1 at the threshold that
    maximises Dice on the validation subjects, |count| and |volume| differences; the same
    per region and the share of tubes found per radius bin. A network's map is its enhanced
    image; a filter's map is its own response (top-hat, vesselness).

Threshold units (one rule for the protocol, the card and ``mrenhance pvs``)
    Every detection map is in units of the input's normalisation scale: a network's map is
    its enhanced image / the input's scale (:func:`network_score`, i.e. the network's own
    output before ``restore`` scales it back), the noisy input's is the input / its scale,
    a filter's is its response on the input / its scale. So the card's
    ``metrics.test.threshold`` is unit-free and ``mrenhance pvs`` applies it to a scan in
    any intensity unit (the raw enhanced image is in the scanner's units, and each
    phantom's scale differs: 0.8-1.6 on the default test and validation phantoms).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mrenhance.errors import ConfigError, InputError
from mrenhance.io.validate import check_same_grid
from mrenhance.models.card import DEFAULT_NORMALISATION, Normalisation
from mrenhance.tasks.base import InputKind, Task, TrainingData, register_task, require_3d
from mrenhance.volume import Volume, voxel_sizes

DATA_DEFAULTS: dict[str, Any] = {
    "voxel_mm": 0.5,
    "crop_shape": [96, 96, 96],
    "train_subjects": 8,
    "validation_subjects": 2,
    "test_subjects": 4,
    "snr": [8.0, 20.0],
    "blur_kspace_factor": [1.0, 1.4],
    "bias_strength": [0.0, 0.3],
    "texture_strength": [0.0, 0.03],
    "density_per_cm3": {"centrum_semiovale": [0.05, 3.0], "basal_ganglia": [0.1, 4.0]},
    "radius_mm": [0.25, 1.5],
    "length_mm": [3.0, 20.0],
    "pvs_gain": 1.0,
    "target": "truth",
    "normalise": dict(DEFAULT_NORMALISATION),
    "min_mask_fraction": 0.5,
    "seed": 0,
}

TARGETS = ("truth", "tophat", "nlm_tophat", "frangi")
SPLITS = {"train": 0, "validation": 1, "test": 2}
REFERENCE_PERCENTILE = 99.5
RADIUS_BINS_MM = (0.25, 0.5, 1.0, 1.5)
#: voxels of context kept around the mask's bounding box (the DCNN6 receptive-field radius)
MASK_MARGIN_VOX = 38
#: choice: the fewest voxels along any axis of an input; one or two slices are a 2D image,
#: which a 3D network (3x3x3 kernels) would see mostly as padding
MIN_AXIS_VOX = 3
#: keys copied into the model card by ``mrenhance ship``
CARD_METRIC_KEYS = (
    "psnr_wm",
    "psnr_brain",
    "ssim_wm",
    "ssim_brain",
    "auc",
    "dice",
    "f1",
    "count_diff",
    "volume_diff_mm3",
    "threshold",
)

Method = Callable[[Any], Any]


# ---------------------------------------------------------------------------- subjects
def _case_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "voxel_mm": float(cfg["voxel_mm"]),
        "crop_shape": None if cfg["crop_shape"] is None else tuple(cfg["crop_shape"]),
        "density_per_cm3": {k: tuple(v) for k, v in cfg["density_per_cm3"].items()},
        "radius_mm": tuple(cfg["radius_mm"]),
        "length_mm": tuple(cfg["length_mm"]),
        "snr": tuple(cfg["snr"]) if isinstance(cfg["snr"], list) else cfg["snr"],
        "blur_kspace_factor": _spec(cfg["blur_kspace_factor"]),
        "bias_strength": _spec(cfg["bias_strength"]),
        "texture_strength": _spec(cfg["texture_strength"]),
        "pvs_gain": float(cfg["pvs_gain"]),
    }


def _spec(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


@functools.lru_cache(maxsize=4)
def _cases_cached(key: str, which: str) -> tuple[Any, ...]:
    from mrenhance.simulate.pvs import simulate_pvs_case

    cfg = json.loads(key)
    n = int(cfg[f"{which}_subjects"] if which != "train" else cfg["train_subjects"])
    kwargs = _case_kwargs(cfg)
    return tuple(
        simulate_pvs_case(np.random.default_rng([int(cfg["seed"]), SPLITS[which], i]), **kwargs)
        for i in range(n)
    )


def load_cases(cfg: dict[str, Any], which: str = "test") -> list[Any]:
    """The ``which`` subjects (``train``, ``validation``, ``test``) of a validated config."""
    if which not in SPLITS:
        raise ConfigError(f"which must be one of {', '.join(SPLITS)}, got {which!r}")
    key = json.dumps({k: cfg[k] for k in sorted(cfg) if k not in ("normalise", "target")})
    return list(_cases_cached(key, which))


def input_scale(case: Any, rule: Normalisation) -> float:
    from mrenhance.preprocess import intensity_scale

    return intensity_scale(case.image, rule)


def classical_target(image: np.ndarray, kind: str, voxel_mm: float) -> np.ndarray:
    """A classical enhancer's enhanced image of ``image`` (the recipe's ``target`` switch)."""
    from mrenhance.baselines import vessels

    fn = {
        "tophat": vessels.white_tophat,
        "nlm_tophat": vessels.nlm_tophat,
        "frangi": vessels.frangi_vesselness,
    }[kind]
    return fn(image, voxel_mm=voxel_mm)[0]


def training_target(case: Any, kind: str) -> np.ndarray:
    """The target of ``case`` in its raw units: the truth or a classical enhancer's output."""
    if kind == "truth":
        return case.target
    return classical_target(case.image, kind, case.voxel_mm)


# ---------------------------------------------------------------------------- methods
def baseline_methods(voxel_mm: float) -> dict[str, Method]:
    """The classical enhancers; each maps a case to ``{"image", "score"}`` (raw units)."""
    from mrenhance.baselines import vessels

    def wrap(fn: Callable[..., tuple[np.ndarray, np.ndarray]]) -> Method:
        def method(case: Any) -> dict[str, np.ndarray]:
            scale = np.float32(input_scale(case, Normalisation()))
            image, response = fn(case.image / scale, voxel_mm=case.voxel_mm)
            return {"image": image * scale, "score": response}

        return method

    def noisy(case: Any) -> dict[str, np.ndarray]:
        scale = np.float32(input_scale(case, Normalisation()))
        return {"image": case.image, "score": case.image / scale}

    return {
        "input (noisy)": noisy,
        "top-hat (Uchiyama)": wrap(vessels.white_tophat),
        "Frangi": wrap(vessels.frangi_vesselness),
        "NLM + top-hat": wrap(vessels.nlm_tophat),
    }


def network_score(enhancer: Any, image: np.ndarray, enhanced: np.ndarray) -> np.ndarray:
    """The detection map of a network: ``enhanced`` / the normalisation scale of ``image``.

    image, enhanced : (x, y, z) the input and the Enhancer's output on the input's grid.
    The scale is the Enhancer's own when it was given one, else the input's by the
    Enhancer's rule (the card's). Returns (x, y, z) float32 in threshold units (module doc).
    """
    from mrenhance.preprocess import intensity_scale

    scale = enhancer.scale
    if scale is None:
        rule, _ = _rule_and_voxel(enhancer.normalisation)
        scale = intensity_scale(np.asarray(image, np.float32), rule)
    return (np.asarray(enhanced, np.float32) / np.float32(scale)).astype(np.float32)


def network_method(enhancer: Any) -> Method:
    """A network through the Enhancer (the code path of ``enhance``): its image, and as its
    map that image in threshold units (:func:`network_score`, as ``mrenhance pvs``)."""

    def method(case: Any) -> dict[str, np.ndarray]:
        vol = Volume(case.image, case.affine, {"source": "pvs phantom"})
        image = enhancer(vol).data
        return {"image": image, "score": network_score(enhancer, case.image, image)}

    return method


def threshold_mask(
    score: np.ndarray, threshold: float, domain: np.ndarray, min_voxels: int = 1
) -> np.ndarray:
    """(x, y, z) bool: ``score >= threshold`` in ``domain``, 26-connected clusters of fewer
    than ``min_voxels`` voxels removed (1: none; the protocol's detection mask)."""
    from scipy import ndimage

    from mrenhance.detection import CONNECTIVITY_26

    pred = (np.asarray(score) >= threshold) & np.asarray(domain, bool)
    if min_voxels > 1:
        labels, n = ndimage.label(pred, structure=CONNECTIVITY_26)
        if n:
            small = np.bincount(labels.ravel()) < min_voxels
            small[0] = False
            pred[small[labels]] = False
    return pred


def _as_result(out: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(out, dict):
        return out["image"], out["score"]
    return out, out


def image_metrics(image: np.ndarray, case: Any) -> dict[str, float]:
    """PSNR and SSIM within WM and within the brain against the case's target (data_range 1)."""
    from mrenhance.metrics import psnr, ssim

    ref = np.float32(np.percentile(case.target[case.brain], REFERENCE_PERCENTILE))
    x, y = image / ref, case.target / ref
    return {
        "psnr_wm": psnr(x, y, data_range=1.0, mask=case.wm),
        "psnr_brain": psnr(x, y, data_range=1.0, mask=case.brain),
        "ssim_wm": ssim(x, y, data_range=1.0, mask=case.wm),
        "ssim_brain": ssim(x, y, data_range=1.0, mask=case.brain),
    }


def detection_metrics(score: np.ndarray, threshold: float, case: Any) -> dict[str, float]:
    """VALDO-style scores of ``score`` in the case's PVS domain, per region and radius."""
    from mrenhance.detection import detection_scores, radius_recall

    vox3 = case.voxel_mm**3
    domain = case.possible
    out = detection_scores(score, threshold, case.instances, domain, voxel_mm3=vox3)
    row = {k: out[k] for k in ("auc", "dice", "f1", "count_diff", "volume_diff_mm3")}
    pred = score >= threshold
    for region, short in (("centrum_semiovale", "cso"), ("basal_ganglia", "bg")):
        d = case.regions[region] & domain
        r = detection_scores(score, threshold, case.instances, d, voxel_mm3=vox3)
        row.update({f"{k}_{short}": r[k] for k in ("dice", "f1", "count_diff")})
    radii = [t["radius_mm"] for t in case.tube_table]
    for k, v in radius_recall(pred, case.instances, radii, RADIUS_BINS_MM, domain).items():
        row[f"recall_{k}"] = v
    return row


def _threshold_on(method: Method, cases: Sequence[Any]) -> float:
    from mrenhance.detection import best_threshold

    scores = [_as_result(method(c))[1] for c in cases]
    return best_threshold(scores, [c.pvs_mask for c in cases], [c.possible for c in cases])


def evaluate_cases(
    methods: dict[str, Method],
    test: Sequence[Any],
    validation: Sequence[Any],
) -> list[dict[str, Any]]:
    """Every method on ``test`` (means over cases), thresholds chosen on ``validation``."""
    rows = []
    for name, method in methods.items():
        threshold = _threshold_on(method, validation)
        per_case, seconds = [], 0.0
        for case in test:
            t0 = time.perf_counter()
            image, score = _as_result(method(case))
            seconds += time.perf_counter() - t0
            per_case.append(
                {**image_metrics(image, case), **detection_metrics(score, threshold, case)}
            )
        row: dict[str, Any] = {"method": name}
        for key in per_case[0]:
            vals = np.array([r[key] for r in per_case], float)
            row[key] = round(float(np.nanmean(vals)), 4) if np.isfinite(vals).any() else None
        row["threshold"] = round(threshold, 5)
        row["seconds"] = round(seconds / max(len(test), 1), 2)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------- resampling
def _resample(data: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``data`` on a grid of ``shape`` covering the same field of view (voxel edges aligned)."""
    from scipy import ndimage

    zoom = [n / m for n, m in zip(shape, data.shape, strict=True)]
    out = ndimage.zoom(data, zoom, order=order, mode="grid-mirror", grid_mode=True)
    if out.shape != tuple(shape):  # rounding of the zoom: pad or cut the last voxel
        fixed = np.zeros(shape, out.dtype)
        box = tuple(slice(0, min(a, b)) for a, b in zip(out.shape, shape, strict=True))
        fixed[box] = out[box]
        out = fixed
    return out


def _rule_and_voxel(card: Any) -> tuple[Normalisation, tuple[float, ...] | None]:
    if card is None:
        return Normalisation(), None
    if isinstance(card, Normalisation):
        return card, None
    if hasattr(card, "normalisation"):
        return card.normalisation, getattr(card, "voxel_size_mm", None)
    pre = card.get("preprocessing") or {}
    rule = Normalisation.from_dict(pre.get("normalisation", DEFAULT_NORMALISATION), "card")
    voxel = pre.get("voxel_size_mm")
    return rule, tuple(voxel) if voxel else None


def _mask_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    if idx.size == 0:
        return tuple(slice(0, n) for n in mask.shape)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


# ---------------------------------------------------------------------------- the task
@register_task
class PVSTask(Task):
    """PVS enhancement (Jung et al. 2019): noisy 7T-like T2w -> enhanced image."""

    name = "pvs"
    description = "PVS enhancement of 7T-like T2w images (noisy, blurred -> enhanced PVS)"
    paper = "Jung et al. 2019, MICCAI workshops (PVS enhancement, very deep 3D dense network)"
    spatial_dims = 3
    input_kind = InputKind.IMAGE_3D
    adapts_voxel_size = True  # prepare: the input is resampled to the training voxel size
    data_defaults = DATA_DEFAULTS
    cli_commands = ("mrenhance.tasks.pvs_cli",)
    card_metric_keys = CARD_METRIC_KEYS

    def data_config(self, data: dict[str, Any], source: str = "recipe") -> dict[str, Any]:
        cfg = super().data_config(data, source)
        if cfg["target"] not in TARGETS:
            raise ConfigError(
                f"{source}: data.target: {cfg['target']!r}, use one of {', '.join(TARGETS)}"
            )
        v = cfg["voxel_mm"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.1 <= v <= 3:
            raise ConfigError(f"{source}: data.voxel_mm: expected a size in [0.1, 3] mm, got {v!r}")
        crop = cfg["crop_shape"]
        if crop is not None and (
            not isinstance(crop, list) or len(crop) != 3 or any(int(c) < 16 for c in crop)
        ):
            raise ConfigError(f"{source}: data.crop_shape: expected null or 3 sizes >= 16")
        for key in ("train_subjects", "validation_subjects", "test_subjects"):
            if not isinstance(cfg[key], int) or cfg[key] < 1:
                raise ConfigError(f"{source}: data.{key}: expected an integer >= 1")
        unknown = set(cfg["density_per_cm3"]) - {"centrum_semiovale", "basal_ganglia"}
        if unknown or len(cfg["density_per_cm3"]) != 2:
            raise ConfigError(
                f"{source}: data.density_per_cm3: give centrum_semiovale and basal_ganglia"
            )
        try:
            cfg["normalise"] = Normalisation.from_dict(cfg["normalise"], "data").to_dict()
        except InputError as err:
            raise ConfigError(f"{source}: {str(err).replace('preprocessing.', '')}") from err
        return cfg

    def preprocessing(self, cfg: dict[str, Any], subjects: Sequence[Any]) -> dict[str, Any]:
        v = float(cfg["voxel_mm"])
        return {
            "normalisation": dict(cfg["normalise"]),
            "voxel_size_mm": [v, v, v],
            "target": cfg["target"],
        }

    def training_data(
        self,
        data: dict[str, Any],
        patch_size: Sequence[int],
        *,
        seed: int = 0,
        source: str = "recipe",
    ) -> TrainingData:
        """Patch pairs (input, target) / input scale from brain-containing regions (Sec. 2.2)."""
        from mrenhance.engine.patches import PatchDataset

        cfg = self.data_config(data, source)
        rule = Normalisation.from_dict(cfg["normalise"], source)
        cases = load_cases(cfg, "train")
        scales = [np.float32(input_scale(c, rule)) for c in cases]
        dataset = PatchDataset(
            [c.image / s for c, s in zip(cases, scales, strict=True)],
            [training_target(c, cfg["target"]) / s for c, s in zip(cases, scales, strict=True)],
            tuple(patch_size),
            mask=[c.brain for c in cases],
            min_mask_fraction=float(cfg["min_mask_fraction"]),
            seed=seed,
        )
        validation = load_cases(cfg, "validation")
        val_targets = [training_target(c, cfg["target"]) for c in validation]

        def validate(model) -> dict[str, float]:
            from mrenhance.enhance_api import Enhancer

            enhancer = Enhancer(
                model,
                self,
                normalisation=rule,
                inference={"patch_size": [64, 64, 64], "overlap": 16, "blend": "crop"},
            )
            from mrenhance.metrics import psnr

            psnrs = []
            for case, target in zip(validation, val_targets, strict=True):
                # choice: the central 64^3 of each validation phantom (one tile, cheap)
                box = tuple(
                    slice(max(n // 2 - 32, 0), max(n // 2 - 32, 0) + 64) for n in target.shape
                )
                vol = Volume(case.image[box], case.affine, {"source": "validation"})
                out = enhancer(vol).data
                ref = np.float32(np.percentile(target[case.brain], REFERENCE_PERCENTILE))
                wm = case.wm[box]
                psnrs.append(psnr(out / ref, target[box] / ref, data_range=1.0, mask=wm))
            return {"psnr": float(np.mean(psnrs))}

        return TrainingData(dataset, validate, cases)

    # -- one input ------------------------------------------------------------------------
    def check_input(self, volume: Volume) -> None:
        require_3d(volume, "pvs models need a 3D T2w image")
        if min(volume.data.shape) < MIN_AXIS_VOX:
            raise InputError(
                f"{volume.meta.get('source', 'input')}: pvs models need a 3D volume, at least "
                f"{MIN_AXIS_VOX} voxels along each axis, got shape {tuple(volume.data.shape)}"
            )

    def prepare(
        self,
        volume: Volume,
        card: Any = None,
        *,
        scale: float | None = None,
        mask: Volume | np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Resample to the card's voxel size, normalise, crop to the mask's box (+ margin).

        mask : optional (x, y, z) array or Volume on the input's grid; the network runs over
            its bounding box only and the output is 0 outside it. Default: the automatic
            head mask's box (nothing is zeroed).
        Returns (array (x', y', z') float32, context).
        """
        from mrenhance.preprocess import head_mask, intensity_scale

        self.check_input(volume)
        rule, voxel = _rule_and_voxel(card)
        data = np.asarray(volume.data, np.float32)
        ctx: dict[str, Any] = {"input_shape": data.shape, "normalisation": rule.to_dict()}
        user_mask = None
        if isinstance(mask, Volume):  # shape, grid, not empty: one line naming the mask
            user_mask = check_same_grid(mask, volume, "mask") > 0
        elif mask is not None:  # an array (the API): no grid to compare
            user_mask = np.asarray(mask) > 0
            if user_mask.shape != data.shape:
                raise InputError(
                    f"--mask: shape {user_mask.shape} differs from the image's {data.shape}"
                )
            if not user_mask.any():
                raise InputError("--mask: the mask is empty (no voxel > 0)")
        if voxel is not None:
            have = np.asarray(voxel_sizes(volume.affine))
            want = np.asarray(voxel, float)
            if np.any(np.abs(have / want - 1) > 0.02):
                shape = tuple(
                    max(1, int(round(n * h / w)))
                    for n, h, w in zip(data.shape, have, want, strict=True)
                )
                data = np.clip(_resample(data, shape, order=3), 0, None)
                if user_mask is not None:
                    user_mask = _resample(user_mask.astype(np.float32), shape, order=1) >= 0.5
                ctx["resampled_shape"] = shape
        if scale is None:
            scale = intensity_scale(data, rule)
        region = user_mask if user_mask is not None else head_mask(data)
        box = _mask_box(region, MASK_MARGIN_VOX)
        ctx.update(
            {
                "scale": float(scale),
                "box": [(s.start, s.stop) for s in box],
                "grid_shape": data.shape,
                "mask": None if user_mask is None else user_mask[box],
                "input_mask": None
                if mask is None or "resampled_shape" not in ctx
                else np.asarray(mask.data if isinstance(mask, Volume) else mask) > 0,
            }
        )
        return (data[box] / np.float32(scale)).astype(np.float32), ctx

    def restore(self, array: np.ndarray, context: dict[str, Any], volume: Volume) -> Volume:
        """Undo :meth:`prepare`: scale back, put the box into its grid, resample back."""
        out = np.clip(array * np.float32(context["scale"]), 0, None).astype(np.float32)
        if context.get("mask") is not None and context["mask"].shape == out.shape:
            out = out * context["mask"]
        grid = tuple(context.get("grid_shape", out.shape))
        box = tuple(slice(a, b) for a, b in context.get("box", [(0, n) for n in out.shape]))
        full = np.zeros(grid, np.float32)
        if tuple(b.stop - b.start for b in box) == out.shape:
            full[box] = out
        else:  # a caller restored a region of its own
            return volume.with_data(out)
        if "resampled_shape" in context:
            full = np.clip(_resample(full, context["input_shape"], order=3), 0, None)
            if context.get("input_mask") is not None:  # 0 outside the mask on this grid too
                full = full * context["input_mask"]
        return volume.with_data(full.astype(np.float32))

    # -- protocol -------------------------------------------------------------------------
    def baselines(self, data: dict[str, Any] | None = None) -> dict[str, Method]:
        cfg = self.data_config(data or {})
        return baseline_methods(float(cfg["voxel_mm"]))

    def network_method(self, enhancer: Any) -> Method:
        return network_method(enhancer)

    def evaluate(
        self,
        methods: dict[str, Method],
        *,
        data: dict[str, Any] | None = None,
        which: str = "test",
    ) -> list[dict[str, Any]]:
        """Every method on the ``which`` subjects; detection thresholds from validation."""
        cfg = self.data_config(data or {})
        return evaluate_cases(methods, load_cases(cfg, which), load_cases(cfg, "validation"))

    def protocol(self, data: dict[str, Any] | None = None) -> str:
        cfg = self.data_config(data or {})
        crop = "whole brain" if cfg["crop_shape"] is None else "x".join(map(str, cfg["crop_shape"]))
        return (
            f"{cfg['test_subjects']} synthetic PVS phantoms (seed {cfg['seed']}, test stream), "
            f"{cfg['voxel_mm']} mm, {crop}, SNR {cfg['snr']}, target '{cfg['target']}'; "
            "PSNR/SSIM in WM and brain, intensities / target's 99.5th brain percentile, "
            "data_range 1; detection in WM + basal ganglia, maps / the input's normalisation "
            f"scale, threshold maximising Dice on {cfg['validation_subjects']} validation phantoms"
        )

    def example_input(self, rng: np.random.Generator) -> Volume:
        data = np.zeros((20, 20, 16), np.float32)
        data[4:16, 4:16, 3:13] = 100 + 20 * rng.random((12, 12, 10), dtype=np.float32)
        data[9:11, 9:11, 3:13] = 300  # a bright vertical "PVS"
        return Volume(data, np.diag([0.5, 0.5, 0.5, 1.0]), {"source": "example"})

    # -- demo -----------------------------------------------------------------------------
    def demo(
        self,
        out: Any,
        enhancers: dict[str, Any],
        *,
        full: bool = False,
        say: Callable[[str], None] = print,
    ) -> dict[str, Any]:
        """Noisy input, Frangi, each network, the target and the true-mask outline, zoomed
        on the centrum semiovale of one test phantom; metrics as the protocol computes them."""
        from pathlib import Path

        from mrenhance.io import save
        from mrenhance.report.tables import write_table

        out = Path(out)
        sub = out / "pvs"
        sub.mkdir(parents=True, exist_ok=True)
        cfg = self.data_config({"test_subjects": 1 if not full else 4})
        say("drawing a synthetic 7T-like T2w phantom with PVS (0.5 mm crop) ...")
        test = load_cases(cfg, "test")
        validation = load_cases(cfg, "validation")
        base = baseline_methods(float(cfg["voxel_mm"]))
        methods: dict[str, Method] = {
            "input (noisy)": base["input (noisy)"],
            "Frangi": base["Frangi"],
        }
        methods["top-hat (Uchiyama)"] = base["top-hat (Uchiyama)"]
        for name in sorted(enhancers):
            say(f"running {name} on the phantom ...")
            methods[name] = network_method(enhancers[name])
        rows = evaluate_cases(methods, test, validation)
        tables = write_table(
            [
                {k: r[k] for k in ("method", "psnr_wm", "ssim_wm", "auc", "dice", "f1", "seconds")}
                for r in rows
            ],
            sub / "metrics",
            title="PVS phantom (test), WM / PVS domain",
        )
        case = test[0]
        images = {name: _as_result(m(case))[0] for name, m in methods.items()}
        images["target (enhanced truth)"] = case.target
        files = {}
        vol = Volume(case.image, case.affine, {"source": "pvs phantom"})
        for name, arr in {**images, "true PVS mask": case.pvs_mask.astype(np.float32)}.items():
            fname = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
            files[name] = save(
                vol.with_data(np.asarray(arr, np.float32), step=f"demo: {name}"),
                sub / f"{fname}.nii.gz",
                overwrite=True,
            )
        figure = pvs_figure(images, case, sub / "figure.png")
        return {
            "heading": "PVS enhancement (Jung et al. 2019)",
            "text": "PSNR/SSIM against the enhanced target and detection of the true tubes: "
            + self.protocol(cfg),
            "table_rows": rows,
            "images": [figure],
            "files": files,
            "tables": tables,
        }


def pvs_figure(images: dict[str, np.ndarray], case: Any, path: Any) -> Any:
    """One axial slice through the centrum semiovale, zoomed, true PVS outlined in each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cso = case.regions["centrum_semiovale"]
    per_z = (case.pvs_mask & cso).sum(axis=(0, 1))
    z = int(np.argmax(per_z)) if per_z.any() else case.image.shape[2] // 2
    idx = (
        np.argwhere(cso[:, :, z])
        if cso[:, :, z].any()
        else np.argwhere(np.ones(case.image.shape[:2]))
    )
    c = idx.mean(0).astype(int)
    half = min(24, *[n // 2 for n in case.image.shape[:2]])
    xs = slice(max(c[0] - half, 0), max(c[0] - half, 0) + 2 * half)
    ys = slice(max(c[1] - half, 0), max(c[1] - half, 0) + 2 * half)
    ref = float(np.percentile(case.target[case.brain], REFERENCE_PERCENTILE))
    fig, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 2.9))
    for ax, (name, arr) in zip(np.atleast_1d(axes), images.items(), strict=True):
        ax.imshow(arr[xs, ys, z].T / ref, cmap="gray", vmin=0, vmax=1.0, origin="lower")
        ax.contour(
            case.pvs_mask[xs, ys, z].T.astype(float), levels=[0.5], colors="r", linewidths=0.5
        )
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"PVS phantom, axial slice {z} (centrum semiovale), red: true PVS", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


TASK = PVSTask()
