"""Which SR model ships, chosen on synthetic validation scans only (never a real scan).

16 subjects from ``simulate.subjects`` (seed 4242: no training, validation or
``sr_tv_selection`` scan uses it), 1.5-5 mm isotropic voxels, five contrasts in turn
(T1, T2, PD, FLAIR, random), 48^3 around the brain with their own noise at SNR 20-100, each
degraded as ``benchmarks/sr_real.py`` degrades the real scans: (a) k-space 2x2 (axes 0, 1),
(b) thick slices along axis 2 (Gaussian profile FWHM 2 voxels, one slice every 2, cubic
back to the grid), (c) (a) + Rician noise SNR 20. Every model runs through ``enhance``
with ``consistency="off"`` (the network as is), ``"auto"`` (hard data consistency where a
k-space band is detected, the self-check weight of
``mrenhance.consistency.self_check_weight`` where the input has one blurred axis, the
network as is elsewhere), ``"check"`` (as ``auto``; the self-check wherever no band is
detected; its band-only weight is blended from the raw output, rows "(band weight)") and
``"tv"``; the input and TV compressed
sensing alone are the baselines. PSNR in the head
mask after dividing by the truth's 99.5th head percentile; gain = PSNR - input's.

    python benchmarks/sr_synth_selection.py \
        --models mdcsrn-b4u4,mdcsrn-b4u4-synth,runs/x.safetensors

Writes ``benchmarks/results/sr_synth_selection.{json,md,csv}`` (per degradation and method:
mean and min gain, number of scans below their input; then one row per scan).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402
from _synth_scans import gain_summary, scan_rows, synthetic_scans  # noqa: E402

SEED = 4242
DEGRADATIONS = {
    "(a) k-space 2x2": {"kspace_factors": (2.0, 2.0, 1.0)},
    "(b) thick slices 2x": {"thick": {"axis": 2, "fwhm_vox": 2.0, "spacing_vox": 2}},
    "(c) k-space 2x2 + noise SNR 20": {"kspace_factors": (2.0, 2.0, 1.0), "noise_snr": 20.0},
}


def _label(model: str) -> str:
    return Path(model).stem if model.endswith(".safetensors") else model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scans", type=int, default=16)
    p.add_argument("--models", default="mdcsrn-b4u4,mdcsrn-b4u4-synth")
    p.add_argument("--name", default="sr_synth_selection")
    args = p.parse_args()
    tune_allocator()
    logging.disable(logging.WARNING)  # the voxel-size warnings of every enhance call
    from mrenhance import Volume
    from mrenhance.consistency import detect_kspace_cutoffs, tv_consistency
    from mrenhance.enhance_api import enhance
    from mrenhance.tasks.sr_synthetic import apply_degradation

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rows: list[dict] = []
    for j, vox, hr, mask, aff in synthetic_scans(SEED, args.scans):

        def psnr(x: np.ndarray, hr: np.ndarray = hr, mask: np.ndarray = mask) -> float:
            return float(10 * np.log10(1 / ((x - hr)[mask] ** 2).mean()))

        for degradation, spec in DEGRADATIONS.items():
            lr = apply_degradation(hr, spec, np.random.default_rng([SEED + 1, j]), signal_mask=mask)
            cuts = detect_kspace_cutoffs(lr)
            got = {"TV compressed sensing": psnr(tv_consistency(lr.copy(), lr, cuts))}
            weights: dict[str, float] = {}
            banded = any(c is not None for c in cuts)
            for model in models:
                name = _label(model)
                # where a band is detected "check" is "auto"; elsewhere "tv" is "auto"
                for mode in ("off", "auto", "tv") if banded else ("off", "auto", "check"):
                    out = enhance(Volume(lr, aff, {}), model, consistency=mode)
                    got[f"{name} {mode}"] = psnr(out.data.astype(np.float32))
                    info = out.meta.get("consistency", {})
                    if mode == "off":
                        raw = out.data.astype(np.float32)  # the network as is
                    if "weight" in info and mode == "check":
                        weights[f"{name} {mode}"] = info["weight"]
                        # the alternative weight of the self-check (band the check removed
                        # only), blended here from the raw output: outputs are clipped at 0
                        # after the blend in enhance, so this is within rounding of it
                        wb = float(info["weight_band"])
                        alt = np.clip(lr + wb * (raw - lr), 0, None)
                        got[f"{name} check (band weight)"] = psnr(alt)
                        weights[f"{name} check (band weight)"] = wb
                same = ("check", "auto") if banded else ("tv", "auto")
                got[f"{name} {same[0]}"] = got[f"{name} {same[1]}"]
                if banded:
                    got[f"{name} check (band weight)"] = got[f"{name} auto"]
            extra = {m: {"self_check_weight": weights.get(m)} for m in got}
            rows += scan_rows(
                got, psnr(lr), degradation=degradation, scan=j, voxel_mm=vox, cuts=cuts,
                extra=extra,
            )  # fmt: skip
            print(f"scan {j} {degradation}: {vox:.2f} mm, cuts {cuts}", flush=True)
    summary = gain_summary(rows, list(DEGRADATIONS))
    meta = provenance(" ".join(["python benchmarks/sr_synth_selection.py", *sys.argv[1:]]))
    meta.update(
        protocol=f"synthetic validation scans only (simulate.subjects seed {SEED}), 1.5-5 mm, "
        "48^3; degradations (a), (b), (c) of sr_real; head-mask PSNR; gain = PSNR - input's",
        models=models,
    )
    write_results(args.name, summary + rows, meta)
    for row in summary:
        print(
            f"{row['degradation'][:3]} {row['method']:<40} {row['gain_db']:+.3f} "
            f"(min {row['min_gain_db']:+.3f}; {row['below_input']} below)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
