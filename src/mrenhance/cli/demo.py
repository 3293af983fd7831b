"""``mrenhance demo``: the main job on bundled sample data (MNI152 T1)."""

from __future__ import annotations

import argparse

ORDER = 70


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="the main job on bundled sample data (MNI152 T1)")
    p.add_argument("--output", default="demo_output", help="folder to write (default demo_output)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--full", action="store_true", help="whole volume instead of the test slab")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N, mps or auto (default cpu: the numbers of the README)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from mrenhance.demo import run_demo
    from mrenhance.io.paths import check_run_folder
    from mrenhance.models.weights import shipped_weights_dir

    # the demo's inputs are the package's own files: its folder must not hold them
    check_run_folder(args.output, [shipped_weights_dir()], what="demo output folder")
    run_demo(
        args.output,
        overwrite=args.overwrite,
        full=args.full,
        device=args.device,
        echo=not args.quiet,
    )
    return 0
