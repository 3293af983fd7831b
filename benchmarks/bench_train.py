"""Training throughput: voxels per second of one optimizer step, and the data-loading share.

For each shipped recipe's network (mDCSRN b4u4 at 32^3 and 64^3 in fp32 and bf16, and the
ASL, DSC, PVS and DTI networks at their recipes' patch and batch sizes), one training step
is what :class:`mrenhance.engine.training.SupervisedStep` does: forward (under bf16
autocast for the bf16 rows), the recipe's loss in float32, backward, Adam. The batches
are drawn from the task's own training dataset (``task.build_training``, as ``mrenhance
train`` does, with ``collate_items``), and the time to draw them is measured separately:
``data share = mean draw / (mean draw + median step)``, the draw averaged over
``--data-batches`` consecutive batches, with the loader in the main
process and the Trainer's batch order (the Trainer's default on a 2-core machine, so the
share is what a CPU run pays).

Interleaved: ``--rounds`` rounds, each running ``--steps`` timed steps (after one warm-up
step in round 1) of every configuration in turn, so a busy spell on a shared machine hits
all rows alike. Reported: median and min seconds per step over all timed steps, voxels/s
(batch x spatial voxels of the target, per median step) and its ratio to the fp32 32^3
mDCSRN row.

    python benchmarks/bench_train.py                 # all rows, 3 rounds x 2 steps
    python benchmarks/bench_train.py --only mdcsrn   # the SR rows
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
from _common import provenance, tune_allocator, write_results

# (label, recipe, overrides, precision); patch/batch as the recipe's unless overridden.
# 64^3 patches do not fit between the MNI held-out slabs: a throughput run needs no held-out data.
SR32 = ["train.patch_size=32", "train.batch_size=2"]
SR64 = ["train.patch_size=64", "train.batch_size=2", "data.held_out=null"]
CONFIGS: list[tuple[str, str, list[str], str]] = [
    ("mdcsrn-b4u4 32^3", "sr_mdcsrn", SR32, "fp32"),
    ("mdcsrn-b4u4 32^3", "sr_mdcsrn", SR32, "bf16"),
    ("mdcsrn-b4u4 64^3", "sr_mdcsrn", SR64, "fp32"),
    ("mdcsrn-b4u4 64^3", "sr_mdcsrn", SR64, "bf16"),
    ("mdcsrn-b4u4 32^3 synthetic", "sr_mdcsrn_synth", ["train.patch_size=32"], "fp32"),
    ("dwan (ASL)", "asl_dwan", ["train.batch_size=16"], "fp32"),
    ("stU-Net (DSC)", "dsc_stunet", [], "fp32"),
    ("dcnn6+sc+b (PVS)", "pvs_dcnn", [], "fp32"),
    ("srresnet (DTI)", "dti_srresnet", [], "fp32"),
]


class Row:
    """One configuration: its model, optimiser, dataset and timings."""

    def __init__(self, label: str, recipe: str, overrides: list[str], precision: str) -> None:
        import torch

        from mrenhance.config import load_recipe, recipe_path
        from mrenhance.losses import create_loss
        from mrenhance.tasks import get_task
        from mrenhance.training import _model_from_section, _patch_tuple

        path = recipe_path(recipe)
        r = load_recipe(path, overrides)
        self.label, self.recipe, self.precision = label, recipe, precision
        self.batch_size = int(r.train.batch_size)
        patch = _patch_tuple(r.train.patch_size)
        t0 = time.perf_counter()
        self.dataset, _, _ = get_task(r.task).build_training(
            r.data, patch, seed=0, source=str(path)
        )
        self.build_s = time.perf_counter() - t0
        torch.manual_seed(0)
        self.model = _model_from_section(r.model).train()
        self.loss = create_loss(r.train.loss)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(r.train.lr))
        self.patch = list(patch)
        self.k = 0
        self.data_mean = 0.0
        self.step_s: list[float] = []
        self.data_s: list[float] = []
        self.voxels = 0

    def draw(self) -> dict[str, Any]:
        from mrenhance.engine.training.loop import collate_items, rank_batch_indices

        # the Trainer's own batch order (consecutive batches k, k + 1, ...: a synthetic
        # scan's patches are drawn together, as in a run)
        idx = rank_batch_indices(self.k, self.batch_size, 0, 1, len(self.dataset))
        self.k += 1
        return collate_items([self.dataset[int(i)] for i in idx])

    def step(self, timed: bool) -> None:
        import torch

        t0 = time.perf_counter()
        batch = self.draw()
        t1 = time.perf_counter()
        x, y = batch["inputs"].float(), batch["target"].float()
        self.optimizer.zero_grad(set_to_none=True)
        if self.precision == "bf16":
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                pred = self.model(x)
        else:
            pred = self.model(x)
        loss = self.loss(pred.float(), y)
        loss.backward()
        self.optimizer.step()
        t2 = time.perf_counter()
        self.voxels = int(y.shape[0] * np.prod(y.shape[2:]))
        if timed:
            self.data_s.append(t1 - t0)
            self.step_s.append(t2 - t1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per row per round (2)")
    p.add_argument(
        "--data-batches",
        type=int,
        default=36,
        help="batches drawn for the data share (36; the synthetic SR recipe renders a scan "
        "every 12 batches, so 144 gives its steady state)",
    )
    p.add_argument("--only", default=None, help="rows whose label contains this text")
    p.add_argument("--name", default="bench_train")
    args = p.parse_args()
    tune_allocator()
    configs = [c for c in CONFIGS if not args.only or args.only in c[0]]
    rows = []
    for label, recipe, overrides, precision in configs:
        print(f"building {label} {precision} ({recipe})", flush=True)
        rows.append(Row(label, recipe, overrides, precision))
    for row in rows:
        row.step(timed=False)  # warm-up: allocator, first-call kernels
    for k in range(args.rounds):
        for row in rows:
            for _ in range(args.steps):
                row.step(timed=True)
            print(
                f"round {k + 1}: {row.label:18s} {row.precision} "
                f"{row.step_s[-1]:.2f} s/step, data {row.data_s[-1]:.3f} s",
                flush=True,
            )
    for row in rows:  # the data alone, over enough consecutive batches to span 3 synthetic scans
        t0 = time.perf_counter()
        for _ in range(args.data_batches):
            row.draw()
        row.data_mean = (time.perf_counter() - t0) / args.data_batches
    out = []
    base = None
    for row in rows:
        med = statistics.median(row.step_s)
        data = statistics.median(row.data_s)
        vps = row.voxels / med
        if base is None and row.precision == "fp32" and "mdcsrn" in row.label:
            base = vps
        out.append(
            {
                "network": row.label,
                "recipe": row.recipe,
                "precision": row.precision,
                "patch": "x".join(str(n) for n in row.patch),
                "batch": row.batch_size,
                "step_s_median": round(med, 3),
                "step_s_min": round(min(row.step_s), 3),
                "voxels_per_s": round(vps),
                "ratio_to_mdcsrn_32_fp32": round(vps / base, 2) if base else None,
                "data_s_median": round(data, 4),
                # the mean over --data-batches consecutive batches: a synthetic scan is
                # rendered once per 12 batches of 2, which a few timed steps can miss
                "data_s_mean": round(row.data_mean, 4),
                "data_share": round(row.data_mean / (row.data_mean + med), 3),
                "dataset_build_s": round(row.build_s, 1),
            }
        )
    meta = provenance(" ".join(["python benchmarks/bench_train.py", *sys.argv[1:]]))
    meta.update(
        rounds=args.rounds,
        timed_steps_per_row=args.rounds * args.steps,
        step="forward (bf16 autocast for bf16 rows) + recipe loss (fp32) + backward + Adam",
        data="task.build_training dataset, collate_items, in the main process",
    )
    write_results(args.name, out, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
