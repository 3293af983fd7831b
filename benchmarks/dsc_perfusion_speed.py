"""Speed of the classical DSC pipeline on a 128 x 128 x 30 x 60 series (issue 11).

A synthetic series (a disc of brain in every slice, exponential residues, noise) is run
through :func:`mrenhance.baselines.perfusion.perfusion_maps_from_signal` with each
deconvolution, the AIF given and found automatically. One thread unless OMP_NUM_THREADS.

    python benchmarks/dsc_perfusion_speed.py   # -> results/dsc_perfusion_speed.{json,md,csv}
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402


def main() -> int:
    tune_allocator()
    from mrenhance.baselines.perfusion import perfusion_maps_from_signal
    from mrenhance.simulate.dsc import DSCProtocol, arterial_input_function

    p = DSCProtocol(n_frames=60)
    aif = arterial_input_function(p.times_s, p)
    rng = np.random.default_rng(0)
    x = np.linspace(-1, 1, 128)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    brain = np.repeat((xx**2 + yy**2 < 0.8)[..., None], 30, axis=2)
    cbv = np.where(brain, 2 + 2 * rng.random(brain.shape), 0) / 100
    kernel = np.exp(-np.arange(60) / 4.0) / 4.0
    conc = cbv[..., None] * np.convolve(aif, kernel)[:60]
    signal = (np.exp(-0.03 * 87 * conc) + rng.normal(0, 0.02, conc.shape)).astype(np.float32)
    signal[~brain] = 0.01
    artery = np.zeros(brain.shape, bool)
    artery[64, 64, :] = True
    signal[artery] = np.exp(-0.03 * 87 * 0.05 * aif)
    rows = []
    for method in ("ssvd", "csvd", "osvd"):
        for aif_mode in ("given", "automatic"):
            t0 = time.perf_counter()
            perfusion_maps_from_signal(
                signal,
                1.0,
                0.03,
                brain_mask=brain,
                aif_mask=artery if aif_mode == "given" else None,
                method=method,
            )
            rows.append(
                {
                    "method": method,
                    "aif": aif_mode,
                    "shape": "128x128x30x60",
                    "brain_voxels": int(brain.sum()),
                    "seconds": round(time.perf_counter() - t0, 2),
                    "load_average_1min": round(os.getloadavg()[0], 1),
                }
            )
    write_results(
        "dsc_perfusion_speed", rows, provenance("python benchmarks/dsc_perfusion_speed.py")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
