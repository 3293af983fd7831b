"""``mrenhance perfusion``: the classical DSC pipeline on a series -> CBV, CBF, MTT, Tmax, AIF.

Registered through :attr:`mrenhance.tasks.dsc.DSCTask.cli_commands`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

NAME = "perfusion"
#: the images ``perfusion`` writes into its output folder (with aif.tsv and aif.png)
OUTPUTS = ("cbv.nii.gz", "cbf.nii.gz", "mtt.nii.gz", "tmax.nii.gz", "aif_mask.nii.gz")


#: choice: the echo time when the file gives none (GRE-EPI DSC at 3 T: 25-35 ms)
DEFAULT_TE_S = 0.03


def echo_time_s(volume: Any, source: str | os.PathLike | None) -> float:
    """The echo time (s) of a DSC series: DICOM EchoTime (``meta["te_s"]``), else the
    ``EchoTime`` of a JSON sidecar beside the file (BIDS: seconds), else
    :data:`DEFAULT_TE_S`. A sidecar value outside (0, 1) s is refused: it is in ms or wrong.
    CBV and CBF are ratios of Delta R2* and do not depend on it; the Delta R2* scale does.
    """
    import math

    from mrenhance.errors import InputError
    from mrenhance.io.sidecar import read_sidecar

    te = volume.meta.get("te_s")
    if te is not None:
        return float(te)
    doc = read_sidecar(source) if source else None
    value = (doc or {}).get("EchoTime")
    if value is None:
        return DEFAULT_TE_S
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{source}: sidecar EchoTime {value!r} is not a number; pass --te")
    if not (math.isfinite(value) and 0 < value < 1):
        raise InputError(
            f"{source}: sidecar EchoTime {value:g} is not in seconds (BIDS: 0 < TE < 1 s); "
            "pass --te"
        )
    return float(value)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "perfusion",
        help="classical DSC perfusion maps (SVD deconvolution): CBV, CBF, MTT, Tmax, AIF",
        epilog="examples:\n  mrenhance perfusion dsc.nii.gz -o maps/\n"
        "  mrenhance perfusion dsc.nii.gz --aif-mask aif.nii.gz --method csvd -o maps/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="4D DSC series: NIfTI (TR in the header) or a DICOM series folder")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument(
        "--aif-mask", default=None, help="3D mask of arterial voxels (default: automatic)"
    )
    p.add_argument("--brain-mask", default=None, help="3D brain mask (default: automatic)")
    p.add_argument(
        "--method",
        choices=("osvd", "csvd", "ssvd"),
        default="osvd",
        help="SVD deconvolution: oscillation-index (o), circular (c) or standard "
        "(s) (default osvd)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="SVD threshold of s/cSVD (default: the method's own)",
    )
    p.add_argument(
        "--oi-max", type=float, default=0.095, help="oSVD oscillation-index limit (default 0.095)"
    )
    p.add_argument(
        "--te",
        type=float,
        default=None,
        help="echo time in s (default: DICOM EchoTime or the JSON sidecar's, else 0.03)",
    )
    p.add_argument("--tr", type=float, default=None, help="frame interval in s (default: file)")
    p.add_argument("--leakage-correction", action="store_true", help="Boxerman-Schmainda-Weisskoff")
    p.add_argument("--overwrite", action="store_true", help="replace existing maps")
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mrenhance.baselines.perfusion import perfusion_maps_from_signal
    from mrenhance.errors import InputError
    from mrenhance.io import load, save
    from mrenhance.io.atomic import write_text_atomic
    from mrenhance.io.paths import check_not_input
    from mrenhance.io.validate import check_same_grid, check_series, dsc_frame_interval
    from mrenhance.volume import Volume

    for option, value in (("--tr", args.tr), ("--te", args.te)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise InputError(f"{option} {value:g}: must be a time in seconds > 0")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    names = [*OUTPUTS, "aif.tsv", "aif.png"]
    inputs = [p for p in (args.input, args.aif_mask, args.brain_mask) if p]
    for n in names:  # before any work: never over an input, never over a result unasked
        check_not_input(out / n, inputs)
        if not args.overwrite and (out / n).exists():
            raise InputError(f"{out / n}: exists (use --overwrite)")
    vol = load(args.input)
    check_series(vol, "dsc")
    tr = args.tr if args.tr is not None else dsc_frame_interval(vol)  # DICOM times, header TR
    if not tr or tr <= 0:
        raise InputError(f"{args.input}: no frame interval in the file; pass --tr SECONDS")
    te = args.te if args.te is not None else echo_time_s(vol, args.input)

    def mask(path, what):
        return None if path is None else check_same_grid(load(path), vol, what) > 0

    aif_mask = mask(args.aif_mask, "AIF mask")
    brain_mask = mask(args.brain_mask, "brain mask")
    try:
        maps = perfusion_maps_from_signal(
            vol.data,
            float(tr),
            float(te),
            brain_mask=brain_mask,
            aif_mask=aif_mask,
            method=args.method,
            threshold=args.threshold,
            oi_max=args.oi_max,
            leakage_correction=args.leakage_correction,
        )
    except InputError as err:  # the pipeline works on arrays: say which series it was
        raise InputError(f"{args.input}: {err}") from err
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        k: v for k, v in vol.meta.items() if k not in ("tr_s", "times_s", "te_s", "nifti_header")
    }
    step = f"perfusion method={args.method} tr={tr:g} te={te:g}"
    for key in ("cbv", "cbf", "mtt", "tmax"):
        data = getattr(maps, key)
        v = Volume(
            data, vol.affine.copy(), {**meta, "provenance": [*meta.get("provenance", []), step]}
        )
        save(v, out / f"{key}.nii.gz", overwrite=True)
    save(
        Volume(maps.aif_mask.astype(np.float32), vol.affine.copy(), dict(meta)),
        out / "aif_mask.nii.gz",
        overwrite=True,
    )
    t = np.arange(maps.aif.size) * float(tr)
    lines = ["time_s\taif_delta_r2star_per_s"] + [
        f"{a:.3f}\t{b:.6g}" for a, b in zip(t, maps.aif, strict=True)
    ]
    write_text_atomic(out / "aif.tsv", "\n".join(lines) + "\n", overwrite=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(t, maps.aif, "r-", lw=1.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("AIF Delta R2* (1/s)")
    ax.set_title(f"AIF ({int(maps.aif_mask.sum())} voxels)")
    fig.tight_layout()
    fig.savefig(out / "aif.png", dpi=100)
    plt.close(fig)
    if not args.quiet:
        print(f"{args.input} -> {out}/ (cbv, cbf, mtt, tmax, aif_mask .nii.gz; aif.tsv, aif.png)")
    return 0
