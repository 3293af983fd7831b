"""``mrenhance asl-simulate``: simulated pCASL subjects as BIDS ASL, with their truth.

Writes ``OUT/sub-XX/perf/sub-XX_asl.nii.gz`` (+ aslcontext.tsv, asl.json, m0scan) on the
native 64 x 64 x 20 grid and ``OUT/derivatives/truth/sub-XX/`` with the true CBF, the
10-pair mean and the pseudo gold standard on the 2 mm MNI grid (all in ml/100 g/min).
"""

from __future__ import annotations

import argparse

NAME = "asl-simulate"
ORDER = 45


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from mrenhance.simulate.asl import CALIBRATED_THERMAL_NOISE

    p = sub.add_parser(
        NAME,
        help="simulate pCASL subjects (Xie et al. 2020 protocol) as BIDS ASL with the truth",
        epilog="example: mrenhance asl-simulate -o bids/ --subjects 2 --seed 0",
    )
    p.add_argument("-o", "--output", required=True, help="BIDS folder to write")
    p.add_argument("--subjects", type=int, default=1, help="subjects to simulate (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation (default 0)")
    p.add_argument(
        "--outlier-fraction",
        type=float,
        default=0.1,
        help="share of label/control pairs with a motion spike (default 0.1)",
    )
    p.add_argument(
        "--thermal-noise",
        type=float,
        default=CALIBRATED_THERMAL_NOISE,
        help="noise std per image as a fraction of the mean GM M0 (default "
        f"{CALIBRATED_THERMAL_NOISE:g}: calibrated to the paper's pseudo gold SNR 5.87)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mrenhance.errors import InputError
    from mrenhance.io import save
    from mrenhance.io.bids_asl import write_bids_asl
    from mrenhance.simulate.asl import simulate_asl_subject
    from mrenhance.volume import Volume

    if args.subjects < 1:
        raise InputError(f"--subjects {args.subjects}: must be >= 1")
    if not 0 <= args.thermal_noise < 1:
        raise InputError(f"--thermal-noise {args.thermal_noise:g}: must be in [0, 1)")
    out = Path(args.output)
    for i in range(args.subjects):
        label = f"{i + 1:02d}"
        s = simulate_asl_subject(
            [args.seed, i], name=f"sub-{label}", outlier_fraction=args.outlier_fraction,
            thermal_noise=args.thermal_noise, keep_series=True,
        )  # fmt: skip
        series = s.series
        p = series.protocol
        write_bids_asl(
            out,
            label,
            series.images,
            series.affine,
            series.m0scan,
            pld_s=p.pld_s,
            label_duration_s=p.label_duration_s,
            tr_s=p.tr_s,
            te_s=p.te_s,
            slice_timing_s=[k * p.slice_time_s for k in range(p.matrix[2])],
            labelling_efficiency=p.labelling_efficiency,
            overwrite=args.overwrite,
        )
        truth = out / "derivatives" / "truth" / f"sub-{label}"
        truth.mkdir(parents=True, exist_ok=True)
        for name, arr in (
            ("cbf_truth", s.truth),
            ("cbf_mean10", s.input_10),
            ("cbf_pseudogold", s.pseudo_gold),
        ):
            save(Volume(arr, s.affine, {"source": s.name}), truth / f"sub-{label}_{name}.nii.gz",
                 overwrite=args.overwrite)  # fmt: skip
        if not args.quiet:
            print(f"sub-{label}: {int((~s.keep).sum())} slice-pairs rejected as outliers")
    if not args.quiet:
        print(f"wrote {args.subjects} subject(s) to {out}/")
    return 0
