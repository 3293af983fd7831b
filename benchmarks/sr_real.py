"""3D SR on real MR scans: does a model trained offline transfer to scans it never saw?

Every real MR scan that ships inside our installed packages and is at least ~16 voxels
along each axis (nibabel, dipy test data; pydicom's and scikit-image's bundled MR files
are single 2D slices, nibabel's PAR/REC phantoms have 9 slices, and its 3D DICOM test files
``philips_mprage.dcm.gz`` / ``siemens_dwi_*.dcm.gz`` hold all-zero pixel data), none of
them used for training or model selection, is degraded by

    (a) k-space truncation 2x2 in-plane (axes 0 and 1), zero-filled (mDCSRN Sec. 2.6);
    (b) thick slices along axis 2: Gaussian slice profile of FWHM 2 voxels, one slice every
        2 voxels, cubic back to the grid (``simulate.kspace.thick_slice``);
    (c) (a) plus Rician noise at SNR 20 (mean head signal / sigma, seed 0).

and restored by: the input itself, tricubic interpolation of the low-matrix image ((a)
only; for (b) the input *is* the cubic interpolation of the thick slices), each model as
``enhance`` runs it by default (data consistency ``auto``: a detected zero-filled band is
kept, ``mrenhance.consistency``), with ``--check`` also ``consistency="check"`` (where no
band is detected the network is weighed against the input by a self-check on the scan's
sharpest axis) and, with ``--raw``, the raw network (``consistency="off"``,
rows marked "raw"), with ``--tv`` each model with ``consistency="tv"`` (rows "+ TV":
TV-regularised compressed sensing of the unmeasured band started from the network output,
``mrenhance.consistency.tv_consistency``) and the classical TV compressed-sensing
reconstruction from the input alone (Lustig et al. 2007), and a model adapted to each
input (``enhance(..., adapt_steps=N)``).
PSNR / SSIM inside an automatic head mask of the scan (``preprocess.head_mask``), both
images divided by the scan's 99.5th head percentile, data_range 1; gain = PSNR - PSNR of
the input. Scans larger than ``--crop`` voxels along an axis are cropped around the head's
centre (CPU time; choice).

    python benchmarks/sr_real.py --raw --tv --check       # the committed table
    python benchmarks/sr_real.py --adapt-steps 0 --models mdcsrn-b4u4,runs/x.safetensors

Writes ``benchmarks/results/sr_real.{json,md,csv}`` and ``sr_real.png``.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, provenance, tune_allocator, write_results  # noqa: E402


def _site(package: str) -> Path:
    import importlib

    return Path(importlib.import_module(package).__file__).parent


def _nib(package: str, relative: str, frame: int | None = None) -> Callable:
    def load() -> tuple[np.ndarray, np.ndarray]:
        import nibabel as nib

        img = nib.load(str(_site(package) / relative))
        data = np.asarray(img.dataobj, dtype=np.float32)
        if data.ndim == 4:
            data = data[..., frame or 0]
        return np.squeeze(data), np.asarray(img.affine, dtype=np.float64)

    return load


def _dicom(relative: str) -> Callable:
    def load() -> tuple[np.ndarray, np.ndarray]:
        import pydicom
        from nibabel.nicom import dicomwrappers

        path = _site("nibabel") / relative
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as fh:
            wrapper = dicomwrappers.wrapper_from_data(pydicom.dcmread(fh, force=True))
        return np.asarray(wrapper.get_data(), np.float32), np.asarray(wrapper.affine)

    return load


# name -> (what it is, loader); every file is read from an installed package, never fetched
SCANS: dict[str, tuple[str, Callable]] = {
    "nibabel anatomical.nii": (
        "T1, 2 mm, with skull",
        _nib("nibabel", "tests/data/anatomical.nii"),
    ),
    "nibabel reoriented_anat_moved.nii": (
        "the same T1 resampled to 4 mm",
        _nib("nibabel", "tests/data/reoriented_anat_moved.nii"),
    ),
    "nibabel example4d.nii.gz[0]": (
        "BOLD EPI, 2x2x2.2 mm",
        _nib("nibabel", "tests/data/example4d.nii.gz", 0),
    ),
    "nibabel example4d+orig.BRIK.gz[0]": (
        "BOLD EPI (AFNI), 3 mm",
        _nib("nibabel", "tests/data/example4d+orig.BRIK.gz", 0),
    ),
    "nibabel small.mnc": ("brain, 9x8x7 mm (MINC)", _nib("nibabel", "tests/data/small.mnc")),
    "dipy aniso_vox.nii.gz": ("4x4x5 mm", _nib("dipy", "data/files/aniso_vox.nii.gz")),
    "dipy test_piesno.nii.gz": (
        "DWI, 14 slices",
        _nib("dipy", "data/files/test_piesno.nii.gz"),
    ),
}

DEGRADATIONS = {
    "(a) k-space 2x2": {"kspace_factors": (2.0, 2.0, 1.0)},
    "(b) thick slices 2x": {"thick": {"axis": 2, "fwhm_vox": 2.0, "spacing_vox": 2}},
    "(c) k-space 2x2 + noise SNR 20": {"kspace_factors": (2.0, 2.0, 1.0), "noise_snr": 20.0},
}


def crop_to_head(data: np.ndarray, mask: np.ndarray, width: int) -> tuple[slice, ...]:
    """A box of at most ``width`` voxels per axis around the head mask's centre."""
    centre = np.argwhere(mask).mean(axis=0).round().astype(int)
    box = []
    for c, n in zip(centre, data.shape, strict=True):
        w = min(n, width)
        start = int(np.clip(c - w // 2, 0, n - w))
        box.append(slice(start, start + w))
    return tuple(box)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mdcsrn-b4u4,mdcsrn-b4u4-synth")
    p.add_argument("--labels", default="mdcsrn-b4u4 (MNI only; default),mdcsrn-b4u4-synth")
    p.add_argument(
        "--adapt-model",
        default="mdcsrn-b4u4-synth,mdcsrn-b4u4",
        help="comma-separated models that get adapted rows",
    )
    p.add_argument(
        "--adapt-label",
        default="mdcsrn-b4u4-synth + adapt,mdcsrn-b4u4 + adapt",
        help="comma-separated labels of the adapted rows (the step count is appended)",
    )
    p.add_argument("--adapt-steps", type=int, default=50)
    p.add_argument("--crop", type=int, default=48)
    p.add_argument("--scans", default=None, help="comma-separated subset of the scan names")
    p.add_argument("--adapt-patch", type=int, default=16)
    p.add_argument(
        "--adapt-scans",
        default="all",
        help="comma-separated scans that get the adapted rows (default all; CPU time)",
    )
    p.add_argument(
        "--adapt-degradations",
        default="all",
        help="comma-separated degradation labels, e.g. '(a),(b)', or 'all' (default)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="also the raw network of each model (enhance(..., consistency='off'))",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="also each model with consistency='check' (as auto; where no band is detected "
        "the network is weighed against the input by a self-check on its sharpest axis)",
    )
    p.add_argument(
        "--tv",
        action="store_true",
        help="also each model with consistency='tv' (TV-regularised compressed sensing of "
        "the unmeasured band from the network output) and the classical TV compressed "
        "sensing reconstruction from the input alone",
    )
    p.add_argument("--name", default="sr_real")
    p.add_argument(
        "--cache",
        default=None,
        help="folder keeping each network output (keyed by the weights' sha256): a rerun "
        "only computes what is new",
    )
    args = p.parse_args()
    tune_allocator()
    from mrenhance import Volume
    from mrenhance.consistency import detect_kspace_cutoffs, tv_consistency
    from mrenhance.engine.adapt import adapt_enhancer
    from mrenhance.enhance_api import Enhancer, enhance, resolve_weights
    from mrenhance.metrics import compute_metrics
    from mrenhance.preprocess import head_mask, intensity_scale
    from mrenhance.tasks.sr_synthetic import apply_degradation
    from mrenhance.tasks.sr_t1 import interpolation_baseline

    models = [m for m in args.models.split(",") if m]
    labels = dict(zip(models, [x for x in args.labels.split(",") if x], strict=False))
    adapt_models = [m for m in args.adapt_model.split(",") if m]
    adapt_labels = dict(
        zip(adapt_models, [x for x in args.adapt_label.split(",") if x], strict=False)
    )
    scans = SCANS if not args.scans else {k: SCANS[k] for k in args.scans.split(",")}
    rows, pictures = [], {}
    for scan, (what, load) in scans.items():
        data, affine = load()
        data = np.clip(np.nan_to_num(data), 0, None).astype(np.float32)
        if not data.any():
            print(f"{scan}: no signal (all-zero pixel data), skipped", flush=True)
            continue
        mask = head_mask(data)
        box = crop_to_head(data, mask, args.crop)
        hr, mask = data[box], mask[box]
        ref = float(np.percentile(hr[mask], 99.5))
        print(f"{scan}: {what}, {hr.shape} (of {data.shape}), head {mask.mean():.2f}", flush=True)
        for k, (degradation, drawn) in enumerate(DEGRADATIONS.items()):
            lr = apply_degradation(hr, drawn, np.random.default_rng([0, k]), signal_mask=mask)
            vol = Volume(lr, affine, {"source": f"{scan} {degradation}"})
            outputs: dict[str, tuple[np.ndarray, float, dict]] = {"input": (lr, 0.0, {})}
            if "noise_snr" not in drawn and "kspace_factors" in drawn:
                t0 = time.perf_counter()
                tc = interpolation_baseline(hr, drawn["kspace_factors"], "cubic")
                outputs["tricubic"] = (tc, time.perf_counter() - t0, {})
            if args.tv:
                t0 = time.perf_counter()
                cuts = detect_kspace_cutoffs(lr)
                scale = np.float32(intensity_scale(lr))
                cs = tv_consistency(lr / scale, lr / scale, cuts) * scale
                outputs["TV compressed sensing"] = (
                    cs,
                    time.perf_counter() - t0,
                    {"consistency": "kspace+tv" if any(cuts) else "none detected"},
                )
            runs = [(model, 0, "auto") for model in models]
            if args.tv:
                runs += [(model, 0, "tv") for model in models]
            if args.raw:
                runs += [(model, 0, "off") for model in models]
            if args.check:
                runs += [(model, 0, "check") for model in models]
            if (
                args.adapt_steps > 0
                and (args.adapt_scans == "all" or scan in args.adapt_scans.split(","))
                and (
                    args.adapt_degradations == "all"
                    or degradation.split(" ")[0] in args.adapt_degradations.split(",")
                )
            ):
                runs += [(m, args.adapt_steps, "auto") for m in adapt_models]
            for model, steps, consistency in runs:
                if steps:
                    name = f"{adapt_labels.get(model, Path(model).stem + ' + adapt')} {steps}"
                else:
                    name = labels.get(model, Path(model).stem)
                if consistency == "off":
                    name += " raw"
                elif consistency == "tv":
                    name += " + TV"
                elif consistency == "check":
                    name += " --consistency check"
                key = (
                    f"{scan}|{degradation}|{_sha(model)}|{steps}|{args.adapt_patch}|"
                    f"{args.crop}|{consistency}"
                )
                cached = _cache_get(args.cache, key)
                if cached is None:
                    t0 = time.perf_counter()
                    if steps:
                        enhancer = Enhancer.from_weights(
                            resolve_weights(model), consistency=consistency
                        )
                        enhancer = adapt_enhancer(
                            enhancer, vol, steps=steps, patch_size=args.adapt_patch
                        )
                        res = enhancer(vol)
                    else:
                        res = enhance(vol, model, consistency=consistency)
                    info = {
                        **res.meta.get("adaptation", {}),
                        "consistency": res.meta.get("consistency", {}).get("mode", ""),
                    }
                    cached = (res.data, time.perf_counter() - t0, info)
                    _cache_put(args.cache, key, cached)
                outputs[name] = cached
            base = None
            for method, (out, seconds, info) in outputs.items():
                m = compute_metrics(
                    out / ref, hr / ref, names=("psnr", "ssim"), data_range=1.0, mask=mask
                )
                base = base or m
                row = {
                    "degradation": degradation,
                    "scan": scan,
                    "method": method,
                    "psnr": round(m["psnr"], 3),
                    "ssim": round(m["ssim"], 4),
                    "gain_db": round(m["psnr"] - base["psnr"], 3),
                    "seconds": round(seconds, 2),
                }
                if info.get("consistency"):
                    row["consistency"] = info["consistency"]
                if info.get("steps"):
                    row["adapt_seconds"] = info.get("seconds")
                    row["adapt_loss"] = f"{info.get('loss_before')}->{info.get('loss_after')}"
                rows.append(row)
                print(
                    f"  {degradation:32s} {method:34s} {row['psnr']:7.2f} dB "
                    f"{row['ssim']:.4f} gain {row['gain_db']:+.2f} ({seconds:.1f} s)",
                    flush=True,
                )
            if k == 0:
                pictures[scan] = {"reference": hr, **{m: o[0] for m, o in outputs.items()}}, ref
    summary = summarise(rows)
    meta = provenance(" ".join(["python benchmarks/sr_real.py", *sys.argv[1:]]))
    meta.update(
        protocol="real scans from installed packages (never trained on); degradations (a) "
        "k-space 2x2 axes 0,1; (b) thick slices axis 2, FWHM 2 vox, spacing 2; (c) (a) + "
        "Rician noise SNR 20; head mask, / 99.5th head percentile, data_range 1; gain = "
        "PSNR - PSNR(input)",
        adapt_steps=args.adapt_steps,
        adapt_patch=args.adapt_patch,
        adapt_scans=args.adapt_scans,
        adapt_degradations=args.adapt_degradations,
        crop=args.crop,
        scans={k: v[0] for k, v in scans.items()},
    )
    write_results(args.name, summary + rows, meta)
    picture(pictures, RESULTS / f"{args.name}.png")
    return 0


def _sha(model: str) -> str:
    from mrenhance.models.weights import read_card, resolve_weights

    return read_card(resolve_weights(model)).sha256[:16]


def _cache_get(folder: str | None, key: str) -> tuple | None:
    import hashlib
    import json

    if folder is None:
        return None
    stem = Path(folder) / hashlib.sha256(key.encode()).hexdigest()[:24]
    if not stem.with_suffix(".npy").is_file():
        return None
    meta = json.loads(stem.with_suffix(".json").read_text())
    return np.load(stem.with_suffix(".npy")), meta["seconds"], meta["info"]


def _cache_put(folder: str | None, key: str, value: tuple) -> None:
    import hashlib
    import json

    if folder is None:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    stem = Path(folder) / hashlib.sha256(key.encode()).hexdigest()[:24]
    np.save(stem.with_suffix(".npy"), value[0])
    stem.with_suffix(".json").write_text(
        json.dumps({"key": key, "seconds": value[1], "info": value[2]}, default=str)
    )


def summarise(rows: list[dict]) -> list[dict]:
    """Per degradation and method: mean / min gain over the scans, scans below the input."""
    out = []
    keys = []
    for r in rows:
        key = (r["degradation"], r["method"])
        if key not in keys:
            keys.append(key)
    for degradation, method in keys:
        sel = [r for r in rows if r["degradation"] == degradation and r["method"] == method]
        gains = [r["gain_db"] for r in sel]
        out.append(
            {
                "degradation": degradation,
                "scan": f"mean of {len(sel)}",
                "method": method,
                "psnr": round(float(np.mean([r["psnr"] for r in sel])), 3),
                "ssim": round(float(np.mean([r["ssim"] for r in sel])), 4),
                "gain_db": round(float(np.mean(gains)), 3),
                "min_gain_db": round(float(np.min(gains)), 3),
                "below_input": int(sum(g < 0 for g in gains)),
                "seconds": round(float(np.sum([r["seconds"] for r in sel])), 1),
            }
        )
    return out


def picture(pictures: dict, path: Path) -> None:
    """One axial slice of every scan under degradation (a): reference, input, each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(pictures)
    columns: list[str] = []
    for panels, _ in pictures.values():
        columns += [c for c in panels if c not in columns]
    fig, axes = plt.subplots(
        len(names), len(columns), figsize=(1.9 * len(columns), 1.9 * len(names)), squeeze=False
    )
    for i, scan in enumerate(names):
        panels, ref = pictures[scan]
        z = panels["reference"].shape[2] // 2
        for j, col in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if col not in panels:
                ax.axis("off")
                continue
            ax.imshow(np.rot90(panels[col][:, :, z] / ref), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col, fontsize=7)
            if j == 0:
                ax.set_ylabel(scan.replace("nibabel ", "").replace("dipy ", ""), fontsize=6)
    fig.suptitle("Real scans, (a) k-space 2x2: middle slice along axis 2", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
