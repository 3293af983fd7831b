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

Writes ``benchmarks/results/dti_table.{json,md,csv}`` with the findings (computed from the
simulated rows by :func:`findings`, written as a section of the .md and as a dict in the
provenance): does the paper's result hold (SRGAN below bicubic on PSNR/SSIM yet sharper),
and does SRResNet beat bicubic on the DWIs and on FA/MD/V1? The provenance records each
network's weights file and sha256. A tie is not a win: every comparison is strict.

    python benchmarks/dti_table.py --findings benchmarks/results/dti_table.json

recomputes the findings of a results file from its rows and rewrites its .md/.csv (no
evaluation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, provenance, tune_allocator, write_results  # noqa: E402

NAME = "dti_table"

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


# finding -> (the question in words, the methods and metrics it compares)
QUESTIONS = {
    "paper_finding_holds": (
        "the paper's finding (SRGAN below bicubic on PSNR and SSIM, yet sharper)",
        ("srgan-dwi-x4", "bicubic"),
        ("psnr", "ssim", "sharpness"),
    ),
    "srgan_below_bicubic_psnr_ssim": (
        "SRGAN below bicubic on PSNR and SSIM",
        ("srgan-dwi-x4", "bicubic"),
        ("psnr", "ssim"),
    ),
    "srgan_sharper_than_bicubic": (
        "SRGAN sharper than bicubic (gradient ratio to the HR)",
        ("srgan-dwi-x4", "bicubic"),
        ("sharpness",),
    ),
    "srresnet_beats_bicubic_psnr_ssim": (
        "SRResNet above bicubic on PSNR and SSIM",
        ("srresnet-dwi-x4", "bicubic"),
        ("psnr", "ssim"),
    ),
    "srresnet_beats_bicubic_fa_md_wm": (
        "SRResNet below bicubic on the FA and MD errors in WM",
        ("srresnet-dwi-x4", "bicubic"),
        ("fa_mae_wm", "md_mae_wm"),
    ),
    "srresnet_beats_bicubic_v1_wm": (
        "SRResNet below bicubic on the V1 angle error in WM",
        ("srresnet-dwi-x4", "bicubic"),
        ("angle_wm_deg",),
    ),
}


def findings_md(rows: list[dict]) -> list[str]:
    """The findings as a Markdown section: each question, its answer and the numbers."""
    sim = {r["method"]: r for r in rows if r["set"] == "simulated"}
    found = findings(rows)
    out = ["## Findings (simulated test set, from the rows above; ties are not wins)", ""]
    for key, (question, methods, metrics) in QUESTIONS.items():
        if key not in found:
            out.append(f"- {question}: **not measured** (a row is missing)")
            continue
        numbers = "; ".join(
            f"{m} " + ", ".join(f"{k} {sim[m][k]:.4g}" for k in metrics) for m in methods
        )
        out.append(f"- {question}: **{'yes' if found[key] else 'no'}** ({numbers})")
    return [*out, ""]


def render_md(rows: list[dict], meta: dict) -> str:
    """The .md of a results file: the table, the findings section, the provenance."""
    from mrenhance.report.tables import format_markdown

    lines = [f"# {NAME}", "", format_markdown(rows), *findings_md(rows), "Provenance:", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    return "\n".join(lines) + "\n"


def _write(rows: list[dict], meta: dict) -> None:
    from mrenhance.io.atomic import write_text_atomic

    write_results(NAME, rows, meta)
    write_text_atomic(RESULTS / f"{NAME}.md", render_md(rows, meta), overwrite=True)


def recheck(path: Path) -> dict[str, object]:
    """Recompute the findings of a results file from its rows; rewrite its .json/.md/.csv."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    rows, meta = payload["rows"], dict(payload.get("provenance") or {})
    meta["findings"] = findings(rows)
    _write(rows, meta)
    return meta["findings"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--weights",
        nargs="*",
        default=["srresnet-dwi-x4", "srgan-dwi-x4"],
        help="shipped names or .safetensors paths (default: both shipped DTI networks)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--findings",
        metavar="RESULTS_JSON",
        default=None,
        help="recompute the findings of a results file and rewrite it (no evaluation)",
    )
    args = parser.parse_args()
    if args.findings:
        print("findings:", recheck(Path(args.findings)))
        return
    tune_allocator()

    from mrenhance.enhance_api import Enhancer
    from mrenhance.tasks import get_task

    task = get_task("dti")
    methods = dict(task.baselines())
    cards, specs = {}, {}
    for spec in args.weights:
        try:
            enhancer = Enhancer.from_weights(spec, device=args.device)
        except Exception as err:  # a missing optional model is reported, not fatal
            print(f"skipping {spec}: {err}")
            continue
        methods[enhancer.name] = task.network_method(enhancer)
        cards[enhancer.name] = enhancer.card
        specs[enhancer.name] = spec
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
    # which weights made the rows: the file's sha256 (checked against its card on loading)
    meta["weights"] = {
        name: {"weights": str(specs[name]), "sha256": card.sha256} for name, card in cards.items()
    }
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
    _write(rows, meta)
    print("\nfindings:", meta["findings"])
    print(f"-> {RESULTS / (NAME + '.md')}")


if __name__ == "__main__":
    main()
