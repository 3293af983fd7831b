"""3D T1 super-resolution: the evaluation protocol of Chen et al. 2018 (mDCSRN), as a Task.

What an input and a target are
    target (HR): a T1 volume; input (LR): the same volume with the outer k-space truncated
    (Sec. 2.6: 2x2 in x and y), back on the HR grid (zero-filled), so the network maps a
    same-size image to a same-size image. The interpolation baselines instead start from the
    low-matrix image (what the scanner would reconstruct) and interpolate it to the HR grid
    (Table 2, "bicubic").

Normalisation (one rule for training, evaluation and ``enhance``)
    Both images are divided by one scale computed from the *input* alone
    (:func:`mrenhance.preprocess.intensity_scale`: the 99.5th percentile inside an automatic
    head mask of the LR image, by default). The rule is recorded in the model card, and
    ``enhance`` applies it to the user's scan exactly as training applied it to the LR
    image. (Before, training used the HR brain mask and ``enhance`` all voxels > 0.)

How pairs are made
    Patches from brain-containing regions (Sec. 3.1 via [9]) of the training part of each
    volume. With one subject offline (the MNI152 T1) we hold out axial slabs instead of
    subjects: a validation slab for checkpoint selection and a test slab for the numbers we
    report (choice; the slabs are never sampled for training, with a gap of a few slices).
    The template is left-right symmetric, so a held-out hemisphere would leak through
    flips: slabs are the honest split.

Metrics
    SSIM, PSNR and NRMSE between SR and HR (Sec. 3.2), inside the brain mask of the test slab,
    with data_range 1 after dividing both by the *reference's* 99.5th brain percentile (a
    property of the evaluation, independent of any model's own normalisation). Networks are
    run through :class:`mrenhance.enhance_api.Enhancer`, the code path of ``enhance``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import ConfigError, InputError
from mrenhance.models.card import DEFAULT_NORMALISATION, Normalisation
from mrenhance.tasks.base import InputKind, Task, TrainingData, register_task, require_3d
from mrenhance.volume import Volume

DATA_DEFAULTS: dict[str, Any] = {
    "files": ["sample:mni_t1"],
    "factors": [2, 2, 1],
    "taper": None,
    "noise_snr": None,
    "normalise": dict(DEFAULT_NORMALISATION),
    "mask": "brain",
    "min_mask_fraction": 0.1,
    "held_out": {"axis": 2, "validation": [64, 76], "test": [96, 128], "gap": 4},
    "augment": {"flip": True},
    "seed": 0,
    # SR that transfers (issue 8): synthetic scans and a randomised acquisition per scan,
    # see tasks/sr_synthetic.py; null keeps the paper's fixed pairs from data.files
    "synthetic": None,
    "degradation": None,
}

# How many voxels of context to keep around a held-out slab when running a model on it:
# more than mDCSRN b4u4's receptive-field radius (17 voxels, docs/performance.md).
CONTEXT_VOX = 20

# The evaluation's intensity basis: HR / this percentile of the HR brain voxels = data range 1.
REFERENCE_PERCENTILE = 99.5


def validate_data_config(data: dict[str, Any], source: str = "recipe") -> dict[str, Any]:
    """Fill defaults and refuse unknown keys in a recipe's ``data`` section."""
    return TASK.data_config(data, source)


# ---------------------------------------------------------------------------- degradation
def make_lr(
    hr: np.ndarray,
    factors: Sequence[float] = (2, 2, 1),
    *,
    taper: str | None = None,
    noise_snr: float | None = None,
    rng: np.random.Generator | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """The paper's LR image on the HR grid (Sec. 2.6), with optional Rician noise.

    hr : (x, y, z) float32. Returns (x, y, z) float32.
    """
    from mrenhance.simulate.kspace import truncate_kspace

    lr = truncate_kspace(hr, tuple(factors), taper=taper, output="same_grid")
    if noise_snr:
        from mrenhance.simulate.noise import add_rician_noise

        rng = rng if rng is not None else np.random.default_rng(0)
        lr = add_rician_noise(lr, noise_snr, rng, signal_mask=mask)
    return lr.astype(np.float32)


def interpolation_baseline(hr: np.ndarray, factors: Sequence[float], method: str) -> np.ndarray:
    """Table 2's interpolation rows: the low-matrix image interpolated back to the HR grid."""
    from mrenhance.baselines.interpolate import upsample
    from mrenhance.simulate.kspace import truncate_kspace

    low = truncate_kspace(hr, tuple(factors), output="low_matrix")
    return upsample(low, hr.shape, method=method).astype(np.float32)


# ---------------------------------------------------------------------------- data
@dataclass
class SRSubject:
    """One HR/LR pair in the file's intensity units, with its mask and normalisation.

    hr, lr : (x, y, z) float32, raw units (lr: the network input before normalisation).
    mask : (x, y, z) bool, where patches are drawn and metrics are taken.
    input_scale : the normalisation scale of ``lr`` under the data config's rule.
    reference_scale : the evaluation basis, :data:`REFERENCE_PERCENTILE` of hr in the mask.
    """

    name: str
    hr: np.ndarray
    lr: np.ndarray
    mask: np.ndarray
    input_scale: float = 1.0
    reference_scale: float = 1.0
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))

    @property
    def inputs(self) -> np.ndarray:
        """The network input exactly as ``enhance`` prepares it: lr / input_scale."""
        return (self.lr / np.float32(self.input_scale)).astype(np.float32)

    @property
    def targets(self) -> np.ndarray:
        """The training target on the input's scale: hr / input_scale."""
        return (self.hr / np.float32(self.input_scale)).astype(np.float32)

    def lr_volume(self) -> Volume:
        return Volume(self.lr, self.affine, {"source": f"{self.name} (LR)"})

    def crop(self, box: tuple[slice, ...]) -> SRSubject:
        """The subject inside ``box``; the scales stay the whole volume's (what enhance uses)."""
        return SRSubject(
            self.name,
            self.hr[box],
            self.lr[box],
            self.mask[box],
            self.input_scale,
            self.reference_scale,
            self.affine,
        )


def _load_hr(spec: str) -> tuple[Volume, np.ndarray]:
    """A volume and its brain mask from ``sample:mni_t1`` or a NIfTI path."""
    from mrenhance import samples

    if spec == "sample:mni_t1":
        vol = samples.mni_t1()
        mask = samples.mni_brain_mask().data > 0
        return vol, mask
    from mrenhance.io import load
    from mrenhance.preprocess import head_mask

    vol = load(spec)
    if vol.ndim != 3:
        raise InputError(f"{spec}: sr_t1 training needs 3D images, got shape {vol.shape}")
    # choice: users' T1s are not skull-stripped; the head mask keeps patches inside the head,
    # which is what the mask is for in training. Evaluation on user data should pass a mask.
    return vol, head_mask(vol.data)


def load_subjects(cfg: dict[str, Any]) -> list[SRSubject]:
    """Load and degrade every file of a validated ``data`` config (raw intensity units)."""
    from mrenhance.preprocess import intensity_scale

    rng = np.random.default_rng(cfg.get("seed", 0))
    rule = Normalisation.from_dict(cfg["normalise"], "data.normalise")
    subjects = []
    for spec in cfg["files"]:
        vol, mask = _load_hr(str(spec))
        hr = np.asarray(vol.data, dtype=np.float32)
        reference = float(np.percentile(hr[mask], REFERENCE_PERCENTILE)) if mask.any() else 1.0
        # noise is drawn relative to the reference scale, as if the image were normalised
        lr = make_lr(
            hr / reference,
            cfg["factors"],
            taper=cfg["taper"],
            noise_snr=cfg["noise_snr"],
            rng=rng,
            mask=mask,
        ) * np.float32(reference)
        subjects.append(
            SRSubject(
                str(spec),
                hr,
                lr.astype(np.float32),
                mask.astype(bool),
                input_scale=intensity_scale(lr, rule),
                reference_scale=reference if reference > 0 else 1.0,
                affine=vol.affine,
            )
        )
    return subjects


def _slab(shape: Sequence[int], axis: int, start: int, stop: int) -> tuple[slice, ...]:
    box = [slice(0, n) for n in shape]
    box[axis] = slice(max(0, start), min(shape[axis], stop))
    return tuple(box)


def training_regions(
    shape: Sequence[int], held_out: dict[str, Any] | None, patch_size: Sequence[int]
) -> list[tuple[slice, ...]]:
    """Boxes of the volume that training may sample: everything but the held-out slabs.

    Each box is at least one patch long along the slab axis (smaller pieces are dropped).
    """
    if not held_out:
        return [tuple(slice(0, n) for n in shape)]
    axis, gap = int(held_out["axis"]), int(held_out.get("gap", 0))
    banned = sorted(
        (max(0, a - gap), min(shape[axis], b + gap))
        for key in ("validation", "test")
        if held_out.get(key)
        for a, b in [held_out[key]]
    )
    regions, start = [], 0
    for a, b in banned + [(shape[axis], shape[axis])]:
        if a - start >= patch_size[axis]:
            regions.append(_slab(shape, axis, start, a))
        start = max(start, b)
    if not regions:
        raise ConfigError(
            f"data.held_out leaves no training region of {patch_size[axis]} slices along axis "
            f"{axis} in a volume of shape {tuple(shape)}"
        )
    return regions


def held_out_box(
    shape: Sequence[int], held_out: dict[str, Any], which: str, context: int = 0
) -> tuple[slice, ...]:
    """The held-out slab ``which`` ("validation" or "test"), widened by ``context`` voxels."""
    a, b = held_out[which]
    return _slab(shape, int(held_out["axis"]), a - context, b + context)


# ---------------------------------------------------------------------------- evaluation
Method = Callable[[SRSubject, tuple[slice, ...]], np.ndarray]
"""An SR method: (subject, box) -> its estimate of ``subject.hr[box]`` in raw units.

Baselines re-simulate the low-matrix acquisition from ``subject.hr`` (a global k-space
operation on the whole volume); networks see only ``subject.lr`` (through the Enhancer)."""


def interpolation_method(factors: Sequence[float], method: str) -> Method:
    cache: dict[int, np.ndarray] = {}

    def run(subject: SRSubject, box: tuple[slice, ...]) -> np.ndarray:
        key = id(subject.hr)
        if key not in cache:
            cache.clear()
            cache[key] = interpolation_baseline(subject.hr, factors, method)
        return cache[key][box]

    return run


def network_method(enhancer: Any) -> Method:
    """A :class:`mrenhance.enhance_api.Enhancer` as a :data:`Method`: ``enhance``'s code path.

    The input is normalised over the whole LR volume (as ``enhance`` would on the user's
    file) and the network runs on ``box`` only.
    """

    def run(subject: SRSubject, box: tuple[slice, ...]) -> np.ndarray:
        return enhancer.run_region(subject.lr_volume(), box)

    return run


def evaluate_region(
    methods: dict[str, Method],
    subject: SRSubject,
    held_out: dict[str, Any],
    which: str = "test",
    metrics: Sequence[str] = ("ssim", "psnr", "nrmse"),
) -> list[dict[str, Any]]:
    """Run each method on the held-out slab (with context) and measure it inside the mask.

    Returns one row per method: {"method", metrics..., "seconds"}. Networks run on the slab
    plus :data:`CONTEXT_VOX` slices of context; metrics are taken on the slab only, on the
    basis ``x / subject.reference_scale`` with data_range 1.
    """
    from mrenhance.metrics import compute_metrics

    box = held_out_box(subject.hr.shape, held_out, which, CONTEXT_VOX)
    inner = held_out_box(subject.hr.shape, held_out, which, 0)
    axis = int(held_out["axis"])
    offset = inner[axis].start - box[axis].start
    length = inner[axis].stop - inner[axis].start
    sl = [slice(None)] * 3
    sl[axis] = slice(offset, offset + length)
    sl = tuple(sl)
    ref = np.float32(subject.reference_scale)
    hr, mask = subject.hr[box][sl] / ref, subject.mask[box][sl]
    rows = []
    for name, method in methods.items():
        t0 = time.perf_counter()
        sr = method(subject, box)
        seconds = time.perf_counter() - t0
        values = compute_metrics(sr[sl] / ref, hr, names=tuple(metrics), data_range=1.0, mask=mask)
        rows.append({"method": name, **values, "seconds": round(seconds, 2)})
    return rows


def baseline_methods(factors: Sequence[float]) -> dict[str, Method]:
    """Interpolation baselines of Table 2 and the zero-filled (sinc) network input."""
    return {
        "nearest": interpolation_method(factors, "nearest"),
        "trilinear": interpolation_method(factors, "linear"),
        "tricubic": interpolation_method(factors, "cubic"),
        "zero-filled (input)": lambda subject, box: subject.lr[box],
    }


def _central_columns(subject: SRSubject, axis: int, width: int) -> SRSubject:
    """The subject cropped to ``width`` voxels around the brain's centre on the axes != axis.

    The normalisation scale stays the whole volume's (what ``enhance`` would compute).
    """
    coords = np.argwhere(subject.mask)
    centre = (
        coords.mean(axis=0).round().astype(int) if coords.size else np.array(subject.hr.shape) // 2
    )
    box = []
    for ax, n in enumerate(subject.hr.shape):
        if ax == axis or n <= width:
            box.append(slice(0, n))
        else:
            start = int(np.clip(centre[ax] - width // 2, 0, n - width))
            box.append(slice(start, start + width))
    return subject.crop(tuple(box))


# ---------------------------------------------------------------------------- the task
@register_task
class SRT1Task(Task):
    """3D T1 super-resolution (Chen et al. 2018): same-grid LR (zero-filled) -> HR."""

    name = "sr_t1"
    description = "3D T1 super-resolution (k-space truncated input on the HR grid)"
    paper = "Chen et al. 2018, MICCAI (arXiv:1803.01417)"
    spatial_dims = 3
    input_kind = InputKind.IMAGE_3D
    data_defaults = DATA_DEFAULTS

    def data_config(self, data: dict[str, Any], source: str = "recipe") -> dict[str, Any]:
        cfg = super().data_config(data, source)
        if not isinstance(cfg["files"], list) or not cfg["files"]:
            raise ConfigError(f"{source}: data.files: expected a non-empty list of paths")
        factors = cfg["factors"]
        if not isinstance(factors, (list, tuple)) or len(factors) != 3:
            raise ConfigError(f"{source}: data.factors: expected three numbers, got {factors!r}")
        if any(not isinstance(f, (int, float)) or f < 1 for f in factors):
            raise ConfigError(f"{source}: data.factors: each factor must be a number >= 1")
        try:
            rule = Normalisation.from_dict(cfg["normalise"], "data")
        except InputError as err:
            raise ConfigError(f"{source}: {str(err).replace('preprocessing.', '')}") from err
        cfg["normalise"] = rule.to_dict()
        from mrenhance.tasks.sr_synthetic import check_degradation, check_synthetic

        cfg["synthetic"] = check_synthetic(cfg["synthetic"], source)
        cfg["degradation"] = check_degradation(cfg["degradation"], source)
        return cfg

    def preprocessing(self, cfg: dict[str, Any], subjects: Sequence[SRSubject]) -> dict[str, Any]:
        """The card's ``preprocessing`` for a model trained on ``subjects`` under ``cfg``."""
        voxel = None
        if subjects:
            from mrenhance.volume import voxel_sizes

            voxel = [round(float(v), 4) for v in voxel_sizes(subjects[0].affine)]
        out = {"normalisation": dict(cfg["normalise"]), "voxel_size_mm": voxel}
        synthetic = cfg.get("synthetic") or {}
        if synthetic.get("voxel_mm") and voxel:  # synthetic scans at random resolutions
            sizes = [float(v) for v in synthetic["voxel_mm"]] + [float(v) for v in voxel]
            out["voxel_size_range_mm"] = [min(sizes), max(sizes)]
        return out

    def training_data(
        self,
        data: dict[str, Any],
        patch_size: Sequence[int],
        *,
        seed: int = 0,
        source: str = "recipe",
    ) -> TrainingData:
        """Patch pairs (LR, HR) / input_scale and a validation function on the validation slab."""
        from mrenhance.engine.augment import build_augment
        from mrenhance.engine.patches import PatchDataset

        cfg = self.data_config(data, source)
        subjects = load_subjects(cfg)
        regions = [training_regions(s.hr.shape, cfg["held_out"], patch_size) for s in subjects]
        augment = build_augment(cfg["augment"]) if cfg["augment"] else None
        if cfg["synthetic"] is not None or cfg["degradation"] is not None:
            return self._synthetic_training_data(cfg, subjects, regions, patch_size, seed, augment)
        dataset = PatchDataset(
            [s.inputs for s in subjects],
            [s.targets for s in subjects],
            tuple(patch_size),
            mask=[s.mask for s in subjects] if cfg["mask"] else None,
            min_mask_fraction=float(cfg["min_mask_fraction"]) if cfg["mask"] else 0.0,
            seed=seed,
            augment=augment,
            region=regions,
        )
        # choice: validate on the brain's central 96x96 columns of the validation slab, enough
        # to rank checkpoints at a fraction of a full-width pass (validation runs often).
        held_out = cfg["held_out"]
        val_subject = _central_columns(subjects[0], int(held_out["axis"]), 96) if held_out else None
        rule = Normalisation.from_dict(cfg["normalise"], source)

        def validate(model) -> dict[str, float]:
            if not held_out or not held_out.get("validation"):
                return {}
            from mrenhance.enhance_api import Enhancer
            from mrenhance.models.card import DEFAULT_INFERENCE

            enhancer = Enhancer(
                model,
                self,
                normalisation=rule,
                # the inference window (the card's default tiling), not the training
                # patch: 16^3 validation tiles of a 16^3-patch run took 21 minutes
                inference=dict(DEFAULT_INFERENCE),
                scale=subjects[0].input_scale,
            )
            rows = evaluate_region(
                {"model": network_method(enhancer)},
                val_subject,
                held_out,
                "validation",
                metrics=("psnr", "ssim"),
            )
            return {k: v for k, v in rows[0].items() if k in ("psnr", "ssim")}

        return TrainingData(dataset, validate, subjects)

    def _synthetic_training_data(
        self,
        cfg: dict[str, Any],
        subjects: list[SRSubject],
        regions: list[list[tuple[slice, ...]]],
        patch_size: Sequence[int],
        seed: int,
        augment: Any,
    ) -> TrainingData:
        """Scans drawn on the fly (tasks/sr_synthetic.py); validation on the MNI slab and
        on fixed synthetic scans (their own seed: never a training scan)."""
        from mrenhance.tasks.sr_synthetic import (
            SYNTHETIC_DEFAULTS,
            SyntheticSRDataset,
            check_degradation,
        )

        rule = Normalisation.from_dict(cfg["normalise"], "data.normalise")
        synthetic = cfg["synthetic"] or {**SYNTHETIC_DEFAULTS, "mix_mni": 1.0}
        degradation = cfg["degradation"] or check_degradation(
            {
                "kspace_factors": [list(cfg["factors"])],
                "kspace_p": 1.0,
                "permute_axes": False,
                "thick_p": 0.0,
                "noise_p": 1.0 if cfg["noise_snr"] else 0.0,
                "noise_snr": [cfg["noise_snr"]] * 2 if cfg["noise_snr"] else [10.0, 40.0],
            }
        )
        dataset = SyntheticSRDataset(
            synthetic,
            degradation,
            patch_size,
            rule=rule,
            seed=seed,
            mni=subjects[0] if synthetic["mix_mni"] > 0 else None,
            mni_regions=regions[0],
            held_out=cfg["held_out"],
            min_mask_fraction=float(cfg["min_mask_fraction"]),
            augment=augment,
        )
        held_out = cfg["held_out"]
        val_subject = _central_columns(subjects[0], int(held_out["axis"]), 96) if held_out else None
        # choice: two fixed validation scans, the paper's k-space 2x2 and a 4 mm thick-slice
        # acquisition of synthetic T1 subjects, drawn from a seed no training scan uses
        val_data = SyntheticSRDataset(
            {**synthetic, "mix_mni": 0.0, "contrast": {"t1": 1.0}, "voxel_mm": [1.0, 1.0]},
            {
                **degradation,
                "kspace_p": 1.0,
                "thick_p": 0.0,
                "noise_p": 0.0,
                "kspace_factors": [[2.0, 2.0, 1.0]],
                "permute_axes": False,
            },
            (48, 48, 48),
            rule=rule,
            seed=seed + 7919,
            held_out=None,
        )
        val_scans = [val_data.scan(0)]
        thick = SyntheticSRDataset(
            {**synthetic, "mix_mni": 0.0, "contrast": {"t1": 1.0}, "voxel_mm": [1.0, 1.0]},
            {
                **degradation,
                "kspace_p": 0.0,
                "thick_p": 1.0,
                "noise_p": 0.0,
                "thick_slice_mm": [4.0, 4.0],
                "gap_mm": [0.0, 0.0],
            },
            (48, 48, 48),
            rule=rule,
            seed=seed + 7920,
            held_out=None,
        )
        val_scans.append(thick.scan(0))

        def validate(model) -> dict[str, float]:
            from mrenhance.enhance_api import Enhancer
            from mrenhance.metrics import compute_metrics

            out: dict[str, float] = {}
            inference = {"patch_size": list(patch_size), "overlap": 6, "blend": "crop"}
            if held_out and held_out.get("validation"):
                enhancer = Enhancer(
                    model,
                    self,
                    normalisation=rule,
                    inference=inference,
                    scale=subjects[0].input_scale,
                )
                rows = evaluate_region(
                    {"model": network_method(enhancer)},
                    val_subject,
                    held_out,
                    "validation",
                    metrics=("psnr", "ssim"),
                )
                out["psnr_mni"] = rows[0]["psnr"]
                out["ssim_mni"] = rows[0]["ssim"]
            for k, scan in enumerate(val_scans):
                enhancer = Enhancer(
                    model, self, normalisation=rule, inference=inference, scale=scan.scale
                )
                box = _centre_box(scan.hr.shape, 64)
                sr = enhancer.run_region(Volume(scan.lr, np.eye(4), {}), box)
                hr = scan.hr[box]
                mask = hr > 0.1 * float(np.percentile(hr, 99))
                ref = np.float32(np.percentile(hr[mask], REFERENCE_PERCENTILE))
                values = compute_metrics(
                    sr / ref, hr / ref, names=("psnr",), data_range=1.0, mask=mask
                )
                out[f"psnr_synth{k}"] = values["psnr"]
            keys = [k for k in out if k.startswith("psnr_")]
            out["psnr"] = float(np.mean([out[k] for k in keys])) if keys else 0.0
            return out

        return TrainingData(dataset, validate, subjects)

    # -- one input ------------------------------------------------------------------------
    def check_input(self, volume: Volume) -> None:
        require_3d(volume, "sr_t1 models need a 3D image")

    def prepare(
        self,
        volume: Volume,
        card: Any = None,
        *,
        scale: float | None = None,
        inplace: bool = False,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Normalise ``volume`` by the card's rule; returns (x, y, z) float32 and its scale.

        ``scale`` skips the computation when the caller already knows it (validation).
        ``inplace``: divide ``volume.data`` itself when it is a float32 array of its own
        (the CLI, which owns the loaded file's array; never ``enhance()``'s caller's data).
        """
        from mrenhance.preprocess import intensity_scale

        self.check_input(volume)
        rule = _rule_of(card)
        if scale is None:
            scale = intensity_scale(volume.data, rule)
        data = volume.data
        if inplace and data.dtype == np.float32 and data.flags.owndata and data.flags.writeable:
            array = np.divide(data, np.float32(scale), out=data)
        else:  # one new array (a 512^3 volume is 0.5 GB per copy), the input left alone
            array = np.divide(data, np.float32(scale), dtype=np.float32)
        return array, {"scale": float(scale), "normalisation": rule.to_dict()}

    def adaptation_pairs(self, volume: Volume, card: Any, rng: np.random.Generator) -> Any:
        """Self-supervised pairs from the input alone (SMORE / ZSSR style; ``--adapt``).

        The prepared input is degraded once more along its high-resolution axes
        (:func:`high_resolution_axes`): k-space truncated 2x and, separately, a 2-voxel
        Gaussian slice profile with 2-voxel spacing along each such axis; the network learns
        to map each degraded copy back to the input. Random axis permutations and flips of
        each patch pair present that degradation along every axis, including the input's
        low-resolution ones. Patches are centred in the head mask.
        """
        from mrenhance.engine.adapt import AdaptationPairs
        from mrenhance.preprocess import head_mask
        from mrenhance.simulate.kspace import thick_slice, truncate_kspace

        x, _ = self.prepare(volume, card)
        axes, energy = high_resolution_axes(x)
        inputs, what = [], []
        for axis in axes:
            factors = [1.0, 1.0, 1.0]
            factors[axis] = 2.0
            inputs.append(truncate_kspace(x, tuple(factors), output="same_grid"))
            what.append(f"kspace 2x axis {axis}")
            if x.shape[axis] >= 8:
                inputs.append(thick_slice(x, 2, axis=axis, profile="gaussian", fwhm_vox=2.0))
                what.append(f"thick 2 vox axis {axis}")
        inputs = [np.clip(a, 0, None).astype(np.float32) for a in inputs]
        mask = head_mask(x)
        return AdaptationPairs(
            inputs=inputs,
            targets=[x] * len(inputs),
            masks=[mask] * len(inputs),
            augment=_permute_and_flip,
            loss="l1",
            info={
                "high_resolution_axes": list(axes),
                "outer_band_energy": [round(e, 5) for e in energy],
                "pairs": what,
            },
        )

    def run_network(
        self,
        model: Any,
        array: np.ndarray,
        plan: Any,
        *,
        consistency: str = "auto",
        report: dict[str, Any] | None = None,
        **options: Any,
    ) -> np.ndarray:
        """The network on the prepared input, then made consistent with it.

        array : (x, y, z) float32, the normalised input. ``consistency`` "auto" (the
        default): where the input is a zero-filled k-space truncation (a spectral cliff,
        :func:`mrenhance.consistency.detect_kspace_cutoffs`) the output's measured band is
        replaced by the input's (:func:`mrenhance.consistency.kspace_consistency`); any
        input with the signature of thick slices (exactly one axis without its high
        frequencies, :func:`thick_slice_signature`) gets ``y + w (net(y) - y)`` with ``w``
        from a self-check on its own sharpest axis
        (:func:`mrenhance.consistency.self_check_weight`; one more network pass); any
        other input (isotropic, or blurred along two axes as an undetected in-plane
        truncation) gets the network output as is. "check": as "auto", and every input
        without a detected band gets the self-check. "tv": as "auto", and a detected
        unmeasured band is then refined by TV-regularised compressed sensing started from
        the network output (:func:`mrenhance.consistency.tv_consistency`). "off": always
        the network output.
        ``report`` receives what was done (mode, cut-off bins per axis, ``w``).
        """
        from mrenhance.consistency import (
            TV_ITERATIONS,
            TV_WEIGHT,
            detect_kspace_cutoffs,
            kspace_consistency,
            self_check_weight,
            tv_consistency,
        )
        from mrenhance.engine.infer import infer

        out = infer(model, array, plan, **options)
        report = report if report is not None else {}
        if consistency == "off":
            report["mode"] = "off"
            return out
        if not np.isfinite(out).all():
            report["mode"] = "none: non-finite output"
            return out
        cuts = detect_kspace_cutoffs(array)
        if any(c is not None for c in cuts):
            cutoffs = [c if c is None else int(c) for c in cuts]
            if consistency == "tv":
                out = tv_consistency(out, array, cuts)
                report.update(mode="kspace+tv", cutoffs=cutoffs)
                report.update(tv_weight=TV_WEIGHT, tv_iterations=TV_ITERATIONS)
            else:
                kspace_consistency(out, array, cuts)
                report.update(mode="kspace", cutoffs=cutoffs)
            return out
        if min(array.shape) < SELF_CHECK_MIN_VOXELS:
            report["mode"] = "none detected"
            return out
        from mrenhance.preprocess import head_mask

        axes, fractions = high_resolution_axes(array)
        thick = thick_slice_signature(fractions)
        if consistency != "check" and not thick:
            report["mode"] = "none detected"
            return out
        axis = max(axes, key=lambda a: fractions[a])
        w, info = self_check_weight(
            lambda x: infer(model, x, plan, **options), array, axis, head_mask(array)
        )
        out -= array
        out *= np.float32(w)
        out += array
        report.update(mode="self-check", weight=round(w, 3), **info)
        if consistency != "check":
            report["reason"] = "one blurred axis"
        return out

    def restore(self, array: np.ndarray, context: dict[str, Any], volume: Volume) -> Volume:
        """Undo :meth:`prepare`'s scaling on the input's grid; negative ringing is clipped."""
        # in place: the network output is ours, and a 512^3 volume is 0.5 GB per copy
        data = np.asarray(array, dtype=np.float32)
        data *= np.float32(context["scale"])
        np.clip(data, 0, None, out=data)
        return volume.with_data(data)

    # -- protocol -------------------------------------------------------------------------
    def baselines(self, data: dict[str, Any] | None = None) -> dict[str, Method]:
        cfg = self.data_config(data or {})
        return baseline_methods(cfg["factors"])

    def network_method(self, enhancer: Any) -> Method:
        return network_method(enhancer)

    def evaluate(
        self,
        methods: dict[str, Method],
        *,
        data: dict[str, Any] | None = None,
        which: str = "test",
        subjects: Sequence[SRSubject] | None = None,
    ) -> list[dict[str, Any]]:
        """The protocol: every method on the held-out ``which`` slab of the first subject."""
        cfg = self.data_config(data or {})
        subject = (subjects or load_subjects(cfg))[0]
        return evaluate_region(methods, subject, cfg["held_out"], which)

    def protocol(self, data: dict[str, Any] | None = None) -> str:
        """One line describing the evaluation basis (printed with every table)."""
        cfg = self.data_config(data or {})
        held = cfg["held_out"]
        f = cfg["factors"]
        return (
            f"{', '.join(map(str, cfg['files']))}; k-space truncated {f[0]}x{f[1]}x{f[2]}; "
            f"held-out slab axis {held['axis']} [{held['test'][0]}, {held['test'][1]}) never "
            f"sampled in training; brain mask; intensities / {REFERENCE_PERCENTILE}th brain "
            "percentile of the reference, data_range 1"
        )

    def example_input(self, rng: np.random.Generator) -> Volume:
        data = np.zeros((20, 20, 12), np.float32)
        data[4:16, 4:16, 2:10] = 100 + 20 * rng.random((12, 12, 8), dtype=np.float32)
        return Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]), {"source": "example"})

    # -- demo -----------------------------------------------------------------------------
    def demo(
        self,
        out: Any,
        enhancers: dict[str, Any],
        *,
        full: bool = False,
        say: Callable[[str], None] = print,
    ) -> dict[str, Any]:
        """The demo section: MNI T1 -> k-space 2x2 -> tricubic and each network -> files.

        Writes ``metrics.{md,csv,json}``, ``figure.png`` and one NIfTI per method into
        ``out``; returns a report section (heading, text, table rows, images, files).
        By default the networks run on the test slab plus context (72 axial slices);
        ``full=True`` runs the whole volume.
        """
        from pathlib import Path

        from mrenhance.io import save
        from mrenhance.report.figures import orthogonal_mosaic
        from mrenhance.report.tables import write_table

        out = Path(out)
        cfg = self.data_config({})
        held = cfg["held_out"]
        say("loading the MNI152 T1 sample and degrading it (k-space truncation 2x2, Sec. 2.6)")
        subject = load_subjects(cfg)[0]
        shape = subject.hr.shape
        box = (
            tuple(slice(0, n) for n in shape)
            if full
            else held_out_box(shape, held, "test", CONTEXT_VOX)
        )
        methods: dict[str, Method] = {
            "LR (zero-filled)": baseline_methods(cfg["factors"])["zero-filled (input)"],
            "tricubic": interpolation_method(cfg["factors"], "cubic"),
        }
        # plain networks before their GAN variants, as in the paper's figures
        for name in sorted(enhancers, key=lambda n: (n.endswith("-gan"), n)):
            methods[name] = network_method(enhancers[name])
        results: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        for name, method in methods.items():
            if name in enhancers:
                say(f"running {name} on {tuple(subject.lr[box].shape)} voxels ...")
            t0 = time.perf_counter()
            results[name] = method(subject, box)
            seconds[name] = time.perf_counter() - t0
        # metrics exactly as the evaluation protocol computes them (same function)
        rows = evaluate_region(
            {name: (lambda s, b, a=arr: a[b]) for name, arr in results.items()},
            subject.crop(box),
            _shift(held, box),
            "test",
        )
        for row in rows:
            row["seconds"] = round(seconds[row["method"]], 2)
        tables = write_table(rows, out / "metrics", title="Held-out test slab, brain mask")

        ref = np.float32(subject.reference_scale)
        panels = {k: v / ref for k, v in results.items()}
        panels["HR (reference)"] = subject.hr[box] / ref
        crop = Volume(subject.hr, subject.affine, {"source": "sample:mni_t1"}).crop(box)
        files, provenance = {}, {}
        for name, arr in {**results, "HR (reference)": subject.hr[box]}.items():
            fname = name.split(" ")[0].lower().replace("(", "").replace(")", "") + ".nii.gz"
            vol = crop.with_data(arr, step=f"demo: {name}")
            files[name] = save(vol, out / fname, overwrite=True)
            provenance[fname] = list(vol.meta.get("provenance", []))

        axis = int(held["axis"])
        inner = held_out_box(shape, held, "test", 0)
        centre = [n // 2 for n in panels["HR (reference)"].shape]
        centre[axis] = (inner[axis].start + inner[axis].stop) // 2 - box[axis].start
        zx, zy = centre[0] + 10, centre[1] - 30
        offset = tuple(b.start or 0 for b in box)
        figure = orthogonal_mosaic(
            panels,
            out / "figure.png",
            reference_key="HR (reference)",
            error_keys=[k for k in panels if k != "HR (reference)"],
            zoom_box=((zx - 20, zx + 20), (zy - 20, zy + 20), centre[2]),
            title="mrenhance demo: 3D T1 super-resolution (MNI152, k-space 2x2)",
            centre=tuple(centre),
            index_offset=offset,
        )
        return {
            "heading": "3D T1 super-resolution (Chen et al. 2018)",
            "text": "SSIM, PSNR (dB) and NRMSE against the HR reference: "
            + self.protocol()
            + f"\n\nThe viewer shows voxels {[(b.start, b.stop) for b in box]} of the "
            "volume (the test slab and its context); slice numbers are the volume's.",
            "table_rows": rows,
            "viewers": [
                {
                    "images": panels,
                    "reference": "HR (reference)",
                    "affine": subject.affine,
                    "offset": offset,
                    "centre": tuple(centre),
                    "title": "input, each method and the reference, with |error| maps",
                }
            ],
            "images": [{"path": figure, "caption": "orthogonal slices (figure.png)"}],
            "cards": [e.card.to_dict() for e in enhancers.values() if e.card is not None],
            "provenance": provenance,
            "files": files,
            "tables": tables,
        }


#: the self-check of ``run_network`` needs at least this many voxels along every axis
#: (choice: a thick-slice re-degradation of 2 voxels needs a few slices to mean anything)
SELF_CHECK_MIN_VOXELS = 8


def high_resolution_axes(image: np.ndarray, *, ratio: float = 0.5) -> tuple[list[int], list[float]]:
    """The axes along which ``image`` keeps its high spatial frequencies.

    image : (x, y, z). For each axis, the fraction of the (non-DC) spectral energy along it
    that lies in the outer half of its frequencies (|k| > 1/4 cycle per voxel). An axis
    whose fraction is at least ``ratio`` times the largest is high-resolution (choice);
    when every axis is (isotropic data, or equally degraded) all three are returned.
    Returns (axes, fractions).
    """
    data = np.asarray(image, dtype=np.float32)
    data = data - data.mean()
    fractions = []
    for axis in range(3):
        spectrum = np.abs(np.fft.rfft(data, axis=axis)) ** 2
        power = spectrum.sum(axis=tuple(a for a in range(3) if a != axis))[1:]
        freqs = np.fft.rfftfreq(data.shape[axis])[1:]
        total = float(power.sum())
        fractions.append(float(power[freqs > 0.25].sum() / total) if total > 0 else 0.0)
    top = max(fractions)
    axes = [a for a, f in enumerate(fractions) if top > 0 and f >= ratio * top]
    return (axes or [0, 1, 2]), fractions


#: one axis is "blurred" when its high-frequency fraction is below this ratio times the
#: next-lowest axis's (choice, measured on synthetic validation scans only: see
#: :func:`thick_slice_signature`)
THICK_SLICE_RATIO = 0.5


def thick_slice_signature(fractions: Sequence[float], ratio: float = THICK_SLICE_RATIO) -> bool:
    """Whether an input looks like a thick-slice acquisition: exactly one axis has lost its
    high frequencies (``fractions`` from :func:`high_resolution_axes`; the lowest below
    ``ratio`` times the middle one).

    Choice, beyond the paper. An isotropic scan has three similar fractions, an undetected
    in-plane k-space truncation two low ones (the MNI LR volume: lowest / middle 0.79).
    Measured on synthetic validation scans only (``benchmarks/sr_synth_selection.py``,
    seed 4242; 48^3, 1.5-5 mm): thick slices 2x gave ratios 0.03-0.94 (11 of 16 below
    0.5), undetected truncations with or without noise 0.66-0.94; checked on the 16 scans of
    seed 777 (never used to set it): thick slices 2x 0.07-0.84 (10 of 16 at or below 0.5),
    3x along another axis 0.00-0.51 (15 of 16), clean or undetected truncations 0.53-0.99
    (none flagged). Fine voxels (< 2 mm) with little high-frequency content of their own
    are where thick slices go unseen.
    """
    f = sorted(float(x) for x in fractions)
    return len(f) >= 2 and f[1] > 0 and f[0] <= ratio * f[1]


def _permute_and_flip(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The same random spatial axis permutation and flips of (1, x, y, z) ``x`` and ``y``."""
    order = [0, *(1 + rng.permutation(3))]
    x, y = np.transpose(x, order), np.transpose(y, order)
    for axis in (1, 2, 3):
        if rng.random() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    return x, y


def _centre_box(shape: Sequence[int], width: int) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, n // 2 - width // 2), max(0, n // 2 - width // 2) + min(n, width))
        for n in shape
    )


def _boxed(subject: SRSubject, box: tuple[slice, ...]) -> SRSubject:
    return SRSubject(
        subject.name,
        subject.hr[box],
        subject.lr[box],
        subject.mask[box],
        subject.input_scale,
        subject.reference_scale,
        subject.affine,
    )


def _shift(held: dict[str, Any], box: tuple[slice, ...]) -> dict[str, Any]:
    """``held`` with its slabs in the coordinates of ``box`` (for a subject cropped to it)."""
    axis = int(held["axis"])
    start = box[axis].start or 0
    return {
        **held,
        **{
            k: [held[k][0] - start, held[k][1] - start]
            for k in ("validation", "test")
            if held.get(k)
        },
    }


def _rule_of(card: Any) -> Normalisation:
    if card is None:
        return Normalisation()
    if isinstance(card, Normalisation):
        return card
    if hasattr(card, "normalisation"):
        return card.normalisation
    return Normalisation.from_dict(
        (card.get("preprocessing") or {}).get("normalisation", DEFAULT_NORMALISATION), "card"
    )


TASK = SRT1Task()
