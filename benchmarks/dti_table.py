"""The DTI SR paper's table (bicubic vs SRResNet vs SRGAN) and the tensor metrics it lacks.

Runs the dti task's protocol (:meth:`mrenhance.tasks.dti.DTITask.evaluate`) on three sets:

* ``simulated``: the simulated test subjects (never trained on), central 8 axial slices,
  ``small_64D``'s 65-volume table: per-slice PSNR/SSIM, sharpness (gradient ratio to HR),
  FA/MD errors per tissue and the V1 angle in WM against the HR DWIs' tensor fit;
* ``real small_64D``: dipy's real 10x10x10x65 DWI cropped to 8x8 in-plane (LR 2x2: a tiny
  check, but real data no training saw), FA/MD/V1 against the real HR fit;
* ``real b0``: dipy's real S0_10slices b = 0 image (128x128x10; image metrics only).

Networks are the shipped weights (``srresnet-dwi-x4``, ``srgan-dwi-x4``) or ``--weights``
paths, applied through the Enhancer (``mrenhance enhance``'s code path).

    python benchmarks/dti_table.py
    python benchmarks/dti_table.py --weights runs/dti/srresnet-dwi-x4.safetensors

Writes ``benchmarks/results/dti_table.{json,md,csv}`` with the findings: does the paper's
result hold (SRGAN below bicubic on PSNR/SSIM yet sharper), and does SRResNet beat bicubic
on the DWIs and on FA/MD?
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, provenance, tune_allocator, write_results  # noqa: E402

PAPER = {"SR-GAN (paper)": (33.8386, 0.783874), "Bicubic (paper)": (34.811728, 0.889286)}


def findings(rows: list[dict]) -> dict[str, object]:
    """The questions of the issue, answered from the simulated rows."""
    sim = {r["method"]: r for r in rows if r["set"] == "simulated"}
    out: dict[str, object] = {}
    bic, res = sim.get("bicubic"), sim.get("srresnet-dwi-x4")
    gan = sim.get("srgan-dwi-x4")
    if gan and bic:
        below = gan["psnr"] < bic["psnr"] and gan["ssim"] < bic["ssim"]
        sharper = gan["sharpness"] > bic["sharpness"]
        out["paper_finding_holds"] = bool(below and sharper)
        out["srgan_below_bicubic_psnr_ssim"] = bool(below)
        out["srgan_sharper_than_bicubic"] = bool(sharper)
    if res and bic:
        out["srresnet_beats_bicubic_psnr_ssim"] = bool(
            res["psnr"] > bic["psnr"] and res["ssim"] > bic["ssim"]
        )
        out["srresnet_beats_bicubic_fa_md_wm"] = bool(
            res["fa_mae_wm"] < bic["fa_mae_wm"] and res["md_mae_wm"] < bic["md_mae_wm"]
        )
        out["srresnet_beats_bicubic_v1_wm"] = bool(res["angle_wm_deg"] < bic["angle_wm_deg"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", nargs="*", default=["srresnet-dwi-x4", "srgan-dwi-x4"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    tune_allocator()

    from mrenhance.enhance_api import Enhancer
    from mrenhance.tasks import get_task

    task = get_task("dti")
    methods = dict(task.baselines())
    cards = {}
    for spec in args.weights:
        try:
            enhancer = Enhancer.from_weights(spec, device=args.device)
        except Exception as err:  # a missing optional model is reported, not fatal
            print(f"skipping {spec}: {err}")
            continue
        methods[enhancer.name] = task.network_method(enhancer)
        cards[enhancer.name] = enhancer.card
    rows = []
    t0 = time.perf_counter()
    for which, label in (("test", "simulated"), ("real", "real small_64D"), ("real_b0", "real b0")):
        for row in task.evaluate(methods, which=which):
            rows.append({"set": label, **row})
    for name, (psnr, ssim) in PAPER.items():
        rows.append(
            {"set": "paper (real DTI, 2 patients)", "method": name, "psnr": psnr, "ssim": ssim}
        )
    meta = provenance("python benchmarks/dti_table.py " + " ".join(sys.argv[1:]))
    meta["protocol"] = task.protocol()
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    meta["findings"] = findings(rows)
    meta["training"] = {
        name: {
            k: card.training.get(k)
            for k in (
                "recipe",
                "stage",
                "steps",
                "generator_steps",
                "patch_size",
                "batch_size",
                "seconds",
            )
            if k in card.training
        }
        for name, card in cards.items()
    }
    write_results("dti_table", rows, meta)
    print("\nfindings:", meta["findings"])
    print(f"-> {RESULTS / 'dti_table.md'}")


if __name__ == "__main__":
    main()
