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


#: Most subjects one call simulates (choice: each takes a few seconds and ~15 MB on disk).
MAX_SUBJECTS = 999
#: The files of one subject, under OUT (``{s}``: the subject label, e.g. ``01``).
SUBJECT_FILES = (
    "sub-{s}/perf/sub-{s}_asl.nii.gz",
    "sub-{s}/perf/sub-{s}_aslcontext.tsv",
    "sub-{s}/perf/sub-{s}_asl.json",
    "sub-{s}/perf/sub-{s}_m0scan.nii.gz",
    "sub-{s}/perf/sub-{s}_m0scan.json",
    "derivatives/truth/sub-{s}/sub-{s}_cbf_truth.nii.gz",
    "derivatives/truth/sub-{s}/sub-{s}_cbf_mean10.nii.gz",
    "derivatives/truth/sub-{s}/sub-{s}_cbf_pseudogold.nii.gz",
)


def subject_label(i: int) -> str:
    """The BIDS label of the ``i``-th (0-based) subject: ``01``, ``02``, ..."""
    return f"{i + 1:02d}"


def output_paths(out, subjects: int) -> list:
    """Every file ``asl-simulate -o out --subjects N`` writes, in writing order."""
    from pathlib import Path

    out = Path(out)
    return [out / f.format(s=subject_label(i)) for i in range(subjects) for f in SUBJECT_FILES]


def check_options(args: argparse.Namespace) -> None:
    """Refuse absurd option values and unusable output paths before any simulation.

    ``--subjects`` 1-:data:`MAX_SUBJECTS`, ``--seed`` >= 0, ``--outlier-fraction`` in
    [0, 1], ``--thermal-noise`` in [0, 1); every output file (:func:`output_paths`) must
    be new (or ``--overwrite``), with a name the file system can hold, and every folder on
    the way a folder (created when missing). One-line InputError (exit 2); nothing written.
    """
    import math
    import os
    from pathlib import Path

    from mrenhance.errors import InputError, OutputExistsError
    from mrenhance.io.atomic import check_file_name

    if not 1 <= args.subjects <= MAX_SUBJECTS:
        raise InputError(f"--subjects {args.subjects}: must be in 1..{MAX_SUBJECTS}")
    if args.seed < 0:
        raise InputError(f"--seed {args.seed}: must be >= 0")
    for option, value, high, closed in (
        ("--outlier-fraction", args.outlier_fraction, 1.0, True),
        ("--thermal-noise", args.thermal_noise, 1.0, False),
    ):
        ok = math.isfinite(value) and 0 <= value and (value <= high if closed else value < high)
        if not ok:
            bracket = "]" if closed else ")"
            raise InputError(f"{option} {value:g}: must be in [0, {high:g}{bracket}")
    out = Path(args.output)
    folders: set[Path] = set()
    for path in output_paths(out, args.subjects):
        check_file_name(path, temp_suffix=True)
        if path.is_dir():
            raise InputError(f"{path}: output path is a directory")
        if (path.exists() or path.is_symlink()) and not args.overwrite:
            raise OutputExistsError(f"{path}: output exists (use --overwrite to replace it)")
        folders.add(path.parent)
    for folder in sorted(folders):
        # the nearest existing folder on the way: the files, or the missing folders, go in it
        near = next(q for q in (folder, *folder.parents) if q.exists() or q.is_symlink())
        if not near.is_dir():
            raise InputError(f"{near}: exists and is not a folder (output {out})")
        if not os.access(near, os.W_OK | os.X_OK):
            raise InputError(f"{near}: output folder is not writable")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mrenhance.io import save
    from mrenhance.io.bids_asl import write_bids_asl
    from mrenhance.simulate.asl import simulate_asl_subject
    from mrenhance.volume import Volume

    check_options(args)  # every refusal before the first (~15 s) simulation
    out = Path(args.output)
    for i in range(args.subjects):
        label = subject_label(i)
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
