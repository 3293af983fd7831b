"""How ``consistency="tv"`` got its weight and iterations: synthetic validation scans only.

Never a real scan: 16 subjects from ``simulate.subjects`` (seed 777, distinct from every
training and validation seed), 1.5-5 mm isotropic voxels (users' clinical scans), five
contrasts in turn (T1, T2, PD, FLAIR, random), 48^3 around the brain, their own noise at
SNR 20-100, degraded by (a) k-space 2x2 (axes 0, 1) and (c) (a) + Rician noise SNR 20.
Methods: the input; TV compressed sensing from the input
(``mrenhance.consistency.tv_consistency``); each shipped SR model through ``enhance``
(hard data consistency) and then TV-DC over a grid of weights x iterations. PSNR in the
head mask after dividing by the truth's 99.5th head percentile; gain = PSNR - input's.

    python benchmarks/sr_tv_selection.py            # ~10 min on 2 cores

Writes ``benchmarks/results/sr_tv_selection.{json,md,csv}`` (per-degradation mean and min
gain, and one row per scan). The shipped constants ``TV_WEIGHT`` / ``TV_ITERATIONS`` are the
best mean on (a) at 20 iterations (time).
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

DEGRADATIONS = {
    "(a) k-space 2x2": {"kspace_factors": (2.0, 2.0, 1.0)},
    "(c) k-space 2x2 + noise SNR 20": {"kspace_factors": (2.0, 2.0, 1.0), "noise_snr": 20.0},
}
SYNTH_GRID = ((0.01, 10), (0.01, 20), (0.01, 40), (0.02, 20), (0.04, 20))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scans", type=int, default=16)
    p.add_argument("--name", default="sr_tv_selection")
    args = p.parse_args()
    tune_allocator()
    logging.disable(logging.WARNING)  # the voxel-size warnings of every enhance call
    from mrenhance import Volume
    from mrenhance.consistency import detect_kspace_cutoffs, tv_consistency
    from mrenhance.enhance_api import enhance
    from mrenhance.tasks.sr_synthetic import apply_degradation

    rows: list[dict] = []
    for j, vox, hr, mask, aff in synthetic_scans(777, args.scans):

        def psnr(x: np.ndarray, hr: np.ndarray = hr, mask: np.ndarray = mask) -> float:
            return float(10 * np.log10(1 / ((x - hr)[mask] ** 2).mean()))

        for degradation, spec in DEGRADATIONS.items():
            lr = apply_degradation(hr, spec, np.random.default_rng([778, j]), signal_mask=mask)
            cuts = detect_kspace_cutoffs(lr)
            got = {"TV compressed sensing": psnr(tv_consistency(lr, lr, cuts))}
            for model in ("mdcsrn-b4u4-synth", "mdcsrn-b4u4"):
                out = enhance(Volume(lr, aff, {}), model).data.astype(np.float32)
                got[model] = psnr(out)
                grid = SYNTH_GRID if model.endswith("synth") else ((0.01, 20),)
                for w, it in grid:
                    refined = tv_consistency(out, lr, cuts, weight=w, iterations=it)
                    got[f"{model} + TV w{w} x{it}"] = psnr(refined)
            rows += scan_rows(
                got, psnr(lr), degradation=degradation, scan=j, voxel_mm=vox, cuts=cuts
            )
            print(f"scan {j} {degradation}: {vox:.2f} mm, cuts {cuts}", flush=True)
    summary = gain_summary(rows, list(DEGRADATIONS))
    meta = provenance(" ".join(["python benchmarks/sr_tv_selection.py", *sys.argv[1:]]))
    meta.update(
        protocol="synthetic validation scans only (simulate.subjects seed 777), 1.5-5 mm, "
        "48^3; degradations (a), (c) of sr_real; head-mask PSNR; gain = PSNR - input's"
    )
    write_results(args.name, summary + rows, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
