"""Synthetic validation scans for choosing SR settings (never a real scan), and the gain table.

Shared by ``sr_tv_selection.py`` and ``sr_synth_selection.py``: each scan is a subject from
``mrenhance.simulate.subjects`` drawn from ``default_rng([seed, j])``, 1.5-5 mm isotropic
voxels, 48^3, a tumour with probability 0.2, the contrasts of :data:`CONTRASTS` in turn,
its own noise at SNR 20-100, divided by its 99.5th head percentile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

CONTRASTS = ("t1", "t2", "pd", "flair", "random")


def synthetic_scans(
    seed: int, n: int
) -> Iterator[tuple[int, float, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(j, voxel_mm, hr, head_mask, affine)`` for scans ``j = 0 .. n - 1``.

    hr : (48, 48, 48) float32, normalised (head 99.5th percentile = 1); affine : 4x4, mm.
    """
    from mrenhance.preprocess import head_mask
    from mrenhance.simulate import subjects as S

    for j in range(n):
        rng = np.random.default_rng([seed, j])
        vox = float(rng.uniform(1.5, 5.0))
        lesions = ("tumour",) if rng.random() < 0.2 else ()
        sub = S.draw_subject(rng, voxel_mm=vox, shape=(48, 48, 48), lesions=lesions)
        hr, _ = S.render_image(sub, rng, contrast=CONTRASTS[j % 5], snr=(20.0, 100.0))
        hr = np.clip(hr, 0, None).astype(np.float32)
        mask = head_mask(hr)
        hr /= float(np.percentile(hr[mask], 99.5))
        yield j, vox, hr, mask, np.diag([vox, vox, vox, 1.0])


def gain_summary(rows: Sequence[dict[str, Any]], degradations: Sequence[str]) -> list[dict]:
    """Per degradation and method: mean and min ``gain_db`` over the scans, and how many
    scans are below their input (gain < 0). Methods in the order they first appear."""
    summary = []
    for degradation in degradations:
        for method in dict.fromkeys(r["method"] for r in rows):
            gains = [
                r["gain_db"]
                for r in rows
                if r["degradation"] == degradation and r["method"] == method
            ]
            if not gains:
                continue
            summary.append(
                {
                    "degradation": degradation,
                    "scan": f"mean of {len(gains)}",
                    "method": method,
                    "gain_db": round(float(np.mean(gains)), 3),
                    "min_gain_db": round(float(np.min(gains)), 3),
                    "below_input": int(sum(g < 0 for g in gains)),
                }
            )
    return summary


def scan_rows(
    got: dict[str, float],
    base: float,
    *,
    degradation: str,
    scan: int,
    voxel_mm: float,
    cuts: Sequence[int | None],
    extra: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per method of one scan and degradation: PSNR (dB) and its gain over ``base``
    (the input's PSNR); ``extra[method]`` adds columns to that method's row."""
    return [
        {
            "degradation": degradation,
            "scan": scan,
            "voxel_mm": round(voxel_mm, 2),
            "contrast": CONTRASTS[scan % 5],
            "cutoffs": str(cuts),
            "method": method,
            "psnr": round(value, 3),
            "gain_db": round(value - base, 3),
            **((extra or {}).get(method, {})),
        }
        for method, value in got.items()
    ]
