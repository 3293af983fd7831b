"""``mrenhance perfusion``: the classical DSC pipeline on a series -> CBV, CBF, MTT, Tmax, AIF.

Registered through :attr:`mrenhance.tasks.dsc.DSCTask.cli_commands`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "perfusion"


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
        "--te", type=float, default=None, help="echo time in s (default: file, else 0.03)"
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
    from mrenhance.io.validate import check_series
    from mrenhance.volume import Volume

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    names = ["cbv.nii.gz", "cbf.nii.gz", "mtt.nii.gz", "tmax.nii.gz", "aif.tsv", "aif.png"]
    if not args.overwrite:
        for n in names:
            if (out / n).exists():
                raise InputError(f"{out / n}: exists (use --overwrite)")
    vol = load(args.input)
    check_series(vol, "dsc")
    tr = args.tr
    times = vol.meta.get("times_s")
    if tr is None and times is not None and np.size(times) > 1:
        tr = float(np.median(np.diff(np.asarray(times, dtype=float))))  # DICOM frame times
    if tr is None:
        tr = vol.meta.get("tr_s")
    if not tr or tr <= 0:
        raise InputError(f"{args.input}: no frame interval in the file; pass --tr SECONDS")
    te = args.te if args.te is not None else vol.meta.get("te_s") or 0.03

    def mask(path):
        if path is None:
            return None
        m = load(path)
        if m.data.shape != vol.data.shape[:3]:
            raise InputError(f"{path}: shape {m.data.shape} does not match {vol.data.shape[:3]}")
        return m.data > 0

    maps = perfusion_maps_from_signal(
        vol.data,
        float(tr),
        float(te),
        brain_mask=mask(args.brain_mask),
        aif_mask=mask(args.aif_mask),
        method=args.method,
        threshold=args.threshold,
        oi_max=args.oi_max,
        leakage_correction=args.leakage_correction,
    )
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
