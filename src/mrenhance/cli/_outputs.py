"""What ``enhance`` writes beside its images: BIDS derivative layout and JSON sidecars.

Kept out of ``cli/enhance.py`` so that command reads as one loop: plan the outputs
(:func:`plan_outputs`), then for each written image :func:`write_output_sidecar`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_bids_options(p: argparse.ArgumentParser) -> None:
    """``--subject/--session/--suffix/--datatype`` filters for a BIDS dataset input."""
    g = p.add_argument_group(
        "BIDS input",
        "when the input is a BIDS dataset root (it holds dataset_description.json), -o is "
        "a derivatives folder: outputs go to OUT/mrenhance/sub-*/[ses-*/]<datatype>/"
        "<entities>_desc-<model>_<suffix>.nii.gz with a JSON sidecar each",
    )
    g.add_argument(
        "--subject",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="only these subjects, e.g. 01 02 (default: all)",
    )
    g.add_argument(
        "--session",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="only these sessions (default: all)",
    )
    g.add_argument(
        "--suffix",
        nargs="+",
        default=None,
        metavar="SUFFIX",
        help="only these suffixes, e.g. T1w (default: all)",
    )
    g.add_argument(
        "--datatype",
        nargs="+",
        default=None,
        metavar="NAME",
        help="only these datatype folders, e.g. anat (default: all)",
    )
    g.add_argument("--desc", default=None,
                   help="the desc- label of the outputs (default: the model name, letters "
                   "and digits only)")  # fmt: skip


def add_output_options(p: argparse.ArgumentParser) -> None:
    """``--format``, ``--dtype``, ``--per-volume`` and ``--resample`` (docs/io.md)."""
    g = p.add_argument_group("output")
    g.add_argument(
        "--format",
        choices=("nifti", "dicom"),
        default=None,
        help="nifti (default: .nii or .nii.gz) or dicom: -o is then a series folder (one "
        "file per slice; a derived series of a DICOM input)",
    )
    g.add_argument(
        "--dtype",
        choices=("float32", "input"),
        default=None,
        help="NIfTI data type: float32 (default) or input (the input's integer type, with "
        "scl_slope/scl_inter chosen to fit the output)",
    )
    g.add_argument(
        "--per-volume",
        action="store_true",
        help="a 4D series and a model of 3D images: enhance each volume, write a 4D output",
    )
    g.add_argument(
        "--resample",
        action="store_true",
        help="resample the input to the model's training voxel size first; the output "
        "stays on that grid",
    )


def output_format(args: argparse.Namespace) -> str:
    """``nifti`` or ``dicom`` from ``--format`` and ``-o``; refuses a contradiction."""
    from mrenhance.errors import InputError
    from mrenhance.io.nifti import is_nifti_name

    fmt = getattr(args, "format", None) or "nifti"
    if fmt == "dicom":
        if is_nifti_name(args.output):
            raise InputError(f"{args.output}: --format dicom writes a series folder, not a NIfTI")
        if getattr(args, "dtype", None) == "float32":
            raise InputError(
                "--dtype float32: DICOM pixel data are 16-bit integers with RescaleSlope; "
                "drop --dtype or write NIfTI"
            )
    return fmt


def write_image(args: argparse.Namespace, result: Any, dst: Path) -> Path:
    """Write one output in the chosen format (atomically, NaN/Inf refused)."""
    from mrenhance.io import save

    fmt = output_format(args)
    dtype = "input" if getattr(args, "dtype", None) == "input" else None
    return save(result, dst, overwrite=args.overwrite, dtype=dtype, format=fmt)


def check_output(args: argparse.Namespace, dst: Path) -> None:
    """The checks of one output before its input is read (file or series folder)."""
    from mrenhance.errors import InputError
    from mrenhance.io.atomic import check_output_folder, check_output_path
    from mrenhance.io.nifti import is_nifti_name

    if output_format(args) == "dicom":
        check_output_folder(dst, args.overwrite)
        return
    check_output_path(dst, args.overwrite)
    if not is_nifti_name(dst):  # before the work, not after it
        raise InputError(f"{dst}: can only save NIfTI (.nii or .nii.gz)")


def plan_outputs(args: argparse.Namespace, model_name: str) -> tuple[list, dict[Any, Any]]:
    """``(pairs, bids)``: (input, output) pairs, and for a BIDS input each output's image."""
    from mrenhance.io.bids import bids_label, derivative_root, find_bids_images, is_bids_root
    from mrenhance.io.paths import check_not_input, plan_enhance_outputs

    fmt = output_format(args)
    if len(args.inputs) == 1 and is_bids_root(args.inputs[0]):
        if fmt != "nifti":
            from mrenhance.errors import InputError

            raise InputError(f"{args.inputs[0]}: BIDS derivatives are NIfTI; drop --format {fmt}")
        images = find_bids_images(
            args.inputs[0],
            subjects=args.subject,
            sessions=args.session,
            suffixes=args.suffix,
            datatypes=args.datatype,
        )
        root = derivative_root(args.output)
        desc = bids_label(args.desc or model_name)
        bids = {image.derivative_path(root, desc): image for image in images}
        for dst in bids:
            # derivatives/ inside the dataset is where BIDS puts them: outputs are checked
            # against the input images, not against the dataset folder
            check_not_input(dst, [image.path for image in images])
        return [(image.path, dst) for dst, image in bids.items()], bids
    if any(v is not None for v in (args.subject, args.session, args.suffix, args.datatype)):
        from mrenhance.errors import InputError

        raise InputError(
            f"{args.inputs[0]}: --subject/--session/--suffix/--datatype need a BIDS dataset "
            "root as the only input (a folder with dataset_description.json)"
        )
    return plan_enhance_outputs(args.inputs, args.output, fmt), {}


def write_output_sidecar(
    args: argparse.Namespace, src: Any, dst: Path, volume: Any, result: Any, enhancer: Any,
    bids: dict[Any, Any],
) -> Path:  # fmt: skip
    """The JSON sidecar of one output (``dst`` with ``.json``), the input's carried over."""
    from mrenhance.io.sidecar import output_sidecar, read_sidecar, write_sidecar

    image = bids.get(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    parameters = {
        "patch_size": list(enhancer.plan.patch),
        "overlap": list(enhancer.plan.overlap),
        "blend": enhancer.plan.blend,
        "upsample": list(args.upsample) if args.upsample else None,
        "upsample_method": args.upsample_method if args.upsample else None,
        "nan_policy": args.nan_policy,
        "device": enhancer.device,  # what ran, not "auto"
        "format": output_format(args),
        "dtype": getattr(args, "dtype", None) or "float32",
        "per_volume": bool(getattr(args, "per_volume", False)),
        "resample": bool(getattr(args, "resample", False)),
        "consistency": getattr(args, "consistency", None),
    }
    doc = output_sidecar(
        result,
        sources=[image.uri] if image is not None else [str(Path(src).resolve())],
        model_card=enhancer.card,
        parameters=parameters,
        input_sidecar=read_sidecar(src),
        grid_changed=tuple(volume.data.shape) != tuple(result.data.shape),
    )
    return write_sidecar(dst, doc, overwrite=True)


def finish_bids(args: argparse.Namespace, bids: dict[Any, Any]) -> None:
    """``dataset_description.json`` of the derivative dataset, once the images are written."""
    if not bids:
        return
    from mrenhance.io.bids import derivative_root, write_dataset_description

    write_dataset_description(derivative_root(args.output), source=args.inputs[0])
