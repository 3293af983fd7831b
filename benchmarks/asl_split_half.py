"""What the split-half weight of ``enhance`` does on our own held-out subjects.

``enhance`` of an ASL series of at least 4 pairs (``consistency="auto"``, the default)
runs the network on the mean of all pairs and on the means of the even and of the odd
pairs, and returns ``w net(mean) + (1 - w) mean`` with ``w`` judged on the series' own
halves (:func:`mrenhance.tasks.asl.split_half_weight`). On data unlike the training data
(``benchmarks/asl_asldro.py``) that pulls a network that makes the data worse back
towards the plain mean; this benchmark measures what it costs where the network is good:
the first ``--subjects`` *test* subjects of the task (seeds ``[0, 2, i]``, the card's data
config, never trained or selected on), each given as the 4D series of its per-pair CBF
maps of pairs 1-10 (``asl_adapt.load_subjects``: their mean is the task's test input).
Rows per model: the raw network (``consistency="off"``) and the default (split-half),
scored by the task's protocol; the JSON has each subject's ``w``.

    PYTHONPATH=src python benchmarks/asl_split_half.py --models dwan-asl-lfn,E.safetensors

Writes ``benchmarks/results/asl_split_half.{json,md,csv}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402
from asl_adapt import load_subjects  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="dwan-asl-lfn", help="comma-separated names or paths")
    ap.add_argument("--labels", default=None, help="comma-separated row labels")
    ap.add_argument("--subjects", type=int, default=8, help="held-out test subjects")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--name", default="asl_split_half", help="results file stem")
    args = ap.parse_args()
    tune_allocator()
    import torch

    from mrenhance.enhance_api import Enhancer, enhance
    from mrenhance.models.weights import resolve_weights
    from mrenhance.tasks import asl as T
    from mrenhance.tasks import get_task

    torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m]
    labels = args.labels.split(",") if args.labels else models
    task = get_task("asl")
    first = Enhancer.from_weights(resolve_weights(models[0]))
    data = dict(first.card.training.get("data") or {})
    cfg = task.data_config(data)
    subjects = load_subjects(cfg, args.subjects)
    cases = [c for c, _ in subjects]
    series = {c.name: s for c, s in subjects}
    weights: dict[str, list[float]] = {}
    methods = {"mean of 10 pairs (input)": lambda c: c.input_10}
    shas = {}
    for model, label in zip(models, labels, strict=True):
        path = resolve_weights(model)
        raw = Enhancer.from_weights(path, consistency="off")
        auto = Enhancer.from_weights(path)
        shas[label] = auto.card.sha256

        def run_raw(case, raw=raw):
            return enhance(series[case.name], raw).data

        def run_auto(case, auto=auto, label=label):
            out = enhance(series[case.name], auto)
            weights.setdefault(label, []).append(float(out.meta["consistency"]["weight"]))
            return out.data

        methods[f"{label} (raw network)"] = run_raw
        methods[label] = run_auto
    rows = T.evaluate_cases(methods, cases)
    for row in rows:
        row.pop("seconds", None)
        w = weights.get(row["method"])
        if w:
            row["weight_mean"] = round(float(np.mean(w)), 3)
            row["weight_min"] = round(float(np.min(w)), 3)
        print({k: row[k] for k in ("method", "psnr", "psnr_truth", "snr")}, flush=True)
    meta = provenance("python benchmarks/asl_split_half.py " + " ".join(sys.argv[1:]))
    meta["sha256"] = shas
    meta["weights_per_subject"] = weights
    meta["protocol"] = task.protocol({**data, "subjects": {**cfg["subjects"],
                                                           "test": args.subjects}})  # fmt: skip
    write_results(args.name, rows, meta)


if __name__ == "__main__":
    main()
