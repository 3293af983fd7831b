"""``mrenhance pvs``: enhance PVS in a T2w image and write a PVS map, mask and count table.

Writes into the output folder:

* ``enhanced.nii.gz`` - the network's enhanced image (as ``mrenhance enhance``);
* ``pvs_probability.nii.gz`` - ``sigmoid((s - t) / (0.1 t))`` of the detection map ``s``
  (the enhanced image / the input's normalisation scale, :func:`mrenhance.tasks.pvs.
  network_score`: the units the protocol chose the threshold in), ``t`` the detection
  threshold the model card records (chosen on validation phantoms to maximise Dice; also
  the unit of ``--threshold``). choice: a monotone map that is 0.5 at the threshold; it is
  not a calibrated probability;
* ``pvs_mask.nii.gz`` - ``s >= t`` inside the mask (``--mask``, else the automatic head
  mask; on a crop with no air, every voxel of the field of view: :func:`head_or_field_of_view`),
  26-connected clusters smaller than ``--min-voxels`` removed;
* ``pvs_table.csv`` / ``.json`` - PVS count and volume (mm^3) per region: ``all`` and, with
  ``--regions`` (a label image on the input's grid: 1 = centrum semiovale, 2 = basal
  ganglia), per region. Without a registration to MNI space the regions cannot be found
  automatically on a user's scan.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "pvs"
ORDER = 100  # after the built-in commands
REGION_LABELS = {1: "centrum_semiovale", 2: "basal_ganglia"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pvs",
        help="enhance PVS in a T2w image; write a PVS map, mask and count/volume table",
        epilog="example:\n  mrenhance pvs t2.nii.gz -o pvs_out/ --mask brain.nii.gz",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="a 3D T2w NIfTI image")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument(
        "--model", default="dcnn-pvs", help="shipped name or .safetensors path (default dcnn-pvs)"
    )
    p.add_argument(
        "--mask",
        default=None,
        help="brain mask on the input's grid (default: the automatic head mask; the whole "
        "field of view when the image holds no air)",
    )
    p.add_argument(
        "--regions",
        default=None,
        help="label image: 1 CSO, 2 basal ganglia (default: whole mask only)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="detection threshold, in units of the input's normalisation scale "
        "(default: the model card's)",
    )
    p.add_argument(
        "--min-voxels", type=int, default=2, help="smallest cluster kept, in voxels (default 2)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results")
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from scipy import ndimage

    from mrenhance.detection import CONNECTIVITY_26
    from mrenhance.enhance_api import Enhancer
    from mrenhance.errors import InputError
    from mrenhance.io import load, save
    from mrenhance.io.atomic import write_text_atomic
    from mrenhance.io.paths import check_not_input
    from mrenhance.io.validate import check_same_grid
    from mrenhance.preprocess import head_or_field_of_view
    from mrenhance.report.tables import write_table
    from mrenhance.tasks.pvs import network_score, threshold_mask
    from mrenhance.volume import voxel_sizes

    if args.min_voxels < 1:
        raise InputError(f"--min-voxels {args.min_voxels}: must be >= 1")
    if args.threshold is not None and not (np.isfinite(args.threshold) and args.threshold > 0):
        raise InputError(f"--threshold {args.threshold:g}: must be a finite number > 0")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    names = ("enhanced.nii.gz", "pvs_probability.nii.gz", "pvs_mask.nii.gz", "pvs_table.csv")
    inputs = [p for p in (args.input, args.mask, args.regions) if p]
    for n in (*names, "pvs_table.json", "pvs_run.json"):  # never over an input
        check_not_input(out / n, inputs)
    if not args.overwrite and any((out / n).exists() for n in names):
        raise InputError(f"{out}: holds earlier results (use --overwrite)")
    enhancer = Enhancer.from_weights(args.model, device=args.device)
    if enhancer.card.task != "pvs":
        raise InputError(f"{args.model}: a {enhancer.card.task} model, not a pvs model")
    vol = load(args.input)
    mask_vol = load(args.mask) if args.mask else None
    regions = load(args.regions) if args.regions else None
    if mask_vol is not None:
        check_same_grid(mask_vol, vol, "mask")
    if regions is not None:
        check_same_grid(regions, vol, "label image", nonempty=False)
    threshold = args.threshold
    if threshold is None:
        threshold = (enhancer.card.metrics.get("test") or {}).get("threshold")
    if threshold is None:
        raise InputError(f"{args.model}: its card records no detection threshold; pass --threshold")
    usable = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    if not (usable and np.isfinite(threshold) and threshold > 0):
        raise InputError(f"{args.model}: its card's detection threshold {threshold!r} is unusable")
    enhanced = enhancer(vol, mask=mask_vol)
    # the map the protocol chose the card's threshold on (the same function)
    s = network_score(enhancer, vol.data, enhanced.data)
    t = float(threshold)
    prob = (1.0 / (1.0 + np.exp(-(s - t) / (0.1 * t)))).astype(np.float32)
    domain = mask_vol.data > 0 if mask_vol is not None else head_or_field_of_view(vol.data)
    pred = threshold_mask(s, t, domain, args.min_voxels)
    voxel_mm3 = float(np.prod(voxel_sizes(vol.affine)))
    rows = []
    groups = {"all": pred}
    if regions is not None:
        for k, name in REGION_LABELS.items():
            groups[name] = pred & (np.rint(regions.data) == k)
    for name, m in groups.items():
        _, count = ndimage.label(m, structure=CONNECTIVITY_26)
        rows.append(
            {
                "region": name,
                "count": int(count),
                "volume_mm3": round(float(m.sum()) * voxel_mm3, 2),
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    save(enhanced, out / "enhanced.nii.gz", overwrite=True)
    save(
        vol.with_data(prob, step=f"pvs probability t={t:.4g}"),
        out / "pvs_probability.nii.gz",
        overwrite=True,
    )
    save(
        vol.with_data(pred.astype(np.float32), step="pvs mask"),
        out / "pvs_mask.nii.gz",
        overwrite=True,
    )
    write_table(rows, out / "pvs_table", title=f"PVS by region ({args.input})")
    write_text_atomic(
        out / "pvs_run.json",
        json.dumps(
            {"input": str(args.input), "model": args.model, "threshold": t, "rows": rows}, indent=2
        ),
        overwrite=True,
    )
    for r in rows:
        print(f"{r['region']}: {r['count']} PVS, {r['volume_mm3']} mm^3")
    return 0
