"""What the one-normalisation fix changes: the old ``enhance`` rule against the card's rule.

    python benchmarks/normalisation_effect.py

Before the fix, training divided by the 99.5th percentile of the HR brain mask while
``enhance`` divided the LR input by the 99.5th percentile of all voxels > 0. Now both use
the card's rule (99.5th percentile inside an automatic head mask of the input). This runs
the shipped ``mdcsrn-b4u4`` both ways, through the same Enhancer, on
(a) the MNI152 held-out test slab (the evaluation protocol of ``sr_t1``) and
(b) nibabel's real single-subject T1 (``anatomical.nii``: 2 mm, skull and background kept),
k-space truncated 2x2 in-plane. PSNR/SSIM inside the head mask of the HR image, both images
divided by the HR's 99.5th head percentile (data range 1). Writes
``benchmarks/results/normalisation_effect.{json,md,csv}``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402


def main() -> None:
    tune_allocator()
    import nibabel
    import numpy as np

    from mrenhance.enhance_api import Enhancer
    from mrenhance.io import load
    from mrenhance.metrics import compute_metrics
    from mrenhance.models.card import Normalisation
    from mrenhance.preprocess import head_mask, intensity_scale
    from mrenhance.tasks import get_task, sr_t1
    from mrenhance.volume import Volume

    task = get_task("sr_t1")
    rules = {
        "old enhance rule (LR voxels > 0)": Normalisation("percentile", 99.5, "nonzero"),
        "card rule (LR head mask)": Normalisation("percentile", 99.5, "head"),
    }
    rows = []
    cfg = task.data_config({})
    subject = sr_t1.load_subjects(cfg)[0]
    for label, rule in rules.items():
        enhancer = Enhancer.from_weights("mdcsrn-b4u4")
        enhancer.normalisation = rule
        row = sr_t1.evaluate_region(
            {"mdcsrn-b4u4": sr_t1.network_method(enhancer)}, subject, cfg["held_out"], "test"
        )[0]
        rows.append(
            {
                "case": "MNI152 held-out slab",
                "rule": label,
                "input_scale": round(intensity_scale(subject.lr, rule), 2),
                "training_scale": 234.0,
                "psnr": row["psnr"],
                "ssim": row["ssim"],
            }
        )
        print(rows[-1], flush=True)

    path = Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii"
    hr_vol = load(path)
    hr = np.clip(hr_vol.data, 0, None)
    lr = sr_t1.make_lr(hr, (2, 2, 1))
    mask = head_mask(hr)
    ref = float(np.percentile(hr[mask], 99.5))
    base = compute_metrics(lr / ref, hr / ref, names=("psnr", "ssim"), data_range=1.0, mask=mask)
    for label, rule in rules.items():
        enhancer = Enhancer.from_weights("mdcsrn-b4u4")
        enhancer.normalisation = rule
        out = enhancer(Volume(lr, hr_vol.affine, {"source": str(path)})).data
        values = compute_metrics(
            out / ref, hr / ref, names=("psnr", "ssim"), data_range=1.0, mask=mask
        )
        rows.append(
            {
                "case": "nibabel anatomical.nii (real, 2 mm, skull)",
                "rule": label,
                "input_scale": round(intensity_scale(lr, rule), 2),
                "training_scale": None,
                "psnr": values["psnr"],
                "ssim": values["ssim"],
                "input_psnr": base["psnr"],
                "gain_db": values["psnr"] - base["psnr"],
            }
        )
        print(rows[-1], flush=True)
    meta = provenance()
    meta["note"] = __doc__.split("\n\n")[1].replace("\n", " ")
    write_results("normalisation_effect", rows, meta)


if __name__ == "__main__":
    main()
