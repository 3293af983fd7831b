"""``mrenhance simulate <name>``: degrade an image the way a paper does.

One subcommand per simulator registered in :mod:`mrenhance.simulate.registry`; each takes
``INPUT -o OUTPUT`` and optional noise on top (``--snr``; required by ``noise``).
"""

from __future__ import annotations

import argparse

from mrenhance.cli._options import say

ORDER = 40


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from mrenhance.simulate.registry import SIMULATORS

    p = sub.add_parser(
        "simulate",
        help="degrade an image the way a paper does",
        epilog="example: mrenhance simulate kspace t1.nii.gz -o lr.nii.gz --factors 2,2,1",
    )
    kinds = p.add_subparsers(dest="kind", metavar="SIMULATOR", required=True)
    for sim in SIMULATORS.values():
        k = kinds.add_parser(
            sim.name, help=sim.help, epilog=f"example: {sim.example}" if sim.example else None
        )
        k.add_argument("input", help="NIfTI file or DICOM series folder")
        k.add_argument("-o", "--output", required=True, help="output NIfTI file")
        if sim.add_arguments is not None:
            sim.add_arguments(k)
        required = sim.snr == "required"
        k.add_argument(
            "--snr",
            type=float,
            required=required,
            default=None,
            help="noise at this SNR (mean signal / sigma)"
            + ("" if required else "; default no noise"),
        )
        k.add_argument(
            "--noise",
            choices=("rician", "gaussian"),
            default="rician",
            help="noise model of --snr (default rician)",
        )
        k.add_argument(
            "--seed", type=int, default=0, help="seed of the noise generator (default 0)"
        )
        k.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mrenhance.io import load, save
    from mrenhance.io.atomic import check_output_path
    from mrenhance.io.paths import check_not_input
    from mrenhance.simulate.registry import add_noise, get_simulator

    sim = get_simulator(args.kind)
    check_output_path(args.output, args.overwrite)
    check_not_input(args.output, [args.input])
    vol = load(args.input)
    rng = np.random.default_rng(args.seed)
    options = vars(args)
    data, step = sim.apply(vol.data, options, rng)
    if sim.snr == "optional" and args.snr is not None:
        data, noise_step = add_noise(data, args.snr, args.noise, rng)
        step += f" {noise_step} seed={args.seed}"
    save(vol.with_data(data, step=step), args.output, overwrite=args.overwrite)
    say(args, f"{args.input} -> {args.output}: {step}")
    return 0
