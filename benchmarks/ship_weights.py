"""Copy a finished training run's weights into the package, with held-out metrics in the card.

    python benchmarks/ship_weights.py benchmarks/runs/ship-b4u4/mdcsrn-b4u4.safetensors

Evaluates the weights and the interpolation baselines on the sr_t1 test slab (never seen in
training), records the numbers and the run's provenance in the model card, and copies
``<name>.safetensors`` + ``<name>.json`` into ``src/mrenhance/weights/``. The sha256 in the
card is of the weights file, which is copied byte for byte.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, provenance, tune_allocator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", help="a run's .safetensors (its .json card beside it)")
    parser.add_argument("--note", default="", help="free text for the card (e.g. the budget)")
    args = parser.parse_args()
    tune_allocator()

    from mrenhance.io.atomic import write_text_atomic
    from mrenhance.models.weights import load_model, read_card
    from mrenhance.tasks import sr_t1

    src = Path(args.weights)
    card = read_card(src)
    model = load_model(src)
    cfg = sr_t1.validate_data_config({})
    subject = sr_t1.load_subjects(cfg)[0]
    inference = card.get("inference") or {"patch_size": 64, "overlap": 6, "blend": "crop"}
    methods = {
        **sr_t1.baseline_methods(cfg["factors"]),
        card["name"]: sr_t1.model_method(
            model,
            patch_size=inference["patch_size"],
            overlap=inference["overlap"],
            blend=inference["blend"],
        ),
    }
    rows = sr_t1.evaluate_region(methods, subject, cfg["held_out"], "test")
    by = {r["method"]: r for r in rows}
    card["metrics"] = {
        **card.get("metrics", {}),
        "test": {k: by[card["name"]][k] for k in ("ssim", "psnr", "nrmse")},
        "test_baselines": {
            m: {k: by[m][k] for k in ("ssim", "psnr", "nrmse")}
            for m in ("tricubic", "zero-filled (input)")
        },
        "test_protocol": "MNI152 T1, k-space 2x2 (x, y), axial slab z 96-127 never sampled in "
        "training, brain mask, data_range 1 (benchmarks/ship_weights.py)",
    }
    # wall time from the run's log (the card of a resumed run holds only the last call's)
    stage_dir = src.parent / ("gan" if card["training"].get("stage") == "WGAN-GP" else "supervised")
    log = stage_dir / "metrics.csv"
    if log.is_file():
        import csv

        with open(log) as fh:
            last = list(csv.DictReader(fh))[-1]
        card["training"]["seconds"] = round(float(last["seconds"]), 1)
    card["shipped"] = {**provenance(), "date": time.strftime("%Y-%m-%d"), "note": args.note}
    dest = ROOT / "src" / "mrenhance" / "weights"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest / src.name)
    write_text_atomic(
        dest / f"{src.stem}.json", json.dumps(card, indent=2, default=str), overwrite=True
    )
    for r in rows:
        print(
            f"{r['method']:<22} SSIM {r['ssim']:.4f}  PSNR {r['psnr']:.2f}  NRMSE {r['nrmse']:.4f}"
        )
    print(f"shipped {dest / src.name}")


if __name__ == "__main__":
    main()
