"""Does an ASL denoiser keep high CBF? A hyper-perfused region scaled up, through each network.

For each phantom (``simulate.asl.draw_perfusion`` with a hyper-perfused region in the
paper's slab, seeds 11-13: not the task's train/validation/test seeds) the clean true CBF
map of the paper's slab is given to the network with the region's excess over the same
subject without it multiplied by k = 1, 2, 4, 8 (so its mean CBF goes from ~80 to ~370
ml/100 g/min). A denoiser that keeps high CBF gives an output mean in the region that
grows with k (slope ~1); one that treats a bright local patch as an artefact (a motion
spike of the training data) saturates. Through ``Enhancer`` (the ``enhance`` code path:
prepare, 2D tiles, restore; no clipping anywhere in it, tested).

A second protocol (``noisy``) is what a user meets: the same subjects simulated end to end
(40 label/control pairs with thermal noise, motion and 10 % outlier pairs, the task's
defaults), the hyper-perfused region's factor fixed at f = 2, 3, 5, 8 (CBF x f inside it;
the rest of the subject, its noise and its outliers identical across f), the network given
the 10-pair mean; the table reports the region's mean true CBF, the input's and the
output's, and the slope of the output's on the truth's.

    PYTHONPATH=src python benchmarks/asl_high_cbf.py                       # shipped model
    PYTHONPATH=src python benchmarks/asl_high_cbf.py --weights dwan-asl-lfn,RUN/x.safetensors

Writes ``benchmarks/results/asl_high_cbf.{json,md,csv}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402

SEEDS = (11, 12, 13)
FACTORS = (1, 2, 4, 8)
NOISY_FACTORS = (2.0, 3.0, 5.0, 8.0)


def phantom(seed: int, k: float):
    """(CBF map (x, y, z) of the paper's slab with the region's excess x k, region mask,
    affine)."""
    from mrenhance.simulate import asl as A

    hot = A.draw_perfusion(np.random.default_rng(seed), hyper_probability=1.0)
    base = A.draw_perfusion(np.random.default_rng(seed), hyper_probability=0.0)
    z = slice(A.PAPER_SLICES[0], A.PAPER_SLICES[-1] + 1)
    cbf = base.cbf[:, :, z] + k * (hot.cbf[:, :, z] - base.cbf[:, :, z])
    return cbf.astype(np.float32), hot.hyper_mask[:, :, z], hot.affine


def noisy_subject(seed: int, f: float):
    """(10-pair mean, true CBF, region mask, affine) of the paper's slab: subject ``seed``
    simulated end to end with its hyper-perfused region at CBF x ``f``."""
    from mrenhance.simulate import asl as A

    s = A.simulate_asl_subject(
        seed, perfusion_options={"hyper_probability": 1.0, "hyper_factor": (f, f)}
    )
    z = slice(A.PAPER_SLICES[0], A.PAPER_SLICES[-1] + 1)
    return s.segments[0][:, :, z], s.truth[:, :, z], s.hyper_mask[:, :, z], s.affine


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y on x (1 = every extra ml/100 g/min kept)."""
    return float(np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="dwan-asl-lfn", help="comma-separated names or paths")
    ap.add_argument("--labels", default=None, help="comma-separated row labels")
    ap.add_argument("--name", default="asl_high_cbf")
    ap.add_argument("--protocol", choices=("clean", "noisy", "both"), default="both")
    args = ap.parse_args()
    tune_allocator()
    import torch

    from mrenhance.enhance_api import Enhancer
    from mrenhance.models.weights import read_card, resolve_weights
    from mrenhance.volume import Volume

    torch.set_num_threads(1)
    weights = [w for w in args.weights.split(",") if w]
    labels = args.labels.split(",") if args.labels else weights
    rows, shas = [], {}
    noisy_cache: dict = {}
    for w, label in zip(weights, labels, strict=True):
        path = resolve_weights(w)
        shas[label] = read_card(path).sha256
        enhancer = Enhancer.from_weights(path)
        if args.protocol in ("clean", "both"):
            for seed in SEEDS:
                ins, outs = [], []
                for k in FACTORS:
                    cbf, region, affine = phantom(seed, k)
                    out = enhancer(Volume(cbf, affine, {"source": f"phantom {seed} x{k}"})).data
                    ins.append(float(cbf[region].mean()))
                    outs.append(float(out[region].mean()))
                row = {"model": label, "protocol": "clean", "phantom": seed}
                row["voxels"] = int(region.sum())
                for k, a, b in zip(FACTORS, ins, outs, strict=True):
                    row[f"in_x{k}"] = round(a, 1)
                    row[f"out_x{k}"] = round(b, 1)
                row["slope"] = round(slope(ins, outs), 3)
                row["ratio_x1"] = round(outs[0] / ins[0], 3)
                row["ratio_x8"] = round(outs[-1] / ins[-1], 3)
                rows.append(row)
                print(row, flush=True)
        if args.protocol in ("noisy", "both"):
            for seed in SEEDS:
                row = {"model": label, "protocol": "noisy", "phantom": seed}
                truths, outs = [], []
                for f in NOISY_FACTORS:
                    if (seed, f) not in noisy_cache:
                        noisy_cache[(seed, f)] = noisy_subject(seed, f)
                    x, truth, region, affine = noisy_cache[(seed, f)]
                    out = enhancer(Volume(x, affine, {"source": f"subject {seed} f{f:g}"})).data
                    truths.append(float(truth[region].mean()))
                    outs.append(float(out[region].mean()))
                    row["voxels"] = int(region.sum())
                    row[f"truth_f{f:g}"] = round(truths[-1], 1)
                    row[f"input_f{f:g}"] = round(float(x[region].mean()), 1)
                    row[f"out_f{f:g}"] = round(outs[-1], 1)
                row["slope"] = round(slope(truths, outs), 3)
                row["ratio_f2"] = round(outs[0] / truths[0], 3)
                row["ratio_f8"] = round(outs[-1] / truths[-1], 3)
                rows.append(row)
                print(row, flush=True)
    meta = provenance("python benchmarks/asl_high_cbf.py " + " ".join(sys.argv[1:]))
    meta.update(
        protocol="clean: true-CBF phantoms (seeds 11-13, hyper-perfused region in slices "
        "36-60), region excess x 1, 2, 4, 8; mean of the output / input inside the region; "
        "slope = least squares of output on input mean over the four factors. noisy: the "
        "same seeds simulated end to end (40 pairs, noise, motion, 10 % outlier pairs) with "
        "the region at CBF x 2, 3, 5, 8, the 10-pair mean in; slope of the output's region "
        "mean on the true CBF's",
        sha256=shas,
    )
    write_results(args.name, rows, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
