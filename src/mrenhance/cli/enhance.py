"""``mrenhance enhance``: apply a model to one image, several, or a folder.

Every output path is planned and checked before any image is read
(:func:`mrenhance.io.paths.plan_enhance_outputs`): an output is never an input, never
inside an input folder, and no two inputs share an output. In a batch, a file that fails
(bad input, an output holding NaN/Inf, even an internal error) fails alone: the others are
written and the summary lists it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mrenhance.cli._options import floats, ints

ORDER = 30


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "enhance",
        help="apply a model to one image, several, or a folder",
        epilog="examples:\n  mrenhance enhance lr.nii.gz -o sr.nii.gz --model mdcsrn-b4u4\n"
        "  mrenhance enhance in_dir/ -o out_dir/ --model mdcsrn-b4u4 --summary s.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs", nargs="+", help="NIfTI files, DICOM series folders, or a folder of NIfTIs"
    )
    p.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    p.add_argument("--model", required=True, help="shipped model name or path to .safetensors")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--patch-size", type=ints, default=None, help="tile size, e.g. 64 or 64,64,48")
    p.add_argument("--overlap", type=ints, default=None, help="tile overlap in voxels")
    p.add_argument("--blend", choices=("crop", "average", "gaussian"), default=None)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument(
        "--upsample",
        type=floats,
        default=None,
        help="resample a low-matrix image first, e.g. 2,2,1",
    )
    p.add_argument("--upsample-method", choices=("sinc", "cubic", "linear"), default="sinc")
    p.add_argument(
        "--asl-order",
        default=None,
        help="ASL models, 4D input: volume order, e.g. control,label (default: the BIDS "
        "aslcontext.tsv beside the file, else a series of per-pair CBF maps)",
    )
    p.add_argument("--nan-policy", choices=("error", "zero"), default="error")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--summary", default=None, help="write a JSON summary of the batch")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    from mrenhance import enhance_api
    from mrenhance.errors import InputError, MrenhanceError
    from mrenhance.io import load, save
    from mrenhance.io.atomic import check_output_path, write_text_atomic
    from mrenhance.io.nifti import is_nifti_name
    from mrenhance.io.paths import check_not_input, plan_enhance_outputs

    # the weights are read and checked once for the whole batch (sha256, finite tensors),
    # and absurd tiling options are refused against the card's defaults, before any image
    weights = enhance_api.resolve_weights(args.model)
    enhancer = enhance_api.Enhancer.from_weights(
        weights,
        device=args.device,
        inference={"patch_size": args.patch_size, "overlap": args.overlap, "blend": args.blend},
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    if args.summary:
        check_output_path(args.summary, overwrite=True)
    pairs = plan_enhance_outputs(args.inputs, args.output)
    model_files = [Path(weights), Path(weights).with_suffix(".json")]
    for _, dst in pairs:
        check_not_input(dst, model_files)
    if args.summary:
        check_not_input(
            args.summary,
            [*args.inputs, *(s for s, _ in pairs), *(d for _, d in pairs), *model_files],
            what="summary",
        )
    single = len(pairs) == 1 and not Path(args.output).is_dir()
    results: list[dict[str, Any]] = []
    for src, dst in pairs:
        t0 = time.perf_counter()
        try:
            check_output_path(dst, args.overwrite)
            if not is_nifti_name(dst):  # before the work, not after it
                raise InputError(f"{dst}: can only save NIfTI (.nii or .nii.gz)")
            vol = load(src, nan_policy=args.nan_policy)
            if getattr(args, "asl_order", None):  # a task-specific option, read by the task
                vol.meta["asl_order"] = args.asl_order
            out = enhance_api.enhance(
                vol,
                enhancer,
                upsample=args.upsample,
                upsample_method=args.upsample_method,
            )
            save(out, dst, overwrite=args.overwrite)  # refuses NaN/Inf results
            seconds = time.perf_counter() - t0
            results.append(
                {
                    "input": str(src),
                    "output": str(dst),
                    "status": "ok",
                    "seconds": round(seconds, 2),
                }
            )
            if not args.quiet:
                print(f"{src} -> {dst} ({seconds:.1f} s)")
        except Exception as exc:
            if single:
                raise
            # choice: in a batch even an internal error fails one file, not the batch
            msg = str(exc)
            if not isinstance(exc, MrenhanceError):
                msg = f"{src}: internal error: {type(exc).__name__}: {msg}"
            msg = " ".join(msg.split())
            results.append(
                {"input": str(src), "output": str(dst), "status": "failed", "error": msg}
            )
            print(f"mrenhance: error: {msg}", file=sys.stderr)
    failed = [r for r in results if r["status"] != "ok"]
    if args.summary:
        write_text_atomic(
            args.summary,
            json.dumps({"model": args.model, "results": results, "failed": len(failed)}, indent=2),
            overwrite=True,
        )
    if not single:
        print(f"{len(results) - len(failed)} succeeded, {len(failed)} failed")
    return 1 if failed else 0
