"""``mrenhance evaluate``: a task's evaluation protocol, or metrics between two files."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrenhance.cli._options import DEVICE_HELP, add_threads_option

ORDER = 60


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="a task's evaluation protocol, or metrics between two files",
        epilog="examples:\n  mrenhance evaluate sr_t1 -o eval/\n"
        "  mrenhance evaluate --prediction sr.nii.gz --reference hr.nii.gz",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", nargs="?", help="a task whose protocol to run, e.g. sr_t1")
    p.add_argument("--models", default="all", help="comma-separated methods (default all)")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="folder for the table and figures (default: print only)",
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


def run(args: argparse.Namespace) -> int:
    from mrenhance.errors import InputError
    from mrenhance.io.paths import check_not_input
    from mrenhance.report.tables import format_markdown

    if args.prediction or args.reference:
        if not (args.prediction and args.reference):
            raise InputError("evaluate: --prediction and --reference go together")
        from mrenhance.evaluation import evaluate_files

        rows = evaluate_files(
            args.prediction, args.reference, mask=args.mask, data_range=args.data_range
        )
    else:
        if not args.task:
            raise InputError("evaluate: name a task (sr_t1) or give --prediction/--reference")
        from mrenhance.evaluation import evaluate_task

        if args.output is not None:
            inputs = _weights_inputs(args.weights or [])
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
    print(format_markdown(rows))
    return 0
