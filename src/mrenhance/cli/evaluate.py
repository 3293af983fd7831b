"""``mrenhance evaluate``: a task's evaluation protocol, or metrics between two files.

Every result states its basis: what was compared with what, over which voxels (mask or
the task's held-out region/slab) and with which data range. It is printed above the
table (``basis: ...``), is the ``basis`` object of ``--json`` / ``--out-json``, and fills
``basis_*`` columns in every ``--csv`` row.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mrenhance.cli._options import DEVICE_HELP, add_threads_option

ORDER = 60


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="a task's evaluation protocol, or metrics between two files",
        description="Metrics with their basis (reference, mask or held-out region, data "
        "range), printed above the table, in --json and in the --csv/--out-json files.",
        epilog="examples:\n  mrenhance evaluate sr_t1 -o eval/\n"
        "  mrenhance evaluate --prediction sr.nii.gz --reference hr.nii.gz --mask brain.nii.gz\n"
        "  mrenhance evaluate --prediction sr.nii.gz --reference hr.nii.gz --json\n"
        "  mrenhance evaluate --prediction sr.nii.gz --reference hr.nii.gz --csv m.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", nargs="?", help="a task whose protocol to run, e.g. sr_t1")
    p.add_argument("--models", default="all", help="comma-separated methods (default all)")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="folder for the task's evaluation.{md,csv,json}, or a .csv/.json file as "
        "--csv/--out-json (default: print only)",
    )
    p.add_argument(
        "--weights",
        nargs="*",
        default=None,
        help="extra .safetensors files or folders to evaluate (your own runs; default: "
        "the shipped models only)",
    )
    p.add_argument(
        "--prediction",
        default=None,
        help="image to score (with --reference; default: run a task instead)",
    )
    p.add_argument(
        "--reference", default=None, help="ground truth on the prediction's grid (default: none)"
    )
    p.add_argument(
        "--mask",
        default=None,
        help="only voxels > 0 of this image count (default: the whole image)",
    )
    p.add_argument(
        "--data-range",
        type=float,
        default=None,
        help="PSNR/SSIM peak L (default: the reference's max - min over the voxels compared)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (basis, rows)")
    p.add_argument(
        "--csv",
        default=None,
        metavar="PATH",
        help="also write the rows, with basis_* columns, as CSV (default: none)",
    )
    p.add_argument(
        "--out-json",
        default=None,
        metavar="PATH",
        help="also write the JSON object (basis, rows) to PATH (default: none)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_threads_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    return p


def _weights_inputs(items: list[str]) -> list[Path]:
    """The weights files (and their cards) named directly or found in folders."""
    found: list[Path] = []
    for item in items:
        p = Path(item)
        files = sorted(p.glob("*.safetensors")) if p.is_dir() else [p]
        found += [q for f in files for q in (f, f.with_suffix(".json"))]
    return found


def basis_line(basis: dict[str, Any]) -> str:
    """The basis as one printed line."""
    if "protocol" in basis:
        return f"basis: task {basis['task']}: {basis['protocol']}"
    where = f"inside mask {basis['mask']}" if basis["mask"] is not None else "the whole image"
    return (
        f"basis: reference {basis['reference']}; {where} ({basis['voxels']} voxels); "
        f"data range {basis['data_range']:.6g} ({basis['data_range_source']}); "
        f"nrmse {basis['nrmse']}"
    )


def run(args: argparse.Namespace) -> int:
    from mrenhance.errors import InputError
    from mrenhance.io.atomic import check_output_path, write_text_atomic
    from mrenhance.io.paths import check_not_input
    from mrenhance.report.tables import csv_text, format_markdown, json_ready

    if args.output is not None and Path(args.output).suffix.lower() in (".csv", ".json"):
        key = "csv" if Path(args.output).suffix.lower() == ".csv" else "out_json"
        if getattr(args, key) is not None:
            raise InputError(f"-o {args.output}: and --{key.replace('_', '-')} both given")
        setattr(args, key, args.output)
        args.output = None
    files_mode = bool(args.prediction or args.reference)
    inputs: list[Any] = (
        [p for p in (args.prediction, args.reference, args.mask) if p]
        if files_mode
        else _weights_inputs(args.weights or [])
    )
    for path, what in ((args.csv, "CSV"), (args.out_json, "JSON")):
        if path is not None:  # before any work, like every output
            check_output_path(path, args.overwrite)
            check_not_input(path, inputs, what=f"{what} output")
    if files_mode:
        if not (args.prediction and args.reference):
            raise InputError("evaluate: --prediction and --reference go together")
        from mrenhance.evaluation import evaluate_files_with_basis

        rows, basis = evaluate_files_with_basis(
            args.prediction, args.reference, mask=args.mask, data_range=args.data_range
        )
    else:
        if not args.task:
            raise InputError("evaluate: name a task (sr_t1) or give --prediction/--reference")
        from mrenhance.evaluation import evaluate_task
        from mrenhance.tasks import get_task

        task = get_task(args.task)
        if args.output is not None:
            for suffix in ("md", "csv", "json"):
                check_not_input(Path(args.output) / f"evaluation.{suffix}", inputs)
        rows = evaluate_task(
            args.task,
            args.models,
            output=args.output,
            overwrite=args.overwrite,
            device=args.device,
            weights=args.weights,
        )
        basis = {"task": task.name, "protocol": task.protocol()}
    doc = json_ready({"basis": basis, "rows": rows})
    if args.out_json is not None:
        text = json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
        write_text_atomic(args.out_json, text, overwrite=args.overwrite)
    if args.csv is not None:
        with_basis = [{**row, **{f"basis_{k}": v for k, v in basis.items()}} for row in rows]
        write_text_atomic(args.csv, csv_text(with_basis), overwrite=args.overwrite)
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False))
        return 0
    print(basis_line(basis))
    print(format_markdown(rows))
    return 0
