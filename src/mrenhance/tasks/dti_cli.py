"""``mrenhance dti DWI -o OUTDIR``: FA, MD, colour-FA and V1 maps of a DWI series (dipy).

The series is a NIfTI with ``.bval``/``.bvec`` beside it or a DICOM DWI series; the tensor
is fitted by weighted least squares (:func:`mrenhance.diffusion.fit_tensors`) inside an
automatic head mask of the mean b0 (or ``--mask``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "dti"
ORDER = 100  # after the built-in commands


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "dti",
        help="fit diffusion tensors: FA, MD, colour-FA and V1 maps",
        epilog="example:\n  mrenhance dti dwi_sr.nii.gz -o dti_maps/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="DWI NIfTI (with .bval/.bvec beside it) or DICOM series")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--mask", default=None, help="brain mask NIfTI (default: automatic)")
    p.add_argument("--overwrite", action="store_true", help="replace existing maps")
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mrenhance.diffusion import fit_tensors
    from mrenhance.errors import InputError
    from mrenhance.io import load, save
    from mrenhance.io.atomic import check_file_name, check_output_path
    from mrenhance.io.paths import check_not_input
    from mrenhance.io.validate import check_same_grid
    from mrenhance.preprocess import head_mask
    from mrenhance.tasks.dti import TASK, mean_b0

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    names = {k: out / f"{k}.nii.gz" for k in ("fa", "md", "cfa", "v1")}
    inputs = [p for p in (args.input, args.mask) if p]
    for path in names.values():  # before any work: never over an input or an earlier map
        check_not_input(path, inputs)
        if out.exists():
            check_output_path(path, args.overwrite)
        else:
            check_file_name(path, temp_suffix=True)
    vol = load(args.input)
    TASK.check_input(vol)
    bvals, bvecs = np.asarray(vol.meta["bvals"]), vol.meta.get("bvecs")
    if bvecs is None or (bvals > 50).sum() < 6:
        raise InputError(f"{args.input}: a tensor fit needs b-vectors and >= 6 DW volumes")
    if args.mask:
        mask = check_same_grid(load(args.mask), vol, "mask") > 0
    else:
        mask = head_mask(mean_b0(vol.data, bvals))
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs were accepted
    maps = fit_tensors(vol.data, bvals, np.asarray(bvecs), mask)
    geometry = vol.with_data(vol.data[..., 0])
    geometry.meta.pop("bvals", None)
    geometry.meta.pop("bvecs", None)
    for key, path in names.items():
        save(
            geometry.with_data(maps[key], step=f"dti: {key} (dipy WLS)"),
            path,
            overwrite=args.overwrite,
        )
        if not args.quiet:
            print(f"{path}")
    return 0
