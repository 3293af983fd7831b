"""``mrenhance info FILE``: shape, voxel size, orientation, range and series metadata."""

from __future__ import annotations

import argparse

ORDER = 10


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "info",
        help="describe an image (shape, voxel size, orientation, range)",
        epilog="example: mrenhance info t1.nii.gz",
    )
    p.add_argument("file", help="NIfTI file or DICOM series folder")
    p.add_argument("--allow-nan", action="store_true", help="report files holding NaN/Inf")
    p.add_argument(
        "--expect",
        choices=("t1", "dwi", "dsc"),
        default=None,
        help="also check the series kind: t1 3D; dwi 4D with one b-value per volume; "
        "dsc 4D with >= 10 frames (default: no check)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mrenhance.io import load

    vol = load(args.file, nan_policy="zero" if args.allow_nan else "error")
    if args.expect:
        from mrenhance.io.validate import check_series

        check_series(vol, args.expect, args.file)
    data = vol.data
    lines = [
        f"file         {args.file}",
        f"shape        {data.shape}",
        f"voxel size   {tuple(round(v, 4) for v in vol.voxel_size)} mm",
        f"orientation  {vol.orientation}",
        f"range        [{float(data.min()):.6g}, {float(data.max()):.6g}]"
        f" mean {float(data.mean()):.6g}",
    ]
    for key in ("bvals", "times_s", "tr_s", "modality", "series_description"):
        if key in vol.meta and vol.meta[key] is not None:
            value = vol.meta[key]
            if hasattr(value, "tolist"):
                value = value.tolist()
            lines.append(f"{key:<12} {value}")
    lines.append(
        "affine       " + np.array2string(vol.affine, precision=4).replace("\n", "\n" + " " * 13)
    )
    if args.json:
        import json

        doc = {
            "file": str(args.file),
            "shape": list(data.shape),
            "voxel_size_mm": [float(v) for v in vol.voxel_size],
            "orientation": "".join(vol.orientation),
            "range": [float(data.min()), float(data.max())],
            "mean": float(data.mean()),
            "affine": vol.affine.tolist(),
        }
        for key in ("bvals", "times_s", "tr_s", "modality", "series_description"):
            value = vol.meta.get(key)
            if value is not None:
                doc[key] = value.tolist() if hasattr(value, "tolist") else value
        print(json.dumps(doc, indent=2, default=str))
        return 0
    print("\n".join(lines))
    return 0
