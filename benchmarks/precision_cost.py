"""What bf16 costs in accuracy: the SR held-out table of each shipped SR model, fp32 vs bf16.

Each shipped ``sr_t1`` model runs the task's own evaluation protocol (the MNI152 held-out
slab, ``mrenhance evaluate sr_t1``'s code path: :meth:`Task.evaluate` over
:meth:`Task.network_method`, i.e. ``enhance`` on the whole LR volume, scored on the slab)
twice, through ``Enhancer(precision="fp32")`` and ``Enhancer(precision="bf16")``, with the
exact default tiling. Rows: SSIM / PSNR / NRMSE as the table, the bf16 - fp32 differences,
and the max / mean absolute difference between the two outputs on the slab, relative to
the fp32 output's 99.5th percentile there.

    python benchmarks/precision_cost.py                 # every shipped sr_t1 model

Writes ``benchmarks/results/precision_cost.{json,md,csv}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=None, help="comma-separated (default: shipped sr_t1)")
    args = ap.parse_args()
    tune_allocator()
    import numpy as np

    from mrenhance.enhance_api import Enhancer, cpu_has_native_bf16
    from mrenhance.models.weights import list_shipped_weights
    from mrenhance.tasks import get_task

    task = get_task("sr_t1")
    names = (
        args.models.split(",")
        if args.models
        else [c.name for c in list_shipped_weights() if c.task == "sr_t1"]
    )
    rows = []
    for name in names:
        outputs: dict[str, np.ndarray] = {}
        results: dict[str, dict] = {}
        for precision in ("fp32", "bf16"):
            enhancer = Enhancer.from_weights(name, precision=precision)
            method = task.network_method(enhancer)

            def keep(subject, box, _m=method, _p=precision, _o=outputs):
                out = _m(subject, box)
                _o[_p] = np.asarray(out, dtype=np.float32)
                return out

            t0 = time.perf_counter()
            (row,) = [r for r in task.evaluate({name: keep}) if r["method"] == name]
            row["seconds"] = time.perf_counter() - t0
            results[precision] = row
        scale = float(np.percentile(outputs["fp32"], 99.5)) or 1.0
        diff = np.abs(outputs["bf16"] - outputs["fp32"]) / scale
        for precision in ("fp32", "bf16"):
            r = results[precision]
            out = {
                "model": name,
                "precision": precision,
                "ssim": r["ssim"],
                "psnr": r["psnr"],
                "nrmse": r["nrmse"],
                "seconds": r["seconds"],
            }
            if precision == "bf16":
                out["psnr_minus_fp32"] = r["psnr"] - results["fp32"]["psnr"]
                out["ssim_minus_fp32"] = r["ssim"] - results["fp32"]["ssim"]
                out["max_abs_diff"] = float(diff.max())
                out["mean_abs_diff"] = float(diff.mean())
            rows.append(out)
    meta = provenance(" ".join(["precision_cost.py", *sys.argv[1:]]))
    meta["native_bf16"] = cpu_has_native_bf16()
    meta["protocol"] = (
        "sr_t1 held-out slab of the MNI152 template (the task's test region), exact tiling, "
        "whole LR volume normalised as enhance does; seconds include the whole evaluation"
    )
    write_results("precision_cost", rows, meta)


if __name__ == "__main__":
    main()
