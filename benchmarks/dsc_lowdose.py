"""Sec. 4.1 of the stU-Net paper with a known truth: is Eq. 1 a low-dose acquisition?

For each subject the same anatomy, perfusion and noise draw are simulated physically at
full dose and at dose d (the concentration scaled by d; the exponential signal model
decides the signal), and Eq. 1 is applied to the full-dose series. We compare the two
dose-d sequences: the mean brain curve (figure), the voxel-wise error (all brain voxels
and by region: WM, GM, tumour rim, arteries) relative to the baseline signal, and the
CBV that the classical pipeline (oSVD, the AIF mask given) gets from each, against each
other and against the truth (correlation and relative bias in the brain).

    python benchmarks/dsc_lowdose.py            # -> results/dsc_lowdose.{json,md,csv,png}
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, provenance, tune_allocator, write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--seed", type=int, default=500)
    args = ap.parse_args(argv)
    tune_allocator()
    from mrenhance.baselines.perfusion import perfusion_maps_from_signal
    from mrenhance.simulate import dsc as D
    from mrenhance.simulate import subjects as S
    from mrenhance.tasks.dsc import DATA_DEFAULTS

    eq1 = DATA_DEFAULTS["eq1"]
    rows = []
    curves = {}
    for i in range(args.subjects):
        rng = np.random.default_rng(args.seed + i)
        subject = S.draw_subject(rng, voxel_mm=3.0, lesions=("tumour",))
        zc = int(round(np.argwhere(subject.lesion_masks["tumour"]).mean(axis=0)[2]))
        slab = (zc - 4, zc + 4)
        protocol = D.DSCProtocol(n_frames=48, snr=40.0)
        full = D.simulate_dsc(subject, rng, protocol, z_range=slab)
        shape = (*full.brain_mask.shape, protocol.n_frames)
        noise = np.random.default_rng(args.seed + 1000 + i).standard_normal(shape)
        truth = {"cbv": full.cbv, "cbf": full.cbf, "delay_s": full.delay_s}
        full = D.simulate_dsc(subject, rng, protocol, z_range=slab, truth=truth, noise=noise)
        brain, s0 = full.brain_mask, np.maximum(full.s0, 1e-6)
        wm = (subject.fractions["wm"][..., slice(*slab)] > 0.9) & brain
        gm = (subject.fractions["gm"][..., slice(*slab)] > 0.7) & brain
        regions = {"brain": brain & ~full.aif_mask, "wm": wm, "gm": gm}
        regions["tumour rim"] = full.masks.get("enhancing", np.zeros_like(brain))
        regions["arteries"] = full.aif_mask

        def cbv_of(series, brain=brain, aif_mask=full.aif_mask):
            return perfusion_maps_from_signal(
                series, 1.0, 0.03, brain_mask=brain, aif_mask=aif_mask
            ).cbv

        cbv_full = cbv_of(full.signal)
        for dose in (0.5, 0.25):
            phys = D.simulate_dsc(
                subject, rng, replace(protocol, dose=dose), z_range=slab, truth=truth, noise=noise
            )
            sim = D.low_dose_eq1(full.signal, dose, **eq1)
            if i == 0:
                curves[dose] = {
                    "full": full.signal[brain].mean(0),
                    "physical": phys.signal[brain].mean(0),
                    "eq1": sim[brain].mean(0),
                }
            err = np.sqrt(((sim - phys.signal) ** 2).mean(-1)) / s0  # RMS over time / S0
            drop = 1 - phys.signal.min(-1) / s0  # the physical low-dose peak signal drop
            cbv_phys, cbv_eq1 = cbv_of(phys.signal), cbv_of(sim)
            ok = regions["brain"]
            for name, region in regions.items():
                if not region.any():
                    continue
                rows.append(
                    {
                        "subject": i,
                        "dose": dose,
                        "region": name,
                        "voxels": int(region.sum()),
                        "peak_drop_physical": round(float(drop[region].mean()), 4),
                        "rms_err_eq1_vs_physical_over_s0": round(float(err[region].mean()), 5),
                        "noise_sigma_over_s0": round(
                            float((full.noise_sigma / s0[region]).mean()), 5
                        ),
                        "cbv_eq1_over_physical": round(
                            float(cbv_eq1[region].mean() / max(cbv_phys[region].mean(), 1e-9)), 4
                        ),
                    }
                )
            # CBV of each low-dose sequence against the truth and the full-dose pipeline
            for label, cbv in (("physical", cbv_phys), ("eq1", cbv_eq1), ("full", cbv_full)):
                r_truth = float(np.corrcoef(cbv[ok], full.cbv[ok])[0, 1])
                rows.append(
                    {
                        "subject": i,
                        "dose": dose,
                        "region": f"CBV from {label}",
                        "voxels": int(ok.sum()),
                        "corr_with_true_cbv": round(r_truth, 4),
                        "corr_with_full_dose_cbv": round(
                            float(np.corrcoef(cbv[ok], cbv_full[ok])[0, 1]), 4
                        ),
                    }
                )
    # mean over subjects
    summary = []
    keys = sorted({(r["dose"], r["region"]) for r in rows}, key=lambda k: (-k[0], k[1]))
    for dose, region in keys:
        sel = [r for r in rows if r["dose"] == dose and r["region"] == region]
        out = {"dose": dose, "region": region, "subjects": len(sel)}
        for k in sel[0]:
            if k not in ("subject", "dose", "region"):
                out[k] = round(float(np.mean([r[k] for r in sel])), 4)
        summary.append(out)
    figure = _figure(curves, RESULTS / "dsc_lowdose.png")
    meta = provenance("python benchmarks/dsc_lowdose.py")
    meta["figure"] = str(figure.name)
    meta["per_subject"] = rows
    write_results("dsc_lowdose", summary, meta)
    return 0


def _figure(curves, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.2), sharey=True)
    for ax, (dose, c) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        t = np.arange(c["full"].size)
        ax.plot(t, c["full"], "k-", label="full dose")
        ax.plot(t, c["physical"], "b-", label=f"physical dose {dose:g}")
        ax.plot(t, c["eq1"], "r--", label=f"Eq. 1, d = {dose:g}")
        ax.set_xlabel("time (s)")
        ax.set_title(f"mean brain signal, d = {dose:g}")
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("signal (GM baseline ~1)")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
