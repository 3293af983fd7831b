"""3D T1 super-resolution: the evaluation protocol of Chen et al. 2018 (mDCSRN).

What an input and a target are
    target (HR): a T1 volume, intensities divided by the 99.5th percentile of brain voxels;
    input (LR): the same volume with the outer k-space truncated (Sec. 2.6: 2x2 in x and y),
    back on the HR grid (zero-filled), so the network maps a same-size image to a same-size
    image. The interpolation baselines instead start from the low-matrix image (what the
    scanner would reconstruct) and interpolate it to the HR grid (Table 2, "bicubic").

How pairs are made
    Patches from brain-containing regions (Sec. 3.1 via [9]) of the training part of each
    volume. With one subject offline (the MNI152 T1) we hold out axial slabs instead of
    subjects: a validation slab for checkpoint selection and a test slab for the numbers we
    report (choice; the slabs are never sampled for training, with a gap of a few slices).
    The template is left-right symmetric, so a held-out hemisphere would leak through
    flips: slabs are the honest split.

Metrics
    SSIM, PSNR and NRMSE between SR and HR (Sec. 3.2), inside the brain mask of the test slab,
    with data_range 1 (intensities are normalised so that the 99.5th brain percentile is 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrenhance.errors import ConfigError, InputError
from mrenhance.volume import Volume

TASK = "sr_t1"

DATA_DEFAULTS: dict[str, Any] = {
    "files": ["sample:mni_t1"],
    "factors": [2, 2, 1],
    "taper": None,
    "noise_snr": None,
    "normalise_percentile": 99.5,
    "mask": "brain",
    "min_mask_fraction": 0.1,
    "held_out": {"axis": 2, "validation": [64, 76], "test": [96, 128], "gap": 4},
    "augment": {"flip": True},
    "seed": 0,
}

# How many voxels of context to keep around a held-out slab when running a model on it:
# more than mDCSRN b4u4's receptive-field radius (17 voxels, MACHINE-NOTES).
CONTEXT_VOX = 20


def validate_data_config(data: dict[str, Any], source: str = "recipe") -> dict[str, Any]:
    """Fill defaults and refuse unknown keys in a recipe's ``data`` section."""
    unknown = sorted(set(data) - set(DATA_DEFAULTS))
    if unknown:
        raise ConfigError(f"{source}: data.{unknown[0]}: unknown key for task sr_t1")
    cfg = {**DATA_DEFAULTS, **data}
    if not isinstance(cfg["files"], list) or not cfg["files"]:
        raise ConfigError(f"{source}: data.files: expected a non-empty list of paths")
    factors = cfg["factors"]
    if not isinstance(factors, (list, tuple)) or len(factors) != 3:
        raise ConfigError(f"{source}: data.factors: expected three numbers, got {factors!r}")
    if any(not isinstance(f, (int, float)) or f < 1 for f in factors):
        raise ConfigError(f"{source}: data.factors: each factor must be a number >= 1")
    return cfg


# ---------------------------------------------------------------------------- intensities
def intensity_scale(data: np.ndarray, mask: np.ndarray | None = None, percentile: float = 99.5):
    """Robust intensity scale: the ``percentile`` of voxels inside ``mask`` (or > 0).

    Parameters
    ----------
    data : (x, y, z) array
    mask : (x, y, z) bool array or None; None means voxels above 0 (or all voxels if none).

    Returns
    -------
    float, strictly positive (1.0 for an all-zero image).
    """
    values = data[mask > 0] if mask is not None else data[data > 0]
    if values.size == 0:
        return 1.0
    scale = float(np.percentile(values, percentile))
    return scale if scale > 0 else 1.0


def prepare_input(volume: Volume, percentile: float = 99.5) -> tuple[np.ndarray, dict]:
    """Normalise an LR volume the way training did; return the array and how to undo it."""
    data = volume.data
    if data.ndim != 3:
        raise InputError(
            f"{volume.meta.get('source', 'input')}: sr_t1 models need a 3D image, "
            f"got shape {data.shape}"
        )
    scale = intensity_scale(data, None, percentile)
    return (data / scale).astype(np.float32), {"scale": scale}


def restore_output(array: np.ndarray, ctx: dict) -> np.ndarray:
    """Undo :func:`prepare_input`'s scaling; negative values (ringing) are clipped to 0."""
    return np.clip(array * ctx["scale"], 0, None).astype(np.float32)


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
    """One normalised HR/LR pair with its brain mask. Arrays (x, y, z) float32."""

    name: str
    hr: np.ndarray
    lr: np.ndarray
    mask: np.ndarray
    scale: float
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))


def _load_hr(spec: str) -> tuple[Volume, np.ndarray]:
    """A volume and its brain mask from ``sample:mni_t1`` or a NIfTI path."""
    from mrenhance import samples

    if spec == "sample:mni_t1":
        vol = samples.mni_t1()
        mask = samples.mni_brain_mask().data > 0
        return vol, mask
    from mrenhance.io import load

    vol = load(spec)
    if vol.ndim != 3:
        raise InputError(f"{spec}: sr_t1 training needs 3D images, got shape {vol.shape}")
    return vol, brain_mask_from_intensity(vol.data)


def brain_mask_from_intensity(data: np.ndarray) -> np.ndarray:
    """A crude head mask for user files: voxels above 10% of the 99th percentile, filled.

    choice: users' T1s are not skull-stripped; this keeps patches inside the head, which is
    what the mask is for in training. Evaluation on user data should pass a real mask.
    """
    from scipy import ndimage

    thr = 0.1 * float(np.percentile(data, 99))
    mask = data > thr
    mask = ndimage.binary_closing(mask, iterations=2)
    return ndimage.binary_fill_holes(mask)


def load_subjects(cfg: dict[str, Any]) -> list[SRSubject]:
    """Load and degrade every file of a validated ``data`` config."""
    rng = np.random.default_rng(cfg.get("seed", 0))
    subjects = []
    for spec in cfg["files"]:
        vol, mask = _load_hr(str(spec))
        scale = intensity_scale(vol.data, mask, cfg["normalise_percentile"])
        hr = (vol.data / scale).astype(np.float32)
        lr = make_lr(
            hr, cfg["factors"], taper=cfg["taper"], noise_snr=cfg["noise_snr"], rng=rng, mask=mask
        )
        subjects.append(SRSubject(str(spec), hr, lr, mask.astype(bool), scale, vol.affine))
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


def build_training(
    recipe_data: dict[str, Any], patch_size: Sequence[int], *, seed: int = 0, source: str = "recipe"
):
    """The training dataset and a validation function for a recipe's ``data`` section.

    Returns
    -------
    dataset : mrenhance.engine.patches.PatchDataset yielding (LR, HR) patches (1, *patch_size).
    val_fn : callable(model) -> {"psnr": ..., "ssim": ...} on the validation slab.
    subjects : the loaded subjects (for evaluation after training).
    """
    from mrenhance.engine.augment import build_augment
    from mrenhance.engine.patches import PatchDataset

    cfg = validate_data_config(recipe_data, source)
    subjects = load_subjects(cfg)
    regions = [training_regions(s.hr.shape, cfg["held_out"], patch_size) for s in subjects]
    augment = build_augment(cfg["augment"]) if cfg["augment"] else None
    datasets = PatchDataset(
        [s.lr for s in subjects],
        [s.hr for s in subjects],
        tuple(patch_size),
        mask=[s.mask for s in subjects] if cfg["mask"] else None,
        min_mask_fraction=float(cfg["min_mask_fraction"]) if cfg["mask"] else 0.0,
        seed=seed,
        augment=augment,
        region=regions,
    )

    # choice: validate on the brain's central 96x96 columns of the validation slab, enough to
    # rank checkpoints at a fraction of a full-width pass (validation runs every few steps).
    held_out = cfg["held_out"]
    val_subject = _central_columns(subjects[0], int(held_out["axis"]), 96) if held_out else None

    def val_fn(model) -> dict[str, float]:
        if not cfg["held_out"] or not cfg["held_out"].get("validation"):
            return {}
        rows = evaluate_region(
            {"model": model_method(model, patch_size=patch_size, overlap=6)},
            val_subject,
            cfg["held_out"],
            "validation",
            metrics=("psnr", "ssim"),
        )
        return {k: v for k, v in rows[0].items() if k in ("psnr", "ssim")}

    return datasets, val_fn, subjects


def _central_columns(subject: SRSubject, axis: int, width: int) -> SRSubject:
    """The subject cropped to ``width`` voxels around the brain's centre on the axes != axis."""
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
    box = tuple(box)
    return SRSubject(
        subject.name,
        subject.hr[box],
        subject.lr[box],
        subject.mask[box],
        subject.scale,
        subject.affine,
    )


# ---------------------------------------------------------------------------- evaluation
Method = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""An SR method: (lr_on_hr_grid, hr) -> sr, all (x, y, z). Baselines use hr only to
re-simulate the low-matrix acquisition; networks use lr only."""


def model_method(
    model,
    *,
    patch_size: Sequence[int] | int = 64,
    overlap: int = 6,
    blend: str = "crop",
    batch_size: int = 1,
    device: str = "cpu",
) -> Method:
    """Wrap a network as a :data:`Method` using whole-volume tiled inference."""
    from mrenhance.engine.infer import infer

    def run(lr: np.ndarray, hr: np.ndarray) -> np.ndarray:
        return infer(
            model, lr, patch_size, overlap, blend=blend, batch_size=batch_size, device=device
        )

    return run


def baseline_methods(factors: Sequence[float]) -> dict[str, Method]:
    """Interpolation baselines of Table 2 and the zero-filled (sinc) network input."""
    return {
        "nearest": lambda lr, hr: interpolation_baseline(hr, factors, "nearest"),
        "trilinear": lambda lr, hr: interpolation_baseline(hr, factors, "linear"),
        "tricubic": lambda lr, hr: interpolation_baseline(hr, factors, "cubic"),
        "zero-filled (input)": lambda lr, hr: lr,
    }


def evaluate_region(
    methods: dict[str, Method],
    subject: SRSubject,
    held_out: dict[str, Any],
    which: str = "test",
    metrics: Sequence[str] = ("ssim", "psnr", "nrmse"),
) -> list[dict[str, Any]]:
    """Run each method on the held-out slab (with context) and measure it inside the brain.

    Returns one row per method: {"method", metrics..., "seconds"}. Baselines run on the whole
    volume (they are global k-space operations); networks on the slab plus context.
    """
    from mrenhance.metrics import compute_metrics

    box = held_out_box(subject.hr.shape, held_out, which, CONTEXT_VOX)
    inner = held_out_box(subject.hr.shape, held_out, which, 0)
    axis = int(held_out["axis"])
    # the slab inside the context crop
    offset = inner[axis].start - box[axis].start
    length = inner[axis].stop - inner[axis].start
    rows = []
    for name, method in methods.items():
        t0 = time.perf_counter()
        if name in ("nearest", "trilinear", "tricubic", "sinc"):
            full = method(subject.lr, subject.hr)
            sr = full[box]
        else:
            sr = method(subject.lr[box], subject.hr[box])
        seconds = time.perf_counter() - t0
        sl = [slice(None)] * 3
        sl[axis] = slice(offset, offset + length)
        sl = tuple(sl)
        hr, mask = subject.hr[box][sl], subject.mask[box][sl]
        values = compute_metrics(sr[sl], hr, names=tuple(metrics), data_range=1.0, mask=mask)
        rows.append({"method": name, **values, "seconds": round(seconds, 2)})
    return rows
