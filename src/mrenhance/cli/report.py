"""``mrenhance report DIR``: one self-contained HTML page showing the NIfTIs of a folder."""

from __future__ import annotations

import argparse

from mrenhance.cli._options import say

ORDER = 75


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="an interactive HTML report of the NIfTIs in a folder",
        description="Write a self-contained HTML page (no network needed to view it) with "
        "synchronised slice viewers of every NIfTI in DIR (one case per grid), their "
        "|difference| to the reference, metrics.json as a table, and the JSON sidecars "
        "and model cards as provenance.",
        epilog="examples:\n  mrenhance report demo_output/\n"
        "  mrenhance report results/ --reference hr -o results/index.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "folder", metavar="DIR", help="folder holding NIfTI files (searched recursively)"
    )
    p.add_argument(
        "-o", "--output", default=None, help="HTML file to write (default: DIR/report.html)"
    )
    p.add_argument(
        "--reference",
        default=None,
        help="file stem of the reference image, e.g. hr for hr.nii.gz (default: a file named "
        "hr, reference, ref, ground_truth or gt, if any)",
    )
    p.add_argument("--title", default=None, help="page title (default: the folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    return p


def run(args: argparse.Namespace) -> int:
    from mrenhance.report.build import report_folder

    path = report_folder(
        args.folder,
        args.output,
        reference=args.reference,
        title=args.title,
        overwrite=args.overwrite,
    )
    say(args, f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
