"""``mrenhance enhance``: apply a model to one image, several, or a folder tree.

A folder is searched recursively for NIfTI files and DICOM series (a folder holding DICOM
files is one series), and the outputs mirror its subfolders below ``-o`` (created):
``in/sub-01/anat/t1.nii.gz`` -> ``out/sub-01/anat/t1_enhanced.nii.gz`` (see
:func:`mrenhance.io.paths.find_images`). A BIDS dataset root goes to a derivatives tree.

Every output path is planned and checked before any image is read
(:func:`mrenhance.io.paths.plan_enhance_outputs`): an output is never an input, never
inside an input folder, and no two inputs share an output. In a batch, a file that fails
(bad input, an output holding NaN/Inf, even an internal error) fails alone: the others are
written and the summary lists it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mrenhance.cli._options import DEVICE_HELP, add_threads_option, floats, ints
from mrenhance.cli._outputs import (
    add_bids_options,
    add_output_options,
    check_output,
    finish_bids,
    plan_outputs,
    write_image,
    write_output_sidecar,
)
from mrenhance.errors import printable

ORDER = 30
DEFAULT_ADAPT_STEPS = 50  # choice: ~1-2 min of a 2-core CPU with mDCSRN b4u4 at 32^3


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "enhance",
        help="apply a model to one image, several, or a folder",
        epilog="examples:\n  mrenhance enhance lr.nii.gz -o sr.nii.gz --model mdcsrn-b4u4\n"
        "  mrenhance enhance in_dir/ -o out_dir/ --model mdcsrn-b4u4 --summary s.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="NIfTI files, DICOM series folders, or folders searched recursively for both",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file (one input) or folder (created; a folder input's subfolders mirrored)",
    )
    p.add_argument("--model", required=True, help="shipped model name or path to .safetensors")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--patch-size",
        type=ints,
        default=None,
        help="tile size, e.g. 64 or 64,64,48 (default: the model card's; see "
        "'mrenhance models NAME')",
    )
    p.add_argument(
        "--overlap",
        type=ints,
        default=None,
        help="tile overlap in voxels (default: the model card's)",
    )
    p.add_argument(
        "--blend",
        choices=("crop", "average", "gaussian"),
        default=None,
        help="how overlapping tiles are joined (default: the model card's)",
    )
    p.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass (default 1)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16", "auto"),
        default="fp32",
        help="arithmetic of the network: fp32 (default), bf16, fp16 (CUDA only), or auto "
        "(bf16 on GPUs and on CPUs with native bf16, else fp32)",
    )
    p.add_argument(
        "--consistency",
        choices=("auto", "check", "tv", "off"),
        default="auto",
        help="auto (default): sr_t1 models: where the input is a zero-filled k-space "
        "truncation (detected from its spectrum) the output keeps the input's measured "
        "band (data consistency), and an input with one blurred axis (thick slices) gets "
        "the self-check of 'check'; asl models "
        "on a series of >= 4 pairs: the network is weighed against the plain mean by how "
        "well each half of the pairs predicts the other (split-half). tv: sr_t1 models: "
        "as auto, then the unmeasured band is refined by "
        "TV-regularised compressed sensing from the network output (slower: ~20 TV passes). "
        "check: sr_t1 models: as auto, and every input without a detected band gets input + w "
        "(network - input), w from a self-check on the input's own sharpest axis (one more "
        "network pass). "
        "off: the raw network output",
    )
    p.add_argument(
        "--max-memory",
        default=None,
        help="memory for one tile's activations with exact tiling, e.g. 2G or 512M "
        "(default 1.5G, at most 40%% of free RAM); larger tiles waste less work",
    )
    p.add_argument(
        "--upsample",
        type=floats,
        default=None,
        help="resample a low-matrix image first, e.g. 2,2,1 (default: no resampling)",
    )
    p.add_argument(
        "--upsample-method",
        choices=("sinc", "cubic", "linear"),
        default="sinc",
        help="resampling of --upsample (default sinc: zero-filled k-space)",
    )
    p.add_argument(
        "--mask",
        default=None,
        help="mask on the input's grid (one input; tasks that use it, e.g. pvs; default: "
        "none, the task's automatic mask)",
    )
    p.add_argument(
        "--adapt",
        action="store_true",
        help="fine-tune a copy of the network on each input first, self-supervised (sr_t1: "
        "the input degraded further, learnt back; asl: one half of a 4D series' pairs "
        "learnt from the other); the input file is never modified",
    )
    p.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        help="adaptation budget in optimizer steps (default 50 with --adapt; implies --adapt)",
    )
    p.add_argument("--adapt-seed", type=int, default=0, help="seed of the adaptation (default 0)")
    p.add_argument(
        "--asl-order",
        default=None,
        help="ASL models, 4D input: volume order, e.g. control,label, or cbf for a series "
        "of per-pair CBF maps (default: the BIDS aslcontext.tsv beside the file, else "
        "per-pair CBF maps; a series that looks like raw label/control images is refused)",
    )
    p.add_argument(
        "--nan-policy",
        choices=("error", "zero"),
        default="error",
        help="an input holding NaN/Inf: refuse it, or read those voxels as 0 (default error)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--summary",
        default=None,
        help="write a JSON summary of the batch to this file (default: none)",
    )
    p.add_argument(
        "--report",
        nargs="?",
        const="",
        default=None,
        metavar="HTML",
        help="also write an interactive HTML report of inputs and outputs (default file: "
        "<output>_report.html, or report.html in an output folder)",
    )
    add_output_options(p)
    add_threads_option(p)
    add_bids_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from mrenhance import enhance_api
    from mrenhance.errors import InputError
    from mrenhance.io.atomic import check_output_path
    from mrenhance.io.paths import check_not_input, is_batch

    if args.adapt_steps is not None and args.adapt_steps < 0:
        raise InputError(f"--adapt-steps {args.adapt_steps}: must be >= 0")
    args.adapt_steps = (  # resolved once for the whole batch
        args.adapt_steps
        if args.adapt_steps is not None
        else (DEFAULT_ADAPT_STEPS if args.adapt else 0)
    )
    # the weights are read and checked once for the whole batch (sha256, finite tensors),
    # and absurd tiling options are refused against the card's defaults, before any image
    weights = enhance_api.resolve_weights(args.model)
    enhancer = enhance_api.Enhancer.from_weights(
        weights,
        device=args.device,
        inference={"patch_size": args.patch_size, "overlap": args.overlap, "blend": args.blend},
        batch_size=args.batch_size,
        progress=not args.quiet,
        precision=args.precision,
        max_memory=enhance_api.parse_size(args.max_memory),
        consistency=args.consistency,
    )
    # the loaded input is ours and only its grid is needed after the network has run,
    # unless the report shows it: normalise it in place (one volume-sized copy less)
    enhancer.consume_input = args.report is None
    if args.asl_order and enhancer.task.name != "asl":  # else silently ignored
        raise InputError(
            f"--asl-order {args.asl_order!r}: {enhancer.name} is a {enhancer.task.name} model; "
            "the volume order is for asl models"
        )
    pairs, bids = plan_outputs(args, enhancer.name)  # files, folder trees or a BIDS dataset
    model_files = [Path(weights), Path(weights).with_suffix(".json")]
    for _, dst in pairs:
        check_not_input(dst, model_files)
    if args.summary:
        check_not_input(
            args.summary,
            [*args.inputs, *(s for s, _ in pairs), *(d for _, d in pairs), *model_files],
            what="summary",
        )
    single = (
        len(pairs) == 1
        and not os.path.isdir(args.output)
        and not bids
        and not is_batch(args.inputs)
    )
    report = None
    if args.report is not None:  # checked before any work, like every output
        report = args.report or (
            Path(args.output) / "report.html"
            if not single
            else Path(str(pairs[0][1]).removesuffix(".gz").removesuffix(".nii") + "_report.html")
        )
        check_not_input(report, [*args.inputs, *(d for _, d in pairs), *model_files], "report")
    if args.mask and not single:
        raise InputError("--mask: only with a single input")
    made = None  # a batch's output folder, made once every check above passed
    if not single and not bids and not os.path.isdir(args.output):
        made = Path(args.output)
        made.mkdir(parents=True)
    if args.summary:
        try:
            check_output_path(args.summary, overwrite=True)
        except InputError:
            if made is not None:
                made.rmdir()  # nothing is left behind by a refusal
            raise
    results: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []  # viewer payloads for --report (compressed, small)
    before: dict[str, Any] = {}
    try:
        _run_batch(args, pairs, enhancer, single, results, before, bids, cases)
    except KeyboardInterrupt:  # SIGINT/SIGTERM: stop between files, say which were done
        done = len(results)
        if done < len(pairs):
            src, dst = pairs[done]
            # a signal held during the final rename (mrenhance.signals) is raised after
            # it: the output then changed, and being atomic it is the complete new file
            written = _file_key(dst) not in (None, before.get("key"))
            status = "ok" if written else "interrupted"
            results.append({"input": str(src), "output": str(dst), "status": status})
        results += [
            {"input": str(s), "output": str(d), "status": "not started"}
            for s, d in pairs[len(results) :]
        ]
        if args.summary:
            _write_summary(args, results)
        raise
    finish_bids(args, bids)
    failed = [r for r in results if r["status"] != "ok"]
    if args.summary:
        _write_summary(args, results)
    if report is not None:
        from mrenhance.report.build import write_enhance_report

        write_enhance_report(report, cases, results, model=enhancer.name, overwrite=True)
        if not args.quiet:
            print(printable(f"report: {report}"))
    if not single and not args.quiet:  # -q: each failure had its line, the exit code is 1
        print(printable(f"{len(results) - len(failed)} succeeded, {len(failed)} failed"))
    return 1 if failed else 0


def _file_key(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of ``path``, or None when there is no such file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _write_summary(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    from mrenhance.io.atomic import write_text_atomic

    failed = [r for r in results if r["status"] != "ok"]
    summary = {"model": args.model, "results": results, "failed": len(failed)}
    if any(r["status"] == "interrupted" for r in results):
        summary["interrupted"] = True
    write_text_atomic(args.summary, json.dumps(summary, indent=2), overwrite=True)


def _run_batch(
    args: argparse.Namespace,
    pairs: list[tuple[Path, Path]],
    enhancer: Any,
    single: bool,
    results: list[dict[str, Any]],
    before: dict[str, Any],
    bids: Any = None,
    cases: list[dict[str, Any]] | None = None,
) -> None:
    """Enhance each (input, output) pair; a failure fails its own entry in a batch.
    ``before["key"]``: the current output's :func:`_file_key` before its entry started."""
    from mrenhance import enhance_api
    from mrenhance.errors import MrenhanceError
    from mrenhance.io import load

    for src, dst in pairs:
        before["key"] = _file_key(dst)
        t0 = time.perf_counter()
        try:
            if not single:  # a tree's subfolders, the derivative's sub-*/ses-*/anat
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
            check_output(args, dst)  # before the work, not after it
            vol = load(src, nan_policy=args.nan_policy)
            if getattr(args, "asl_order", None):  # a task-specific option, read by the task
                vol.meta["asl_order"] = args.asl_order
            out = enhance_api.enhance(
                vol,
                enhancer,
                upsample=args.upsample,
                upsample_method=args.upsample_method,
                mask=load(args.mask) if args.mask else None,
                adapt_steps=args.adapt_steps,
                adapt_seed=args.adapt_seed,
                per_volume=args.per_volume,
                resample=args.resample,
            )
            write_image(args, out, Path(dst))  # refuses NaN/Inf results
            write_output_sidecar(args, src, Path(dst), vol, out, enhancer, bids)  # provenance
            if args.report is not None:
                from mrenhance.report.build import enhance_case

                if cases is not None:
                    cases.append(enhance_case(src, vol, out, model=enhancer.name))
            seconds = time.perf_counter() - t0
            row = {
                "input": str(src),
                "output": str(dst),
                "status": "ok",
                "seconds": round(seconds, 2),
            }
            adaptation = out.meta.get("adaptation")
            if adaptation:
                row["adaptation"] = adaptation
            if out.meta.get("consistency"):
                row["consistency"] = out.meta["consistency"]
            results.append(row)
            if not args.quiet:
                extra = ""
                if adaptation:
                    extra = (
                        f"; adapted {adaptation['steps']} steps in {adaptation['seconds']:.1f} s, "
                        f"self-supervised loss {adaptation['loss_before']:.4g} -> "
                        f"{adaptation['loss_after']:.4g}"
                    )
                info = out.meta.get("consistency") or {}
                if "weight" in info:
                    extra += (
                        f"; split-half weight {info['weight']:.2f} of the network over the "
                        f"{info.get('pairs')}-pair mean"
                    )
                print(printable(f"{src} -> {dst} ({seconds:.1f} s{extra})"))
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
            print(printable(f"mrenhance: error: {msg}"), file=sys.stderr)
