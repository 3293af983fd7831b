"""``mrenhance sample NAME -o FILE``: export an offline sample (from installed packages)."""

from __future__ import annotations

import argparse

from mrenhance.cli._options import say

ORDER = 80


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from mrenhance.samples import list_samples

    names = "\n".join(f"  {k:20s} {v}" for k, v in list_samples().items())
    p = sub.add_parser(
        "sample",
        help="export an offline sample image (MNI152 T1, ASL ground truth, DWI) to NIfTI",
        description="Write one of the samples shipped inside installed packages (nothing "
        "is downloaded) as NIfTI, so there is an input to start from.",
        epilog=f"samples:\n{names}\n\nexamples:\n  mrenhance sample mni_t1 -o t1.nii.gz\n"
        "  mrenhance sample mni_t1 -o t1_slab.nii.gz --slices 90:106\n"
        "  mrenhance sample asldro_ground_truth -o asl/ --map cbf",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", help="sample name (omit to list them)")
    p.add_argument(
        "-o",
        "--output",
        help="NIfTI file; a folder for multi-map samples (one file per map); no default",
    )
    p.add_argument(
        "--map", default=None, help="one map of a multi-map sample, e.g. cbf (default: all)"
    )
    p.add_argument(
        "--slices",
        default=None,
        metavar="START:STOP",
        help="keep only these axial slices (last axis), e.g. 90:106, for a quick first try "
        "(default: the whole volume)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return p


def _slab(volume, text: str | None):
    from mrenhance.errors import InputError

    if text is None:
        return volume
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"--slices {text!r}: expected START:STOP, e.g. 90:106") from None
    n = volume.data.shape[2]
    if not 0 <= start < stop <= n:
        raise InputError(f"--slices {text}: must lie within 0:{n}")
    box = (slice(None), slice(None), slice(start, stop))
    return volume.crop(box, step=f"sample slices {start}:{stop}")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mrenhance.errors import InputError
    from mrenhance.io import save
    from mrenhance.samples import list_samples, load_sample

    if not args.name:
        for k, v in list_samples().items():
            print(f"{k:20s} {v}")
        return 0
    if not args.output:
        raise InputError("sample: give -o FILE (or -o FOLDER for a multi-map sample)")
    sample = load_sample(args.name)
    if isinstance(sample, dict):
        if args.map is not None:
            if args.map not in sample:
                raise InputError(f"{args.name}: no map {args.map!r}; maps: {', '.join(sample)}")
            sample = sample[args.map]
        else:
            folder = Path(args.output)
            if folder.suffix in (".nii", ".gz"):
                raise InputError(
                    f"{args.name} holds {len(sample)} maps ({', '.join(sample)}): give -o a "
                    "folder, or --map NAME"
                )
            folder.mkdir(parents=True, exist_ok=True)
            for key, vol in sample.items():
                path = save(_slab(vol, args.slices), folder / f"{key}.nii.gz",
                            overwrite=args.overwrite)  # fmt: skip
                say(args, f"wrote {path}")
            return 0
    vol = _slab(sample, args.slices)
    path = save(vol, args.output, overwrite=args.overwrite)
    say(args, f"wrote {path} {tuple(vol.data.shape)} from sample {args.name}")
    return 0
