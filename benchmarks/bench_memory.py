"""Peak memory of whole-volume SR from the command line: ``mrenhance enhance`` on an N^3 volume.

The goal (issue "Performance"): a 512^3 float32 volume super-resolved with peak RSS under
3x the size of its input plus its output (2 x 512 MiB, so under 3 GiB). Each size runs in
a fresh process, exactly as a user runs it: ``python -m mrenhance enhance IN -o OUT
--model mdcsrn-b4u4 [--precision P]`` on a float32 NIfTI (the normalised LR MNI152 volume
of ``bench_inference.py``, symmetric-padded to N^3), default ``--max-memory``. Measured:
wall time (loading, inference, writing), the child's peak RSS (``wait4`` rusage), and
the tile plan the command records in its output's provenance.

    python benchmarks/bench_memory.py                       # 512^3, fp32
    python benchmarks/bench_memory.py --sizes 256,512 --precision auto

Writes ``benchmarks/results/bench_memory.{json,md,csv}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402


def _volume(n: int):
    """The normalised LR MNI volume symmetric-padded (or cropped) to n^3, float32."""
    import numpy as np
    from bench_inference import _input

    x, _ = _input("mni")
    pads = []
    for side in x.shape:
        extra = max(0, n - side)
        pads.append((extra // 2, extra - extra // 2))
    x = np.pad(x, pads, mode="symmetric")  # symmetric tiles any width (reflect needs < side)
    x = x[tuple(slice((s - n) // 2, (s - n) // 2 + n) for s in x.shape)]
    return np.ascontiguousarray(x, dtype=np.float32)


def run_one(n: int, precision: str, threads: int, folder: str) -> dict:
    import nibabel as nib
    import numpy as np

    src, dst = f"{folder}/in{n}.nii", f"{folder}/out{n}.nii"
    nib.save(nib.Nifti1Image(_volume(n), np.eye(4)), src)
    in_bytes = os.path.getsize(src)
    cmd = [sys.executable, "-m", "mrenhance", "enhance", src, "-o", dst]
    cmd += ["--model", "mdcsrn-b4u4", "--precision", precision, "--threads", str(threads)]
    cmd += ["--overwrite", "-q"]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: wait4 cannot deadlock
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        err.seek(0)
        stderr = err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{n}^3 failed: {stderr.strip()[-400:]}")
    out_bytes = os.path.getsize(dst)
    rss = usage.ru_maxrss * 1024  # KiB -> bytes
    from mrenhance.io.sidecar import read_sidecar

    steps = (read_sidecar(dst) or {}).get("mrenhance", {}).get("provenance", [])
    steps = [s for s in steps if s.startswith("enhance ")]
    for path in Path(folder).glob(f"*{n}.*"):  # the volumes and the output's JSON sidecar
        path.unlink()
    return {
        "size": f"{n}^3",
        "precision": precision,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(rss / 2**20),
        "input_plus_output_mb": round((in_bytes + out_bytes) / 2**20),
        "rss_over_in_plus_out": round(rss / (in_bytes + out_bytes), 2),
        "goal_under_3x": rss < 3 * (in_bytes + out_bytes),
        "plan": steps[-1].split(" tiling=", 1)[-1].split(" scale=")[0] if steps else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="512", help="comma-separated cube sides")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="bench_memory")
    args = ap.parse_args()
    tune_allocator()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(run_one(n, args.precision, args.threads, tmp))
            print(rows[-1], flush=True)
    meta = provenance()
    meta["note"] = (
        "peak RSS of the whole `mrenhance enhance` process (load, exact tiled inference, "
        "write); input and output are float32 NIfTI files"
    )
    write_results(args.name, rows, meta)


if __name__ == "__main__":
    main()
