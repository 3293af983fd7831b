"""Whole-volume inference: speed, peak memory and seam error of the tiling modes.

Runs mDCSRN b4u4 (shipped weights if present, else random weights of the same shape) over
the MNI152 T1 (197x233x189) or a slab of it, with the paper's non-overlapping tiles and a
3-voxel crop margin, with an exact halo (margin >= receptive-field radius 17), and with
gaussian blending; reports seconds, voxels/s, peak RSS and the largest difference from an
exact (halo) reference inside the brain.

    python benchmarks/infer_speed.py                 # slab (72 slices), fp32 and bf16
    python benchmarks/infer_speed.py --full          # whole volume
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mb, provenance, tune_allocator, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", default="infer_speed")
    args = parser.parse_args()
    tune_allocator()

    import numpy as np
    import torch

    from mrenhance.engine.infer import infer
    from mrenhance.models import create_model
    from mrenhance.models.weights import list_shipped_weights, load_pretrained
    from mrenhance.tasks import sr_t1

    shipped = {c["name"] for c in list_shipped_weights()}
    if "mdcsrn-b4u4" in shipped:
        model, weights = load_pretrained("mdcsrn-b4u4"), "shipped"
    else:
        torch.manual_seed(0)
        model, weights = create_model("mdcsrn-b4u4"), "random"
    cfg = sr_t1.validate_data_config({})
    subject = sr_t1.load_subjects(cfg)[0]
    box = (
        tuple(slice(0, n) for n in subject.lr.shape)
        if args.full
        else sr_t1.held_out_box(subject.lr.shape, cfg["held_out"], "test", 20)
    )
    lr, mask = subject.lr[box], subject.mask[box]
    p = args.patch
    configs = [
        ("crop, margin 3 (paper)", dict(overlap=6, blend="crop"), None),
        ("crop, margin 17 (exact halo)", dict(overlap=34, blend="crop"), None),
        ("gaussian, overlap 16", dict(overlap=16, blend="gaussian"), None),
        ("crop, margin 3, bf16 autocast", dict(overlap=6, blend="crop"), torch.bfloat16),
    ]
    outputs, rows = {}, []
    for label, kw, amp in configs:
        t0 = time.perf_counter()
        out = infer(
            model, lr, p, kw["overlap"], blend=kw["blend"], amp_dtype=amp, device=args.device
        )
        seconds = time.perf_counter() - t0
        outputs[label] = out
        rows.append(
            {
                "mode": label,
                "patch": p,
                "seconds": round(seconds, 1),
                "megavoxels_per_s": round(lr.size / seconds / 1e6, 3),
                "peak_rss_mb": round(peak_rss_mb()),
            }
        )
        print(rows[-1], flush=True)
    ref = outputs["crop, margin 17 (exact halo)"]
    for row in rows:
        diff = np.abs(outputs[row["mode"]] - ref)[mask]
        row["max_abs_diff_vs_exact"] = float(diff.max())
        row["mean_abs_diff_vs_exact"] = float(diff.mean())
    meta = provenance()
    meta.update(
        volume_shape=list(lr.shape),
        weights=weights,
        note="differences in normalised intensity (brain 99.5th percentile = 1)",
    )
    write_results(args.name, rows, meta)


if __name__ == "__main__":
    main()
