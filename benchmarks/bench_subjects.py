"""Speed of the synthetic-subject generator: whole 1 mm subjects and on-the-fly patches.

Times the one-off template load, then ``draw_subject`` + ``render_image`` of whole 1 mm
subjects (197 x 233 x 189) and ``draw_patch`` of 32^3 and 64^3 patches (each a new
subject: new deformation, contrast, bias, noise; only the patch's voxels are deformed).
Reports the median seconds per item and items/s, single process.

    python benchmarks/bench_subjects.py                  # 3 subjects, 40 / 20 patches
    python benchmarks/bench_subjects.py --subjects 5 --patches 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, write_results  # noqa: E402


def _time(fn, repeats: int) -> list[float]:
    out = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--patches", type=int, default=40)
    args = parser.parse_args()

    import numpy as np
    import scipy

    from mrenhance.simulate import subjects as S

    start = time.perf_counter()
    S._template()
    template_s = time.perf_counter() - start

    def whole(i: int, lesions=("tumour",)) -> None:
        rng = np.random.default_rng(1000 + i)
        subject = S.draw_subject(rng, lesions=lesions)
        S.render_image(subject, rng, contrast="random")

    def whole_build_only(i: int) -> None:
        S.draw_subject(np.random.default_rng(2000 + i), lesions=("tumour",))

    def patch(shape, lesions=()):
        def run(i: int) -> None:
            S.draw_patch(np.random.default_rng(3000 + i), shape, lesions=lesions)

        return run

    cases = [
        ("whole subject 1 mm (197x233x189), tumour, build + render", whole, args.subjects),
        ("whole subject 1 mm, build only", whole_build_only, args.subjects),
        ("patch 32^3, healthy", patch((32, 32, 32)), args.patches),
        ("patch 32^3, tumour", patch((32, 32, 32), ("tumour",)), args.patches),
        ("patch 64^3, healthy", patch((64, 64, 64)), max(1, args.patches // 2)),
        (
            "patch 64^3, tumour + infarct",
            patch((64, 64, 64), ("tumour", "infarct")),
            max(1, args.patches // 2),
        ),
    ]
    rows = [
        {
            "case": "template load (once per process)",
            "n": 1,
            "median_s": round(template_s, 3),
            "per_s": round(1 / template_s, 3),
        }
    ]
    for name, fn, repeats in cases:
        fn(-1)  # warm-up (imports, caches)
        times = _time(fn, repeats)
        median = statistics.median(times)
        rows.append(
            {
                "case": name,
                "n": repeats,
                "median_s": round(median, 4),
                "per_s": round(1 / median, 2),
                "min_s": round(min(times), 4),
            }
        )
    meta = provenance()
    meta.update(
        {
            "scipy": scipy.__version__,
            "cpu_count": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "threads": _threads(),
        }
    )
    write_results("bench_subjects", rows, meta)


def _threads() -> str:
    try:
        from threadpoolctl import threadpool_info

        return (
            ", ".join(f"{p.get('internal_api')}:{p.get('num_threads')}" for p in threadpool_info())
            or "none"
        )
    except ImportError:
        return "threadpoolctl not installed"


if __name__ == "__main__":
    main()
