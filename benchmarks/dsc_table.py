"""Table 1 of the stU-Net paper on simulated subjects: oSVD, Hess-style and stU-Net CBV.

For full, half and quarter dose (Eq. 1 on the full-dose series, as the paper): L1, L2 over
the brain, t-L1, t-L2 over the tumour, 2D SSIM, per test subject with mean and std, on the
paper's basis (each CBV map standardised by its own brain statistics, clipped to [-5, 5]),
against (a) the classical full-dose oSVD CBV (the paper's reference, Verbena there) and
(b) the true CBV (which the paper could not have). See tasks/dsc.py for the protocol.

    python benchmarks/dsc_table.py                          # the shipped networks
    python benchmarks/dsc_table.py --stunet runs/stunet/stunet-dsc-cbv.safetensors \\
        --hess runs/hess/hess-dsc-cbv.safetensors --subjects 4

Writes benchmarks/results/dsc_table.{json,md,csv} (the JSON holds every subject's values).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, provenance, tune_allocator, write_results  # noqa: E402

LABELS = {"l2": "L2 (1e-2)", "t_l2": "t-L2 (1e-2)", "l1": "L1 (1e-2)", "t_l1": "t-L1 (1e-2)"}


def paper_layout(rows: list[dict], methods: list[str], reference: str) -> str:
    """Markdown in Table 1's layout: mean (std), x1e-2 for L1/L2, % for SSIM."""
    lines = [f"| dose | metric | {' | '.join(methods)} |", "|---|---|" + "---|" * len(methods)]
    for dose, dname in ((1.0, "full"), (0.5, "1/2"), (0.25, "1/4")):
        for key in ("l2", "t_l2", "l1", "t_l1", "ssim"):
            cells = []
            for m in methods:
                r = next(
                    (
                        x
                        for x in rows
                        if x["method"] == m and x["dose"] == dose and x["reference"] == reference
                    ),
                    None,
                )
                if r is None or r[key] is None:
                    cells.append("(n/a)")
                    continue
                scale = 100.0
                cells.append(f"{scale * r[key]:.2f} ({scale * r[key + '_std']:.2f})")
            label = LABELS.get(key, "SSIM (%)")
            lines.append(f"| {dname} | {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stunet", default="stunet-dsc-cbv", help="shipped name or .safetensors")
    ap.add_argument("--hess", default="hess-dsc-cbv", help="shipped name or .safetensors")
    ap.add_argument("--subjects", type=int, default=None, help="test subjects (default: recipe)")
    args = ap.parse_args(argv)
    tune_allocator()
    from mrenhance.enhance_api import Enhancer
    from mrenhance.io.atomic import write_text_atomic
    from mrenhance.tasks import dsc as T
    from mrenhance.tasks import get_task

    task = get_task("dsc")
    data = {"subjects": {"test": args.subjects}} if args.subjects else {}
    cfg = task.data_config(data)
    methods = dict(task.baselines(cfg))
    names = ["oSVD"]
    for label, weights in (("Hess-style", args.hess), ("stU-Net", args.stunet)):
        enhancer = Enhancer.from_weights(weights)
        methods[label] = T.network_method(enhancer, cfg["eq1"])
        names.append(label)
    cases = T.make_cases(cfg, "test")
    per_subject: list[dict] = []
    rows = task.evaluate(methods, data=cfg, cases=cases, per_subject=per_subject)
    meta = provenance("python benchmarks/dsc_table.py " + " ".join(argv or sys.argv[1:]))
    meta["protocol"] = task.protocol(cfg)
    meta["weights"] = {"stU-Net": str(args.stunet), "Hess-style": str(args.hess)}
    meta["per_subject"] = per_subject
    write_results("dsc_table", rows, meta)
    md = [
        "# DSC Table 1 (simulated subjects)",
        "",
        "Protocol: " + task.protocol(cfg),
        "",
        "## (a) against the classical full-dose oSVD CBV (the paper's reference)",
        "",
        paper_layout(rows, names, "osvd"),
        "",
        "## (b) against the true CBV",
        "",
        paper_layout(rows, names, "truth"),
        "",
        f"Provenance: {meta['command']} @ {meta['git_commit']} on {meta['machine']}",
        "",
    ]
    write_text_atomic(RESULTS / "dsc_table.md", "\n".join(md), overwrite=True)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
