"""Whole-volume inference: speed, peak memory and seam error of the tiling modes.

Runs mDCSRN b4u4 (shipped weights if present, else random weights of the same shape) over
the MNI152 T1 (197x233x189) or a slab of it with several :class:`GridPlan` s: the paper's
3-voxel crop margin (the older halo-padded placement, and the default shifted-back one),
an exact halo (``GridPlan.exact_for``: halo = receptive-field radius 17), the largest exact
tiles that fit ``--max-mb`` (``plan_for_memory``), gaussian blending, and bf16 autocast;
reports seconds, voxels/s, peak RSS and the largest difference from the exact reference
inside the brain.

    python benchmarks/infer_speed.py                 # slab (72 slices), fp32 and bf16
    python benchmarks/infer_speed.py --full          # whole volume
    python benchmarks/infer_speed.py --max-mb 8192 --device cuda
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
    parser.add_argument("--max-mb", type=float, default=2048, help="memory-planned tiles")
    parser.add_argument("--name", default="infer_speed")
    args = parser.parse_args()
    tune_allocator()

    from dataclasses import replace

    import numpy as np
    import torch

    from mrenhance.engine.grid import GridPlan, plan_for_memory
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
    exact = GridPlan.exact_for(model, patch=p)
    budget = plan_for_memory(model, lr.shape, args.max_mb * 2**20)
    configs = [
        ("crop, margin 3 (paper, halo-padded)", GridPlan.from_legacy(p, 6), None),
        ("crop, halo 3, last tile shifted back", GridPlan(patch=p, overlap=6), None),
        ("crop, exact halo 17", exact, None),
        (f"crop, exact halo, {args.max_mb:g} MiB plan {budget.patch}", budget, None),
        ("gaussian, overlap 16", GridPlan(patch=p, overlap=16, blend="gaussian"), None),
        ("crop, halo 3, bf16 autocast", GridPlan(patch=p, overlap=6), torch.bfloat16),
    ]
    assert replace(exact, patch=budget.patch) == budget  # same exact plan, bigger tiles
    outputs, rows = {}, []
    for label, plan, amp in configs:
        t0 = time.perf_counter()
        out = infer(model, lr, plan, amp_dtype=amp, device=args.device)
        seconds = time.perf_counter() - t0
        outputs[label] = out
        rows.append(
            {
                "mode": label,
                "patch": max(plan.patch),
                "seconds": round(seconds, 1),
                "megavoxels_per_s": round(lr.size / seconds / 1e6, 3),
                "peak_rss_mb": round(peak_rss_mb()),
            }
        )
        print(rows[-1], flush=True)
    ref = outputs["crop, exact halo 17"]
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
