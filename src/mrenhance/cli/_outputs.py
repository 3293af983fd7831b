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


def plan_outputs(args: argparse.Namespace, model_name: str) -> tuple[list, dict[Any, Any]]:
    """``(pairs, bids)``: (input, output) pairs, and for a BIDS input each output's image."""
    from mrenhance.io.bids import bids_label, derivative_root, find_bids_images, is_bids_root
    from mrenhance.io.paths import check_not_input, plan_enhance_outputs

    if len(args.inputs) == 1 and is_bids_root(args.inputs[0]):
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
    return plan_enhance_outputs(args.inputs, args.output), {}


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
