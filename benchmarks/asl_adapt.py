"""What ``enhance --adapt`` adds to the shipped ``dwan-asl-lfn``, on held-out subjects.

Each subject is a simulated *test* subject of the ``asl`` task (seeds ``[seed, 2, i]``,
:func:`mrenhance.tasks.asl.subject_seed`: never a training or validation subject; the data
config is the shipped card's). A user with the paper's short scan has 10 label/control
pairs, and the network's test input is their mean (pairs 1-10, Sec. 2.3); so each subject
is given as the 4D series of its per-pair CBF maps of pairs 1-10 on the MNI grid, whose
mean is exactly the task's test input. ``enhance(series, "dwan-asl-lfn",
adapt_steps=k)`` (the code path of ``mrenhance enhance series.nii.gz --model dwan-asl-lfn
--adapt-steps k``) fine-tunes a copy of the network on random halves of those 10 pairs
(learning from noise: 5-pair mean -> the other 5-pair mean), then enhances the 10-pair
mean. Rows: the input, and each step count (0 = the shipped network as is), scored by the
task's protocol (:func:`mrenhance.tasks.asl.evaluate_cases`: PSNR / SSIM against the
pseudo gold standard and against the true CBF, SNR, GM/WM contrast; mean and std over
subjects) with seconds per subject (adaptation + enhancement).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/asl_adapt.py            # 6 subjects
    PYTHONPATH=src python benchmarks/asl_adapt.py --subjects 1 --steps 0,50    # a timing check

Writes ``benchmarks/results/asl_adapt.{json,md,csv}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402

#: Pairs a user has: the paper's test input is the mean of pairs 1-10 (Sec. 2.3).
N_PAIRS = 10


def per_pair_series(subject: Any, n_pairs: int = N_PAIRS) -> np.ndarray:
    """Per-pair CBF (x, y, z, n) of pairs 1..n on the stored MNI slices of the task.

    The same quantification and trilinear MNI resampling as the simulator's segment means
    (resampling commutes with averaging), so the mean over the n = 10 maps is the task's
    test input.
    """
    from mrenhance.simulate.asl import quantify_pairs, to_mni
    from mrenhance.tasks.asl import STORED_SLICES

    series = subject.series
    cbf = quantify_pairs(series.control, series.label, series.protocol)[..., :n_pairs]
    mni = to_mni(cbf, series.affine, subject.affine)  # (n, x, y, z)
    return np.ascontiguousarray(np.moveaxis(mni[..., list(STORED_SLICES)], 0, -1), np.float32)


def load_subjects(cfg: dict[str, Any], n: int) -> list[tuple[Any, Any]]:
    """(AslCase, per-pair series Volume) of the first ``n`` test subjects of ``cfg``."""
    from mrenhance.simulate.asl import simulate_asl_subject
    from mrenhance.tasks import asl as T
    from mrenhance.volume import Volume

    out = []
    for i in range(n):
        subject = simulate_asl_subject(  # as tasks.asl.load_cases, keeping the pairs
            T.subject_seed(cfg["seed"], "test", i),
            name=f"test-{i:03d}",
            outlier_fraction=cfg["outlier_fraction"],
            thermal_noise=cfg["thermal_noise"],
            perfusion_options=cfg.get("perfusion") or None,
            keep_series=True,
        )
        case = T._case(subject)
        pairs = per_pair_series(subject)
        gap = float(np.abs(pairs.mean(axis=-1) - case.input_10).max())
        if gap > 1e-2:  # ml/100 g/min: the series must average to the task's test input
            raise RuntimeError(f"{case.name}: pair mean differs from the test input by {gap}")
        meta = {"source": f"{case.name} (pairs 1-{N_PAIRS})", "asl_order": "cbf"}
        out.append((case, Volume(pairs, case.affine, meta)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="dwan-asl-lfn", help="shipped name or weights path")
    ap.add_argument("--subjects", type=int, default=6, help="held-out test subjects (<= card's)")
    ap.add_argument("--steps", default="0,50,200", help="adaptation steps, comma-separated")
    ap.add_argument("--seed", type=int, default=0, help="adaptation seed (enhance --adapt-seed)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--name", default="asl_adapt", help="results file stem")
    ap.add_argument(
        "--consistency",
        default="off",
        choices=("off", "auto"),
        help="enhance's consistency (default off: adaptation alone, the committed table; "
        "auto adds the split-half weight, benchmarks/asl_split_half.py)",
    )
    args = ap.parse_args()
    tune_allocator()
    import torch

    from mrenhance.enhance_api import Enhancer, enhance
    from mrenhance.tasks import asl as T
    from mrenhance.tasks import get_task

    torch.set_num_threads(args.threads)
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    enhancer = Enhancer.from_weights(args.model, consistency=args.consistency)
    card = enhancer.card
    task = get_task("asl")
    data = dict(card.training.get("data") or {})
    cfg = task.data_config(data)
    if args.subjects > cfg["subjects"]["test"]:
        raise SystemExit(f"--subjects {args.subjects}: the card's test split has "
                         f"{cfg['subjects']['test']}")  # fmt: skip
    t0 = time.perf_counter()
    subjects = load_subjects(cfg, args.subjects)
    simulate_s = time.perf_counter() - t0
    cases = [c for c, _ in subjects]
    series = {c.name: s for c, s in subjects}
    adapt_info: dict[str, list[dict[str, Any]]] = {}

    def adapted(k: int):
        def method(case):
            out = enhance(series[case.name], enhancer, adapt_steps=k, adapt_seed=args.seed)
            adapt_info.setdefault(str(k), []).append(out.meta.get("adaptation") or {})
            return out.data

        return method

    methods = {"mean of 10 pairs (input)": lambda c: c.input_10}
    methods.update({f"{card.name} + adapt {k} steps": adapted(k) for k in steps})
    rows = T.evaluate_cases(methods, cases)
    for row, k in zip(rows, [None, *steps], strict=True):
        row["adapt_steps"] = k
        row["seconds_per_subject"] = round(row.pop("seconds") / len(cases), 2)
        infos = adapt_info.get(str(k), [])
        if infos and k:
            row["adapt_seconds"] = round(float(np.mean([i["seconds"] for i in infos])), 2)
            row["loss_before"] = round(float(np.mean([i["loss_before"] for i in infos])), 5)
            row["loss_after"] = round(float(np.mean([i["loss_after"] for i in infos])), 5)
        print({k2: row[k2] for k2 in ("method", "psnr", "psnr_truth", "snr")}, flush=True)
    meta = provenance("python benchmarks/asl_adapt.py " + " ".join(sys.argv[1:]))
    meta["model"] = f"{card.name} sha256 {card.sha256[:12]}"
    meta["protocol"] = task.protocol({**data, "subjects": {**cfg["subjects"],
                                                           "test": args.subjects}})  # fmt: skip
    meta["adaptation"] = (
        f"per subject: its per-pair CBF maps of pairs 1-{N_PAIRS} as a 4D series; enhance(..., "
        f"adapt_steps=k, adapt_seed={args.seed}) with the engine's defaults (Adam lr 1e-4, "
        "batch 2, the task's 48 x 48 patches in a head mask, L1, flips; 4 random splits into "
        "5-pair halves and their reverses); the 10-pair mean is then enhanced "
        f"(consistency {args.consistency})"
    )
    meta["simulate_seconds"] = round(simulate_s, 1)
    write_results(args.name, rows, meta)


if __name__ == "__main__":
    main()
