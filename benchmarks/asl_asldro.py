"""ASL denoising on an independent simulator: ASLDRO's pCASL series through ``enhance``.

Our networks are trained and tested on our own simulator (``mrenhance.simulate.asl``).
ASLDRO (Oliver-Taylor et al., the ``asldro`` package, installed; it needs ``jsonschema``)
is another one: its own ground truth (the ICBM 2009a brain, GM 60 / WM 20 ml/100 g/min),
its own signal model (the general kinetic model with arterial transit time), its own
acquisition (resampling of a 1 mm truth to the acquisition matrix, complex Gaussian noise
at a given image SNR) and its own BIDS writer. Each case here is one ASLDRO run in the
paper's protocol: pCASL, an M0 scan then 10 control/label pairs (the paper's test input:
a 10-pair mean), label duration 1.5 s, PLD 1.5 s, TR 4 s, 64 x 64 x 20; a head pose
(rotation about z, translation) and a noise seed per case, at image SNR 100 and 200.

Each written ``*_asl.nii.gz`` (with its ``aslcontext.tsv`` and sidecar) is read by
``mrenhance.io.load`` and enhanced by ``enhance(volume, model)``, the code path of
``mrenhance enhance 001_asl.nii.gz -o out.nii.gz --model dwan-asl-lfn``: per-pair CBF with the
sidecar's timing and the series' M0 scan, their mean, DWAN slice by slice at 2 mm, back on
the acquisition grid. Rows: the 10-pair mean (the network's input), a Gaussian at the ASL
table's validation-chosen FWHM (8 mm; no tuning on these cases), and each model twice: as
``enhance`` runs it by default (``consistency="auto"``: the network weighed against the
plain mean by a split-half check on the series' own pairs,
``mrenhance.tasks.asl.split_half_weight``; the weights are in the JSON) and as the raw
network (``consistency="off"``, rows marked "raw network"). Scores
against ASLDRO's true CBF on the acquisition grid (its ``ground_truth`` series), in the
brain (true GM or WM label): PSNR (data range 100 ml/100 g/min), mean CBF in GM and WM
and their ratio (GM/WM contrast; truth ~2.5-3 after partial volume), SNR (GM mean / WM std,
middle slice). None of these cases is used to train or select anything.

    PYTHONPATH=src python benchmarks/asl_asldro.py                      # shipped model
    PYTHONPATH=src python benchmarks/asl_asldro.py --weights dwan-asl-lfn,OLD.safetensors

Writes ``benchmarks/results/asl_asldro.{json,md,csv}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402

#: (case name, noise seed, rotation about z in degrees, translation x / y in mm)
POSES = (
    ("pose-0", 0, 0.0, 0.0, 0.0),
    ("pose-1", 1, 4.0, 3.0, -2.0),
    ("pose-2", 2, -5.0, -2.0, 4.0),
)
SNRS = (100.0, 200.0)
N_PAIRS = 10
GAUSSIAN_FWHM_MM = 8.0  # benchmarks/results/asl_table: best FWHM on the validation subjects
DATA_RANGE = 100.0


def asldro_params(seed: int, rot_z: float, tx: float, ty: float, snr: float) -> dict:
    """ASLDRO input parameters: the paper's pCASL protocol, one pose, no motion."""
    from asldro.validators.user_parameter_input import get_example_input_params

    params = get_example_input_params()
    n = 1 + 2 * N_PAIRS
    pose = {
        "rot_x": 0.0,
        "rot_y": 0.0,
        "rot_z": rot_z,
        "transl_x": tx,
        "transl_y": ty,
        "transl_z": 0.0,
    }
    series = []
    for s in params["image_series"]:
        p = s["series_parameters"]
        if s["series_type"] == "asl":
            p.update({k: [v] * n for k, v in pose.items()})
            p.update(
                acq_matrix=[64, 64, 20],
                label_type="pcasl",
                label_duration=1.5,
                signal_time=3.0,  # label duration + PLD 1.5 s
                label_efficiency=0.85,
                asl_context=" ".join(["m0scan"] + ["control", "label"] * N_PAIRS),
                echo_time=[0.01] * n,
                repetition_time=[10.0] + [4.0] * (n - 1),
                desired_snr=float(snr),
                random_seed=int(seed),
            )
            series.append(s)
        elif s["series_type"] == "ground_truth":
            p.update(pose)
            p["acq_matrix"] = [64, 64, 20]
            series.append(s)
    params["image_series"] = series  # no structural series (not needed; slow)
    return params


def run_asldro(params: dict, folder: Path) -> tuple[Path, Path, Path]:
    """Run ASLDRO into ``folder``; (asl series, true CBF, true label map) paths."""
    from asldro.examples import run_full_pipeline

    archive = folder / "asldro.zip"
    run_full_pipeline(params, str(archive))
    with zipfile.ZipFile(archive) as z:
        z.extractall(folder)
    asl = next(folder.glob("asl/*_asl.nii.gz"))
    cbf = next(folder.glob("ground_truth/*_ground_truth_perfusion_rate.nii.gz"))
    seg = next(folder.glob("ground_truth/*_ground_truth_seg_label.nii.gz"))
    return asl, cbf, seg


def scores(out: np.ndarray, truth: np.ndarray, seg: np.ndarray) -> dict[str, float]:
    from mrenhance.metrics import contrast_ratio, psnr, snr

    gm, wm = seg == 1, seg == 2
    brain = gm | wm
    mid = int(np.argmax((gm | wm).sum(axis=(0, 1))))
    return {
        "psnr_truth": psnr(out, truth, DATA_RANGE, brain),
        "gm_mean": float(out[gm].mean()),
        "wm_mean": float(out[wm].mean()),
        "gm_wm_contrast": contrast_ratio(out, gm, wm),
        "snr": snr(out[:, :, mid], gm[:, :, mid], wm[:, :, mid]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="dwan-asl-lfn", help="comma-separated names or paths")
    ap.add_argument("--labels", default=None, help="comma-separated row labels")
    ap.add_argument("--name", default="asl_asldro")
    args = ap.parse_args()
    tune_allocator()
    import nibabel as nib
    import torch

    from mrenhance.enhance_api import Enhancer, enhance
    from mrenhance.io import load
    from mrenhance.models.weights import read_card, resolve_weights
    from mrenhance.simulate.asl import gaussian_fwhm
    from mrenhance.tasks import get_task
    from mrenhance.volume import voxel_sizes

    torch.set_num_threads(1)
    task = get_task("asl")
    weights = [w for w in args.weights.split(",") if w]
    labels = args.labels.split(",") if args.labels else weights
    enhancers = {
        lab: Enhancer.from_weights(resolve_weights(w))
        for w, lab in zip(weights, labels, strict=True)
    }
    raw = {
        lab: Enhancer.from_weights(resolve_weights(w), consistency="off")
        for w, lab in zip(weights, labels, strict=True)
    }
    split_weights: dict[str, list[float]] = {}
    shas = {
        lab: read_card(resolve_weights(w)).sha256 for w, lab in zip(weights, labels, strict=True)
    }
    per_case: list[dict] = []
    for snr_level in SNRS:
        for name, seed, rot, tx, ty in POSES:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                asl, cbf_path, seg_path = run_asldro(
                    asldro_params(seed, rot, tx, ty, snr_level), Path(tmp)
                )
                sim_s = time.perf_counter() - t0
                volume = load(asl)
                truth = np.asarray(nib.load(cbf_path).dataobj, dtype=np.float32)
                seg = np.asarray(nib.load(seg_path).dataobj).astype(np.int16)
                voxel = voxel_sizes(volume.affine)
                mean10 = task.cbf_map(volume)
                outputs = {
                    "mean of 10 pairs (input)": mean10,
                    f"gaussian FWHM {GAUSSIAN_FWHM_MM:g} mm": gaussian_fwhm(
                        mean10, GAUSSIAN_FWHM_MM, voxel
                    ),
                }
                for label, enhancer in enhancers.items():
                    outputs[f"{label} (raw network)"] = enhance(volume, raw[label]).data
                    result = enhance(volume, enhancer)  # the default: split-half weight
                    outputs[label] = result.data
                    info = result.meta.get("consistency") or {}
                    split_weights.setdefault(f"{label} @ SNR {snr_level:g}", []).append(
                        float(info.get("weight", float("nan")))
                    )
            for method, out in outputs.items():
                row = {"snr_level": snr_level, "case": name, "method": method}
                row.update(scores(np.asarray(out, np.float32), truth, seg))
                per_case.append(row)
            truth_row = {"snr_level": snr_level, "case": name, "method": "truth"}
            truth_row.update(scores(truth, truth, seg))
            truth_row["psnr_truth"] = float("inf")
            per_case.append(truth_row)
            print(f"SNR {snr_level:g} {name}: asldro {sim_s:.0f} s", flush=True)
    rows = []
    methods = list(dict.fromkeys(r["method"] for r in per_case))
    for snr_level in SNRS:
        for method in methods:
            rs = [r for r in per_case if r["snr_level"] == snr_level and r["method"] == method]
            row = {"snr_level": snr_level, "method": method, "cases": len(rs)}
            for k in ("psnr_truth", "gm_mean", "wm_mean", "gm_wm_contrast", "snr"):
                v = np.array([r[k] for r in rs], dtype=np.float64)
                row[k] = round(float(v.mean()), 3) if np.isfinite(v).all() else None
                if k == "psnr_truth" and np.isfinite(v).all():
                    row["psnr_truth_min"] = round(float(v.min()), 3)
            rows.append(row)
    meta = provenance("python benchmarks/asl_asldro.py " + " ".join(sys.argv[1:]))
    import asldro

    meta.update(
        protocol=(
            f"ASLDRO {asldro.__version__ if hasattr(asldro, '__version__') else '2.2.0'}: pCASL, "
            f"M0 + {N_PAIRS} control/label pairs, LD 1.5 s, PLD 1.5 s, TR 4 s, 64x64x20, poses "
            f"{[p[0] for p in POSES]}, image SNR {list(SNRS)}; scores vs ASLDRO's true CBF on the "
            "acquisition grid in its GM|WM labels; PSNR data range 100"
        ),
        sha256=shas,
        split_half_weights=split_weights,
        per_case=per_case,
    )
    write_results(args.name, rows, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
